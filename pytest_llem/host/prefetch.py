"""Start the pre-flight's read-only commands early, while Python is still importing.

`llem run` calls `start()` before it loads pydantic and pytest; the pre-flight's `run()` calls
then find their answers waiting. Each answer is used once, and only by the same command line
under the same environment; nothing that changes the host (a pull, a container) is prefetched.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future

from ..domain.records import CommandResult
from .proc import result_of

_KEY_ENV = ("PATH", "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "HOME")
_PENDING: dict[tuple[tuple[str, ...], tuple[str, ...]], Future[CommandResult]] = {}
_STARTED: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
_LOCK = threading.Lock()
_EXIT_HOOKED = False


def _key(argv: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(argv), tuple(os.environ.get(name, "") for name in _KEY_ENV)


def start(
    commands: Sequence[tuple[Sequence[str], float]], after: Future[CommandResult] | None = None
) -> None:
    """Run each (argv, timeout) in a daemon thread (once ``after`` is done, if given).

    A command line is prefetched once per process; nothing waits for these at exit.
    """
    from .proc import kill_all, run

    global _EXIT_HOOKED
    if not _EXIT_HOOKED:
        atexit.register(kill_all)  # an answer nobody took must not outlive us
        _EXIT_HOOKED = True

    for argv, timeout in commands:
        future: Future[CommandResult] = Future()
        with _LOCK:
            if _key(argv) in _STARTED:
                continue
            _STARTED.add(_key(argv))
            _PENDING[_key(argv)] = future  # take() waits for it from now on

        def work(
            argv: Sequence[str] = argv,
            timeout: float = timeout,
            future: Future[CommandResult] = future,
        ) -> None:
            try:
                if after is not None:
                    after.exception()  # its outcome does not matter, only that it ended
                future.set_result(run(argv, timeout=timeout))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=work, daemon=True, name="llem-prefetch").start()


def take(argv: Sequence[str]) -> CommandResult | None:
    """The prefetched answer of ``argv`` (waiting for it if still running), else None."""
    with _LOCK:
        future = _PENDING.pop(_key(argv), None)
    return result_of(future) if future is not None else None


def start_host(timeout: float) -> None:
    """Prefetch the host queries every pre-flight asks first (the same command lines).

    What decides whether a probe may start (the daemon's version, the host driver) goes
    first; what only keys the probe cache (the daemon's id, the toolkit's version) follows
    once the daemon has answered, so as not to compete with it for the CPU.
    """
    from . import docker, nvidia

    if docker.docker_path() is None:
        first: list[Sequence[str]] = []
        then: list[Sequence[str]] = []
    else:
        first, then = [docker.VERSION_ARGV], [docker.INFO_ARGV]
    if not docker.daemon_endpoint().remote:
        first.append(nvidia.SMI_ARGV)
    version = nvidia.toolkit_version_argv(nvidia.toolkit_tools())
    if version:
        then.append(version)
    start([(argv, timeout) for argv in first])
    with _LOCK:
        gate = _PENDING.get(_key(docker.VERSION_ARGV))
    start([(argv, timeout) for argv in then], after=gate)


def start_preflight(images: Sequence[str], timeout: float) -> None:
    """Prefetch what a pre-flight of ``images`` asks first: the host queries, the inspects."""
    from . import docker

    start_host(timeout)
    if docker.docker_path() is not None:
        start([(docker.inspect_argv(image), timeout) for image in images])
