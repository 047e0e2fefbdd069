"""Run one command with a limit, never through a shell, and kill what it started."""

from __future__ import annotations

import codecs
import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ..domain.records import CommandResult

# (The records, and the dataclasses behind them, load once a command has started: the
# first host queries start before any of that is imported.)

T = TypeVar("T")

# Processes started by run() and not yet ended, so that an interrupt can kill them all.
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()

# The limit of the quick host commands (docker version/info/inspect, nvidia-smi): not a
# user setting.
HOST_COMMAND_TIMEOUT_S = 10.0

# Waits in the main thread wake this often: a signal the kernel hands to another thread is
# only acted on when the main thread runs Python code, so a Ctrl-C must never wait on a lock
# or a child that could block it for minutes.
SLICE_S = 0.2

# Output kept per stream: its first and its last half of this, enough for any real error.
# What lies between is read and dropped, so memory stays bounded whatever a tool prints.
MAX_OUTPUT = 64 * 1024
# Output that llem parses (`nvidia-smi -q`, `docker image inspect`, `docker info`, `docker
# version`) is read whole up to this (`limit=`): an 8-GPU host's `nvidia-smi -q` is about
# 110 kB, an image's inspect grows with its labels. Past it the command is stopped and its
# result is `too_large`, with no standard output: never parsed in part.
PARSED_OUTPUT_MAX = 16 * 1024 * 1024
_CHUNK = 64 * 1024
# After a kill, how long output still in the pipes is read (a grandchild that left the process
# group may keep them open for ever).
_DRAIN_S = 1.0


class _Kept:
    """The head and the tail of a stream, and how many bytes between them were dropped; or,
    with ``whole``, the stream whole up to that many bytes (past it: none, and `too_large`)."""

    def __init__(self, whole: int | None = None) -> None:
        self._whole = whole
        self._half = MAX_OUTPUT // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0
        self.too_large = False

    def add(self, data: bytes) -> None:
        if self._whole is not None:
            if not self.too_large and len(self.head) + len(data) <= self._whole:
                self.head += data
                return
            self.too_large = True  # nothing is kept: a part must never pass for the whole
            self.dropped += len(self.head) + len(data)
            self.head = bytearray()
            return
        room = self._half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        if len(self.tail) > 2 * self._half:  # trimmed now and then, not on every chunk
            cut = len(self.tail) - self._half
            self.dropped += cut
            del self.tail[:cut]

    def text(self) -> str:
        tail = self.tail[-self._half :]
        dropped = self.dropped + len(self.tail) - len(tail)
        middle = f"\n[... {dropped} bytes of output clipped ...]\n" if dropped else ""
        return (  # decoded in place: a whole output is not copied once more
            self.head.decode("utf-8", errors="replace")
            + middle
            + tail.decode("utf-8", errors="replace")
        )


def _environ(env: Mapping[str, str] | None) -> dict[str, str]:
    """The child's environment as a copy made now: never the process's C environment, which
    another thread (pytest sets PYTEST_CURRENT_TEST) may change while the child is forked."""
    return dict(os.environ if env is None else env)


