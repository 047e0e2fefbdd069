"""Run an experiment's process (a `docker run` client or a local command) and stop it on demand.

Argument lists only, never a shell. Output goes to a log file in RUN_DIR (created afresh, see
``runfiles``); the tail is kept for diagnosis.
Ctrl-C or SIGTERM stops the workload (its container removed, or its process group killed) and
then propagates as KeyboardInterrupt (``Terminated`` for SIGTERM). A workload still running at
its time limit is stopped the same way, and its result says so (``timed_out``).

A local command runs in a session of its own. What is left of that session when the command
has ended (background children, daemons that did not call setsid) is terminated, then killed
after `LEFTOVER_GRACE_S`: it must not hold a GPU during the next experiment. The result names
those processes (``leftovers``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from ..signals import shielded
from . import containers, runfiles
from .proc import SLICE_S, spawn

TAIL_BYTES = 64 * 1024
STOP_GRACE_S = 10.0
LEFTOVER_GRACE_S = 2.0  # between SIGTERM and SIGKILL for what a local command left running
_KILL_ROUNDS = 20  # of SIGKILL to a session whose processes fork while being killed
_COMMAND_CHARS = 200


@dataclass(frozen=True)
class Leftover:
    """A process of a local experiment's session still running after the experiment ended."""

    pid: int
    command: str


@dataclass(frozen=True)
class WorkloadResult:
    returncode: int
    duration_s: float
    output_tail: str  # the end of stdout and stderr together
    missing: bool = False  # the executable was not found or not executable
    timed_out: bool = False  # stopped at its time limit
    leftovers: tuple[Leftover, ...] = ()  # killed after a local command ended
    cleanup: str | None = None  # what could not be removed (a container may be left)


def run_container(
    argv: Sequence[str],
    *,
    name: str,
    log_path: Path,
    timeout_s: float | None = None,
    on_start: Callable[[int], None] | None = None,
    cli: str = "docker",
) -> WorkloadResult:
    """Run a ``docker run --name NAME ...`` (or ``docker start -a NAME``) client (``cli``'s:
    docker or podman); at ``timeout_s`` or on interrupt ``docker rm -f -v NAME``. ``on_start``
    gets the client's pid once it has started."""

    def stop(proc: subprocess.Popen[bytes]) -> str | None:
        containers.remove(name, cli=cli)
        _end(proc, grace_s=STOP_GRACE_S)
        # A client killed between create and start leaves a created container behind.
        return containers.remove(name, cli=cli)

    return _run(
        argv, cwd=None, env=None, log_path=log_path, stop=stop, timeout_s=timeout_s,
        on_start=on_start,
    )  # fmt: skip


def run_local(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    timeout_s: float | None = None,
    on_start: Callable[[int], None] | None = None,
) -> WorkloadResult:
    """Run a local command in ``cwd``; at ``timeout_s`` or on interrupt terminate, then kill,
    its process group; then end what is left of its session (`end_session`). ``on_start``
    gets its pid (its session's id) once it has started."""

    def stop(proc: subprocess.Popen[bytes]) -> str | None:
        _signal_group(proc, signal.SIGTERM)
        _end(proc, grace_s=STOP_GRACE_S)
        _signal_group(proc, signal.SIGKILL)  # what the command left running in its group
        return None

    return _run(
        argv, cwd=cwd, env=env, log_path=log_path, stop=stop, timeout_s=timeout_s, session=True,
        on_start=on_start,
    )  # fmt: skip


