"""Snapshots of the host's GPUs (`nvidia-smi -q`) through an experiment's measurement window.

One snapshot before the experiment starts, one after it has ended, and samples in between
every ``interval_s``, taken by a thread: one `nvidia-smi` process at a time, at low priority,
each with a time limit. The first sample waits until the experiment's process has started and
one interval has passed, so that nothing of llem's runs while the experiment starts. Each
snapshot notes which of the processes it lists are the experiment's own (`Owner`), read from
/proc at once, while they still run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Protocol

from ..domain.allocation import allocation_of
from .nvidia import start_smi_query
from .proc import HOST_COMMAND_TIMEOUT_S, SLICE_S, run

if TYPE_CHECKING:
    from ..domain.attestation import Reason, Snapshot
    from ..domain.records import CommandResult

NICENESS = 10  # added to a sample's nvidia-smi: the experiment's processes go first
SAMPLE_TIMEOUT_S = HOST_COMMAND_TIMEOUT_S
_CGROUP_BYTES = 64 * 1024


def query(env: Mapping[str, str] | None = None, timeout: float = SAMPLE_TIMEOUT_S) -> CommandResult:
    """One `nvidia-smi -q`, at lower priority than llem's."""
    started = start_smi_query(env)
    if started.proc is not None:
        with suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, started.proc.pid, NICENESS)
    return started.finish(timeout)


def why_unreadable(result: CommandResult, when: str) -> Reason:
    """The reason that the GPUs' state ``when`` ("before it started", ...) was not read."""
    from ..domain.attestation import Reason

    if result.missing:
        return Reason(
            "host_driver_unavailable",
            f"nvidia-smi is not on this host's PATH: its GPUs' state {when} could not be read",
        )
    if result.timed_out:
        return Reason(
            "host_driver_unavailable",
            f"nvidia-smi -q did not answer within {SAMPLE_TIMEOUT_S:g} s {when}",
        )
    from ..domain.diagnosis import diagnose

    diagnosis = diagnose(result.output, result.returncode)
    cause = diagnosis.cause if diagnosis.cause not in ("ok", "unknown") else "unknown"
    said = diagnosis.message if cause != "unknown" else _last_line(result.output)
    return Reason(cause, f"nvidia-smi -q failed {when} (exit {result.returncode}): {said}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


# ---- whose process -----------------------------------------------------------------------------


class Owner(Protocol):
    """Tells the experiment's own processes from others."""

    def started(self, pid: int) -> None:
        """The experiment's process (a local command, or a `docker run` client) has started."""

    def owns(self, pid: int) -> bool:
        """Whether ``pid`` is one of the experiment's processes now."""


class SessionOwner:
    """A local experiment's processes: those of the session it runs in (its pid's, as
    `host.workloads` starts it). A process that made a session of its own is not one."""

    def __init__(self) -> None:
        self.session: int | None = None

    def started(self, pid: int) -> None:
        self.session = pid

    def owns(self, pid: int) -> bool:
        from .workloads import _session_of

        return self.session is not None and _session_of(pid) == self.session


class ContainerOwner:
    """A container's processes: those whose cgroup names its id (every cgroup driver does:
    ``/docker/<id>``, ``docker-<id>.scope``; Podman's ``libpod-<id>``). The id comes from
    `docker inspect` (``cli``'s: docker or podman), once the container exists; /proc is read as
    any user may read it."""

    def __init__(
        self, name: str, env: Mapping[str, str] | None = None, cli: str = "docker"
    ) -> None:
        self.name = name
        self.env = env
        self.cli = cli
        self.container_id: str | None = None
        self._running = False

    def started(self, pid: int) -> None:
        self._running = True

    def owns(self, pid: int) -> bool:
        if self.container_id is None and self._running:
            self.container_id = self._inspect()
        if self.container_id is None:
            return False
        try:
            with open(f"/proc/{pid}/cgroup", "rb") as handle:
                return self.container_id.encode() in handle.read(_CGROUP_BYTES)
        except OSError:
            return False

    def _inspect(self) -> str | None:
        argv = (self.cli, "inspect", "--type", "container", "--format", "{{.Id}}", self.name)
        result = run(argv, timeout=HOST_COMMAND_TIMEOUT_S, env=self.env)
        found = result.stdout.strip() if result.ok else ""
        return found if len(found) == 64 and found.isalnum() else None


# ---- the window ----------------------------------------------------------------------------------


class Sampler:
    """The snapshots of one window; `before()`, then `started()` (its ``on_start``), then
    `after()`. ``read`` is `query` (a stand-in in tests)."""

    def __init__(
        self,
        interval_s: float,
        owner: Owner,
        env: Mapping[str, str] | None = None,
        *,
        read: Callable[[Mapping[str, str] | None], CommandResult] | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.owner = owner
        self.env = env
        # Inside a Slurm job: its allocation, under which its nvidia-smi's GPUs are numbered.
        self.allocation = allocation_of(os.environ if env is None else env)
        self._read = read or (lambda e: query(e))
        self.snapshots: list[Snapshot] = []
        self._lock = threading.Lock()
        self._origin = time.monotonic()
        self._started = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._own: set[int] = set()  # once its own, always its own (it may have left since)

    def before(self) -> Reason | None:
        """The snapshot before the experiment starts; why not, when it cannot be read."""
        self._origin = time.monotonic()
        failure = self._take("before it started")
        if failure is None and self.interval_s > 0:
            self._thread = threading.Thread(target=self._loop, name="llem-gpu-sampler", daemon=True)
            self._thread.start()
        return failure

    def started(self, pid: int) -> None:
        """The experiment's process has started (`host.workloads`' ``on_start``)."""
        self.owner.started(pid)
        self._started.set()

    def after(self) -> Reason | None:
        """Stop sampling, then the snapshot after the experiment ended."""
        self.stop()
        return self._take("after it ended")

    def stop(self) -> None:
        """End the sampling thread (a sample under way ends within its time limit)."""
        self._stop.set()
        thread = self._thread
        while thread is not None and thread.is_alive():
            thread.join(SLICE_S)  # in slices: a Ctrl-C gets through

    def _loop(self) -> None:
        # Nothing while the experiment starts: its process first, then one interval.
        while not self._started.wait(SLICE_S):
            if self._stop.is_set():
                return
        due = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            self._take("while it ran")  # one that fails is left out: `samples` counts the rest
            due = max(due + self.interval_s, time.monotonic())  # no burst after a slow one

    def _take(self, when: str) -> Reason | None:
        """Read one snapshot; why not, when it could not be read."""
        try:
            return self._snapshot(when)
        except Exception as exc:  # (a broken sample must not end the run, or the thread)
            from ..domain.attestation import Reason

            return Reason("unknown", f"reading the GPUs {when} failed: {exc!r}")

    def _snapshot(self, when: str) -> Reason | None:
        from ..domain.attestation import Snapshot
        from ..domain.gpu_state import parse_states

        result = self._read(self.env)
        at = time.monotonic() - self._origin
        if not result.ok:
            return why_unreadable(result, when)
        pids = {p.pid for gpu in parse_states(result.stdout) for p in gpu.compute_processes}
        own = {pid for pid in pids if pid in self._own or self.owner.owns(pid)}
        self._own |= own
        snapshot = Snapshot.parse(result.stdout, at, own, self.allocation)
        with self._lock:
            self.snapshots.append(snapshot)
        return None

    def taken(self) -> list[Snapshot]:
        with self._lock:
            return list(self.snapshots)
