"""The one report writer (JSON, and JUnit XML): a reader sees the old file or the new one,
never half of one.

Files of llem's own (`write_json`, `write_text`: the manifest, the probe cache, the plans): a
regular file (or a new one) is replaced atomically through a temporary file beside it; a link
at the destination is replaced, never followed.

A report path the person names (`report_target`, then `write_report`: `--json`, `--junit`,
`--llem-json`) is judged before the run and again when the report is written:

- ``-`` is this process's standard output, and so is a path that names the very file it is
  (``/dev/stdout``, ``/proc/self/fd/1``, the file stdout is redirected to); ``/dev/stderr``
  likewise names standard error. The report is written to that stream as it is: a redirect is
  neither truncated nor replaced, and a pipe gets the report alone (the caller moves its own
  output elsewhere).
- A regular file that is not a link is replaced atomically, as above.
- A link is written through, in place: its target is opened for writing, truncated (a regular
  file), written. The link stays a link: ``/dev/stdout`` stays ``/dev/stdout``.
- A FIFO is opened without blocking: with no reader that is one error (ENXIO), not a hang; with
  one, the report is written in blocking mode.
- What a report has no business in is refused: a directory, a block device, a socket, and a
  character device other than ``/dev/null`` and a terminal.
- A link that another user planted in a world-writable sticky directory (``/tmp``) is not
  followed, as the kernel's ``fs.protected_symlinks`` would refuse it (Documentation/admin-guide/
  sysctl/fs.rst: such a link is followed only when its owner is the follower or the directory's
  owner), whether or not that sysctl is on; likewise a FIFO there that belongs to another user
  (``fs.protected_fifos``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import stat
import sys
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

STDOUT = "-"  # a report path that means this process's standard output

_DEV_NULL = os.makedev(1, 3)
_MAX_LINKS = 40  # what the kernel follows before ELOOP


class ReportPathError(OSError):
    """A report path llem will not write to; ``strerror`` is the one-line reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.EPERM, reason)

    def __str__(self) -> str:
        return self.strerror or ""


@dataclass(frozen=True)
class ReportTarget:
    """Where a report goes, as judged before the run."""

    given: str  # the path as named ("-" for stdout)
    stream: Literal["stdout", "stderr"] | None = None  # this process's own stream
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) of what the path names
    resolved: str = ""  # the path with every link resolved (for one not there yet)
    discard: bool = False  # /dev/null

    @property
    def to_stdout(self) -> bool:
        return self.stream == "stdout"


def dumps(data: Any) -> str:
    """Strict JSON: a value JSON cannot hold (NaN, infinity) is written as its text."""
    try:
        text = json.dumps(data, indent=2, default=str, ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(data), indent=2, default=str, ensure_ascii=False)
    return text + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# --- report paths --------------------------------------------------------------------------


def report_target(given: str) -> ReportTarget:
    """Where the report named ``given`` will go; raises ReportPathError (why not, one line)."""
    if given == STDOUT:
        return ReportTarget(given, stream="stdout")
    if not given or "\0" in given:
        raise ReportPathError("expected a path")
    resolved = _followed_safely(given)
    try:
        st = os.stat(given)
    except FileNotFoundError:
        _creatable(resolved)
        return ReportTarget(given, resolved=resolved)
    except OSError as exc:
        raise ReportPathError(exc.strerror or str(exc)) from None
    identity = (st.st_dev, st.st_ino)
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == _DEV_NULL:
        return ReportTarget(given, identity=identity, resolved=resolved, discard=True)
    stream = _own_stream(identity)
    if stream is not None:
        return ReportTarget(given, stream=stream, identity=identity, resolved=resolved)
    problem = _kind_problem(st)
    if problem:
        raise ReportPathError(problem)
    if stat.S_ISREG(st.st_mode) and not os.path.islink(given):  # replaced: its directory
        _creatable(resolved)
    elif not os.access(given, os.W_OK):  # written through
        raise ReportPathError("not writable")
    if stat.S_ISFIFO(st.st_mode):
        _planted(
            resolved, st, os.path.dirname(resolved) or "/", "FIFO", "not written to",
            "protected_fifos",
        )  # fmt: skip
    return ReportTarget(given, identity=identity, resolved=resolved)


def same_destination(a: ReportTarget, b: ReportTarget) -> bool:
    """Whether two reports would go to one place (one would be lost, or both mixed)."""
    if a.discard or b.discard:  # /dev/null keeps nothing either way
        return False
    if a.stream is not None and a.stream == b.stream:
        return True
    if a.identity is not None and a.identity == b.identity:
        return True
    return bool(a.resolved) and a.resolved == b.resolved


def write_report(target: ReportTarget, content: str, *, mode: int = 0o644) -> None:
    """Write a report where ``target`` says; raises OSError (ReportPathError: refused)."""
    data = content.encode("utf-8")
    if target.stream is None:  # judged again: a link may have been planted since
        target = report_target(target.given)
    if target.stream is not None:
        _write_stream(sys.stdout if target.stream == "stdout" else sys.stderr, data)
        return
    path = Path(target.given)
    try:
        st: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is None or stat.S_ISREG(st.st_mode):
        _replace(path, data, mode)
    else:
        _write_through(path, data, mode, create=target.identity is None)


def _write_stream(stream: Any, data: bytes) -> None:
    """This process's stdout or stderr, as it is: a redirect keeps what it holds."""
    stream.flush()
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(data.decode("utf-8"))
    else:
        buffer.write(data)
    stream.flush()


