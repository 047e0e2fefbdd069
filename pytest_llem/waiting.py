"""`--wait`: time for a host that is still coming up, before tier 1 is judged.

A freshly booted GPU runner may start its job before the Docker daemon answers or the NVIDIA
driver is loaded. While tier 1 fails only for such reasons, its host queries are retried with
a back-off (0.5 s doubling to 5 s) until nothing is left to wait for or the time is up; one
progress line per attempt. A reason that cannot clear by itself (no docker CLI, no toolkit,
permission denied on the socket) ends the wait at once: the report would not change.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable, Iterator

from .domain import verdicts
from .domain.check_ids import waiting_ids
from .domain.records import HostFacts
from .host.proc import HOST_COMMAND_TIMEOUT_S

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 5.0
# Each retry's host commands get the time left, but never less than this (a query cut short
# before it could answer would prove nothing).
MIN_ATTEMPT_S = 2.0

_NVML_NOT_READY = re.compile(r"Failed to initialize NVML: (Uninitialized|Unknown Error)")
# Said while the driver is loaded: a device file's mode or owner does not change by itself.
_NOT_TRANSIENT = re.compile(r"Insufficient Permissions|blocked by the operating system")


def delays() -> Iterator[float]:
    """The pauses between attempts: 0.5 s, doubling, at most 5 s."""
    delay = FIRST_DELAY_S
    while True:
        yield delay
        delay = min(delay * 2, MAX_DELAY_S)


def pending(host: HostFacts, skip: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(check id, reason) of each tier-1 finding that may clear by itself.

    Empty when there is nothing worth waiting for: tier 1 is sound, or one of its failures
    cannot clear by itself (the run fails whatever the rest does).
    """
    waiting: list[tuple[str, str]] = []
    for check_id in waiting_ids({host.engine}):  # (Podman's host: not Docker's checks)
        if {"all", check_id} & skip:
            continue
        verdict = verdicts.judge(check_id)(host)
        if verdict.finding is None or verdict.outcome not in ("failed", "warning"):
            continue
        reason = transient_reason(check_id, verdict.finding.cause, host)
        if reason is not None:
            waiting.append((check_id, reason))
        elif verdict.outcome == "failed":
            return []
    return waiting


def transient_reason(check_id: str, cause: str, host: HostFacts) -> str | None:
    """Why the finding may clear by itself ("unreachable", "driver not loaded"...), or None."""
    if check_id == "docker-daemon" and cause == "daemon_unreachable":
        timed_out = host.version is not None and host.version.timed_out
        return "not answering" if timed_out else "unreachable"
    if check_id == "host-driver" and host.smi is not None:
        if cause == "driver_not_loaded" and not _NOT_TRANSIENT.search(host.smi.output):
            return "driver not loaded"
        if host.smi.timed_out:
            return "nvidia-smi not answering"
        if _NVML_NOT_READY.search(host.smi.output):
            return "NVML not initialised"
    return None


def describe(waiting: list[tuple[str, str]]) -> str:
    return ", ".join(f"{check_id} ({reason})" for check_id, reason in waiting)


def settle(
    first: HostFacts,
    gather: Callable[[float], HostFacts],
    wait_s: float,
    say: Callable[[str], None],
    *,
    skip: frozenset[str] = frozenset(),
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> HostFacts:
    """The host facts once tier 1 has nothing left to wait for, or ``wait_s`` is up.

    ``gather(timeout)`` queries the host again; ``say`` receives the progress lines; ``stop``
    ends the wait early (the session is closing). Facts gathered after a wait carry its
    length and the checks still waited for when it ended (`HostFacts.waited_s`,
    `waited_for`): their findings then say how long they were waited for.
    """
    waiting = pending(first, skip) if wait_s > 0 else []
    if not waiting:
        return first
    stop = stop or threading.Event()
    start, host = clock(), first
    for delay in delays():
        elapsed = clock() - start
        left = wait_s - elapsed
        if left <= 0:
            break
        say(f"waiting for {describe(waiting)}: {elapsed:.0f} s of {wait_s:g} s")
        if stop.wait(min(delay, left)):
            return host
        left = wait_s - (clock() - start)
        host = gather(min(HOST_COMMAND_TIMEOUT_S, max(left, MIN_ATTEMPT_S)))
        before, waiting = waiting, pending(host, skip)
        if not waiting:
            say(f"waited {clock() - start:.0f} s for {', '.join(cid for cid, _ in before)}")
            break
    waited_for = tuple(check_id for check_id, _ in waiting)
    return dataclasses.replace(host, waited_s=clock() - start, waited_for=waited_for)