def _run(
    argv: Sequence[str],
    *,
    cwd: Path | None,
    env: Mapping[str, str] | None,
    log_path: Path,
    stop: Callable[[subprocess.Popen[bytes]], str | None],
    timeout_s: float | None,
    session: bool = False,
    on_start: Callable[[int], None] | None = None,
) -> WorkloadResult:
    """Run ``argv`` to its end or ``timeout_s``; with ``session``, then end what is left of
    its session (`end_session`)."""
    start = time.monotonic()
    deadline = None if timeout_s is None else start + timeout_s
    with runfiles.create(log_path) as log:  # a new file, never a link planted as the log
        try:
            # (its own session: Ctrl-C reaches llem, which decides how to stop it)
            proc = spawn(argv, env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        except OSError as exc:
            message = f"{argv[0]}: {exc.strerror or exc}"
            log.write(message.encode() + b"\n")
            code = 126 if isinstance(exc, PermissionError) else 127
            return WorkloadResult(code, time.monotonic() - start, message, missing=True)
        cleanup, leftovers = None, []
        try:
            if on_start is not None:
                on_start(proc.pid)
            returncode = _wait(proc, deadline)
            timed_out = returncode is None
            if returncode is None:  # past its limit
                with shielded():
                    cleanup = stop(proc)
                returncode = proc.wait()
            if session:
                with shielded():
                    leftovers = end_session(proc.pid)
        except BaseException:
            with shielded():
                stop(proc)
                if session:
                    end_session(proc.pid, grace_s=0)
            raise
        # The tail of the file written, never of what has the log's name by now.
        output = runfiles.tail(log, TAIL_BYTES).decode("utf-8", errors="replace")
    return WorkloadResult(
        returncode, time.monotonic() - start, output, timed_out=timed_out,
        leftovers=tuple(leftovers), cleanup=cleanup,
    )  # fmt: skip


def _wait(proc: subprocess.Popen[bytes], deadline: float | None) -> int | None:
    """The process's exit status, or None at ``deadline``; in slices, so that a Ctrl-C gets
    through however the signal was delivered."""
    while True:
        left = SLICE_S if deadline is None else min(SLICE_S, deadline - time.monotonic())
        if left <= 0:
            return None
        try:
            return proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            continue


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _end(proc: subprocess.Popen[bytes], *, grace_s: float) -> None:
    """Wait up to ``grace_s`` for the process, then kill its group and reap it."""
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()


# ---- what is left of a session ---------------------------------------------------------------


def end_session(session: int, *, grace_s: float = LEFTOVER_GRACE_S) -> list[Leftover]:
    """Terminate every live process of ``session``, kill those still there after ``grace_s``;
    the processes found, by pid. (Linux: read from /proc; elsewhere its process group is
    killed, and nothing is named.)"""
    found = _session_members(session)
    if found is None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(session, signal.SIGKILL)
        return []
    seen = dict(found)
    for pid in found:
        _signal(pid, session, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while found and time.monotonic() < deadline:
        time.sleep(0.05)
        found = _session_members(session) or {}
        seen.update(found)
    for _ in range(_KILL_ROUNDS):
        if not found:
            break
        for pid in found:
            _signal(pid, session, signal.SIGKILL)
        time.sleep(0.05)
        found = _session_members(session) or {}
        seen.update(found)
    return [Leftover(pid, command) for pid, command in sorted(seen.items())]


def _session_members(session: int) -> dict[int, str] | None:
    """pid -> command line of each live (not zombie) process in ``session``; None without
    /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    members: dict[int, str] = {}
    for entry in entries:
        if entry.isascii() and entry.isdigit() and _session_of(int(entry)) == session:
            members[int(entry)] = _command_line(int(entry))
    return members


def _session_of(pid: int) -> int | None:
    """The session of a live process, None for a zombie or a process gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rpartition(b")")[2].split()
    except OSError:
        return None
    # After "pid (comm)": state, ppid, pgrp, session, ...
    if len(fields) < 4 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[3])


def _command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read(4 * _COMMAND_CHARS)
    except OSError:
        raw = b""
    text = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", errors="replace")
    return text[:_COMMAND_CHARS] or f"pid {pid}"


def _signal(pid: int, session: int, sig: int) -> None:
    """Send ``sig`` to ``pid`` if it is still in ``session``: through a pidfd where there is
    one, so that a pid reused meanwhile is never signalled."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        if _session_of(pid) == session:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        return
    try:
        if _session_of(pid) == session:  # the pidfd holds this very process now
            with suppress(ProcessLookupError, PermissionError):
                signal.pidfd_send_signal(fd, sig)
    finally:
        os.close(fd)