def _write_through(path: Path, data: bytes, mode: int, *, create: bool) -> None:
    """A link's target, a FIFO, a terminal: opened in place (never replaced by a file)."""
    flags = os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | (os.O_CREAT if create else 0), mode)
    except OSError as exc:
        if exc.errno == errno.ENXIO and _is_fifo(path):
            raise OSError(exc.errno, "no process reads this FIFO") from None
        raise
    try:
        st = os.fstat(fd)
        problem = _kind_problem(st)  # (what the name led to when it was opened)
        if problem:
            raise ReportPathError(problem)
        if stat.S_ISREG(st.st_mode):
            os.ftruncate(fd, 0)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _is_fifo(path: Path) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def _own_stream(identity: tuple[int, int]) -> Literal["stdout", "stderr"] | None:
    """Which of this process's stdout and stderr is the file ``identity`` names, if any."""
    streams: tuple[tuple[int, Literal["stdout", "stderr"]], ...] = ((1, "stdout"), (2, "stderr"))
    for fd, name in streams:
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == identity:
            return name
    return None


def _is_terminal(rdev: int) -> bool:
    """A terminal's device number: a pseudo-terminal, a console or serial line, /dev/tty."""
    major, minor = os.major(rdev), os.minor(rdev)
    return 136 <= major <= 143 or major == 4 or (major == 5 and minor in (0, 1))


def _kind_problem(st: os.stat_result) -> str | None:
    """Why a report may not go into the file ``st`` describes (None: it may)."""
    mode = st.st_mode
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISCHR(mode) and (st.st_rdev == _DEV_NULL or _is_terminal(st.st_rdev)):
        return None
    what = "a socket"
    if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
        kind = "block" if stat.S_ISBLK(mode) else "character"
        what = f"a {kind} device ({os.major(st.st_rdev)}:{os.minor(st.st_rdev)})"
    return (
        f"is {what}: a report goes to a regular file, a FIFO, a terminal, /dev/stdout, "
        "/dev/stderr or /dev/null"
    )


def _creatable(resolved: str) -> None:
    """Raises ReportPathError unless a file can be created at ``resolved``."""
    parent = os.path.dirname(resolved) or "/"
    if not os.path.isdir(parent):
        raise ReportPathError(f"{parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ReportPathError(f"{parent} is not a writable directory")


def _followed_safely(given: str) -> str:
    """``given`` with every link resolved, as the kernel would follow them; raises
    ReportPathError for a link that another user planted in a world-writable sticky directory.
    The walk stops at /proc, whose links are the kernel's own (/dev/stdout leads there)."""
    start = given if os.path.isabs(given) else os.path.join(os.getcwd(), given)
    parts = deque(start.split("/"))
    resolved, followed = "/", 0
    while parts:
        name = parts.popleft()
        if name in ("", "."):
            continue
        if name == "..":
            resolved = os.path.dirname(resolved)
            continue
        if resolved == "/proc" or resolved.startswith("/proc/"):
            return os.path.normpath(os.path.join(resolved, name, *parts))
        here = os.path.join(resolved, name)
        try:
            st = os.lstat(here)
        except OSError:  # not there (yet): what follows is created, or fails on its own
            return os.path.join(here, *parts)
        if not stat.S_ISLNK(st.st_mode):
            resolved = here
            continue
        followed += 1
        if followed > _MAX_LINKS:
            raise ReportPathError(f"{given}: too many levels of symbolic links")
        _planted(here, st, resolved, "link", "not followed", "protected_symlinks")
        target = os.readlink(here)
        parts.extendleft(reversed(target.split("/")))
        if target.startswith("/"):
            resolved = "/"
    return resolved


def _sticky_world_writable(directory: os.stat_result) -> bool:
    return bool(directory.st_mode & stat.S_ISVTX and directory.st_mode & stat.S_IWOTH)


def _planted(
    path: str, st: os.stat_result, directory: str, what: str, refused: str, rule: str
) -> None:
    """fs.protected_symlinks / protected_fifos: in a world-writable sticky directory, another
    user's link is not followed and another user's FIFO not written to, unless that user owns
    the directory."""
    try:
        where = os.stat(directory)
    except OSError:
        return
    if _sticky_world_writable(where) and st.st_uid not in (os.geteuid(), where.st_uid):
        raise ReportPathError(
            f"{path} is a {what} of another user ({_user(st.st_uid)}) in the world-writable "
            f"sticky directory {directory}: {refused} (as fs.{rule} refuses)"
        )


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


# --- llem's own files ----------------------------------------------------------------------


def write_json(path: Path, data: Any, *, mode: int = 0o644) -> None:
    """Write ``data`` as JSON to ``path``; raises OSError (and leaves no temporary file)."""
    write_text(path, dumps(data), mode=mode)


def write_text(path: Path, content: str, *, mode: int = 0o644) -> None:
    """Write ``content`` to ``path`` the same way: a link there is replaced, never followed."""
    _replace(path, content.encode("utf-8"), mode)


def _replace(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.absolute().parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_trusted_json(path: Path, max_bytes: int) -> dict[str, Any] | None:
    """The JSON object in ``path`` if it is a regular file of ours that only we can write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_uid != os.geteuid()
            or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            or st.st_size > max_bytes
        ):
            return None
        raw = os.read(fd, max_bytes + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