# What start() and run_streaming() report as a missing tool (exit 127), not as an error.
_MISSING = (FileNotFoundError, PermissionError, NotADirectoryError)


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    *,
    stdout: int | IO[bytes],
    stderr: int,
    stdin: int = subprocess.DEVNULL,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    """``argv`` started the one way llem starts commands: never through a shell, its own
    session (so its whole group can be killed), the environment copied now; no standard input
    unless ``stdin`` says otherwise."""
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=_environ(env),
        start_new_session=True,
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class Started:
    """A command that `start()` started; `finish()` collects its result."""

    def __init__(
        self, argv: Sequence[str], env: Mapping[str, str] | None, limit: int | None = None
    ) -> None:
        self.argv = tuple(argv)
        self.limit = limit
        self.started = time.monotonic()
        self.proc: subprocess.Popen[bytes] | None = None
        self.missing = ""  # why the executable could not be started
        try:
            self.proc = spawn(argv, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except _MISSING as exc:
            self.missing = f"{argv[0]}: {exc.strerror}"
            return
        with _LIVE_LOCK:
            _LIVE.add(self.proc)

    def finish(self, timeout: float) -> CommandResult:
        """The result, the command killed (its process group) once ``timeout`` seconds have
        passed since it started, or on an interrupt."""
        from ..domain.records import CommandResult

        proc, argv, start = self.proc, self.argv, self.started
        if proc is None:
            return CommandResult(argv, 127, stderr=self.missing, missing=True)
        out, err = _Kept(self.limit), _Kept()
        try:
            _collect(proc, {proc.stdout: out, proc.stderr: err}, start + timeout)
        except (subprocess.TimeoutExpired, _TooLarge) as stopped:
            _kill_group(proc)
            deadline = time.monotonic() + _DRAIN_S
            _collect(proc, {proc.stdout: out, proc.stderr: err}, deadline, kill=True)
            if isinstance(stopped, _TooLarge):
                return self._too_large(proc.returncode, err, time.monotonic() - start)
            took = time.monotonic() - start
            return CommandResult(
                argv, None, out.text(), err.text(), took, timed_out=True, too_large=out.too_large
            )
        except BaseException:
            _kill_group(proc)
            _close(proc)
            proc.wait()
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
        took = time.monotonic() - start
        return CommandResult(argv, proc.returncode, out.text(), err.text(), took)

    def _too_large(self, returncode: int | None, err: _Kept, took: float) -> CommandResult:
        """The result of a command stopped for printing more than its limit: no output, and
        an error that says why (`ok` is false)."""
        from ..domain.records import CommandResult

        mib, rest = divmod(self.limit or 0, 1024 * 1024)
        size = f"{mib} MiB" if mib and not rest else f"{self.limit} bytes"
        note = (
            f"`{' '.join(self.argv)}` printed more than {size}: too large to read, so it was "
            "stopped and none of its output is used"
        )
        stderr = "\n".join(filter(None, (note, err.text().strip())))
        return CommandResult(self.argv, returncode, "", stderr, took, too_large=True)


class _TooLarge(Exception):
    """Standard output passed the limit of a command whose output is read whole."""


def start(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, limit: int | None = None
) -> Started:
    """Start ``argv`` in its own process group; its output is read by `Started.finish`.

    ``limit``: standard output is read whole up to that many bytes (output that llem parses:
    `PARSED_OUTPUT_MAX`), and the command is stopped past it; None keeps the head and the tail
    of `MAX_OUTPUT` (logs, experiment output). Standard error keeps its head and tail always.
    """
    return Started(argv, env, limit)


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    limit: int | None = None,
) -> CommandResult:
    """Run ``argv`` with a wall-clock limit; on expiry or interrupt kill its process group.

    ``limit`` as for `start`."""
    return start(argv, env=env, limit=limit).finish(timeout)


