"""Run an experiment's process (a `docker run` client or a local command) and stop it on demand.

Argument lists only, never a shell. Output goes to a log file in RUN_DIR (created afresh, see
``runfiles``); the tail is kept for diagnosis.
Ctrl-C or SIGTERM stops the workload (its container removed, or its process group killed) and
then propagates as KeyboardInterrupt (``Terminated`` for SIGTERM).
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
from . import docker, runfiles
from .proc import spawn, wait_process

TAIL_BYTES = 64 * 1024
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class WorkloadResult:
    returncode: int
    duration_s: float
    output_tail: str  # the end of stdout and stderr together
    missing: bool = False  # the executable was not found or not executable


def run_container(
    argv: Sequence[str], *, name: str, log_path: Path, cli: str = "docker"
) -> WorkloadResult:
    """Run a ``docker run --name NAME ...`` client (``cli``'s: docker or podman); on interrupt
    ``docker rm -f NAME``."""

    def stop(proc: subprocess.Popen[bytes]) -> None:
        docker.remove_container(name, wait=True, cli=cli)
        _end(proc, grace_s=STOP_GRACE_S)
        # A client killed between create and start leaves a created container behind.
        docker.remove_container(name, wait=True, cli=cli)

    return _run(argv, cwd=None, env=None, log_path=log_path, stop=stop)


def run_local(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path
) -> WorkloadResult:
    """Run a local command in ``cwd``; on interrupt terminate, then kill, its process group."""

    def stop(proc: subprocess.Popen[bytes]) -> None:
        _signal_group(proc, signal.SIGTERM)
        _end(proc, grace_s=STOP_GRACE_S)
        _signal_group(proc, signal.SIGKILL)  # what the command left running in its group

    return _run(argv, cwd=cwd, env=env, log_path=log_path, stop=stop)


def _run(
    argv: Sequence[str],
    *,
    cwd: Path | None,
    env: Mapping[str, str] | None,
    log_path: Path,
    stop: Callable[[subprocess.Popen[bytes]], None],
) -> WorkloadResult:
    start = time.monotonic()
    with runfiles.create(log_path) as log:  # a new file, never a link planted as the log
        try:
            # (its own session: Ctrl-C reaches llem, which decides how to stop it)
            proc = spawn(argv, env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        except OSError as exc:
            message = f"{argv[0]}: {exc.strerror or exc}"
            log.write(message.encode() + b"\n")
            code = 126 if isinstance(exc, PermissionError) else 127
            return WorkloadResult(code, time.monotonic() - start, message, missing=True)
        try:
            returncode = wait_process(proc)
        except BaseException:
            with shielded():
                stop(proc)
            raise
        # The tail of the file written, never of what has the log's name by now.
        output = runfiles.tail(log, TAIL_BYTES).decode("utf-8", errors="replace")
    return WorkloadResult(returncode, time.monotonic() - start, output)


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