def run_streaming(
    argv: Sequence[str],
    *,
    timeout: float,
    on_output: Callable[[str], None],
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """`run()`, with the command's standard output handed to ``on_output`` as it comes.

    That output is a pseudo-terminal where one can be had, so that the command shows the
    progress it shows a person (`docker pull` does only then); its error output stays a pipe.
    """
    from ..domain.records import CommandResult

    start = time.monotonic()
    try:
        reader, writer = os.openpty()
    except OSError:  # no pseudo-terminal here: a pipe, and the command's plainer output
        reader, writer = os.pipe()
    try:
        proc = spawn(argv, env, stdout=writer, stderr=subprocess.PIPE)
    except _MISSING as exc:
        os.close(reader)
        return CommandResult(tuple(argv), 127, stderr=f"{argv[0]}: {exc.strerror}", missing=True)
    finally:
        os.close(writer)
    with _LIVE_LOCK:
        _LIVE.add(proc)
    try:
        assert proc.stderr is not None
        out, err = _pump(proc, reader, proc.stderr.fileno(), start + timeout, on_output)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.wait()
        return CommandResult(tuple(argv), None, duration_s=time.monotonic() - start, timed_out=True)
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    finally:
        os.close(reader)
        if proc.stderr is not None:
            proc.stderr.close()
        with _LIVE_LOCK:
            _LIVE.discard(proc)
    return CommandResult(
        tuple(argv), proc.returncode, out.text(), err.text(), time.monotonic() - start
    )


def _pump(
    proc: subprocess.Popen[bytes],
    out_fd: int,
    err_fd: int,
    deadline: float,
    on_output: Callable[[str], None],
) -> tuple[_Kept, _Kept]:
    """Read both outputs to their end (and reap ``proc``) by ``deadline``, or raise
    TimeoutExpired; each chunk of standard output goes to ``on_output`` as text."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    kept = {out_fd: _Kept(), err_fd: _Kept()}
    with selectors.DefaultSelector() as selector:
        for fd in kept:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, 0)
            for key, _ in selector.select(min(left, SLICE_S)):
                try:
                    chunk = os.read(key.fd, 65536)
                except OSError:  # EIO: every writer of the pseudo-terminal is gone
                    chunk = b""
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                kept[key.fd].add(chunk)
                if key.fd == out_fd:
                    on_output(decoder.decode(chunk))
    while proc.poll() is None:
        if time.monotonic() >= deadline:
            raise subprocess.TimeoutExpired(proc.args, 0)
        time.sleep(0.01)
    return kept[out_fd], kept[err_fd]


def spawn_detached(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> None:
    """Start ``argv`` in its own session and do not wait for it (reaped by a daemon thread)."""
    try:
        proc = spawn(argv, env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return
    threading.Thread(target=proc.wait, daemon=True).start()


def spawn_talking(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``argv`` started as `spawn` starts it, with a pipe for each of its standard streams: a
    process llem talks to while it runs (a fleet host's worker), which its caller ends. (Not
    one for `kill_all`: it is asked to end first; and should llem die, the end of its input
    ends it.) OSError when it cannot be started."""
    return spawn(argv, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the process group of ``proc`` (started by `spawn`: its own session)."""
    _kill_group(proc)


def kill_all() -> None:
    """Kill every command that run() started and that is still running."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        _kill_group(proc)


def _collect(
    proc: subprocess.Popen[bytes],
    streams: Mapping[IO[bytes] | None, _Kept],
    deadline: float,
    *,
    kill: bool = False,
) -> None:
    """Read ``streams`` into their buffers until both end, then reap ``proc``; in slices.

    Raises TimeoutExpired at ``deadline``, and _TooLarge when a buffer that reads its stream
    whole passes its limit; with ``kill`` (the group was killed) it stops reading at
    ``deadline`` instead, closes the pipes and reaps the process.
    """
    with selectors.DefaultSelector() as selector:
        for stream, kept in streams.items():
            if stream is not None and not stream.closed:
                selector.register(stream, selectors.EVENT_READ, kept)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                if not kill:
                    raise subprocess.TimeoutExpired(proc.args, 0)
                break
            for key, _ in selector.select(min(left, SLICE_S)):
                data = os.read(key.fd, _CHUNK)
                if data:
                    key.data.add(data)
                    if key.data.too_large and not kill:
                        raise _TooLarge
                else:
                    selector.unregister(key.fileobj)
    if kill:
        _close(proc)
        proc.wait()
        return
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, 0)
        try:
            proc.wait(timeout=min(left, SLICE_S))
            _close(proc)
            return
        except subprocess.TimeoutExpired:
            continue


def _close(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def wait_process(proc: subprocess.Popen[bytes]) -> int:
    """`proc.wait()` that lets a Ctrl-C through however the signal was delivered."""
    while True:
        try:
            return proc.wait(timeout=SLICE_S)
        except subprocess.TimeoutExpired:
            continue


def result_of(future: Future[T]) -> T:
    """`future.result()` that lets a Ctrl-C through however the signal was delivered."""
    from concurrent.futures import TimeoutError as FutureTimeout

    while True:
        try:
            return future.result(timeout=SLICE_S)
        except FutureTimeout:
            continue
