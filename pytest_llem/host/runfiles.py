"""Files in RUN_DIR, which an experiment's container (root, from an image of elsewhere) can write.

A container may leave anything under any name there: a symbolic link to a host file, a FIFO,
a device node, a directory, a file of gigabytes. So llem never follows a link in RUN_DIR and
only reads or writes regular files:

- its own files (``<id>_config.json``, ``<id>.log``) are created afresh: whatever has the name
  is unlinked, then the file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW``; a line added
  to a log later is appended with ``O_APPEND | O_NOFOLLOW`` to a regular file only;
- what an experiment leaves (``<id>_result.json``, ``<id>_error.json``) is opened with
  ``O_NOFOLLOW | O_NONBLOCK``, must be a regular file (``fstat``), and is read up to a cap.

Anything else raises ``UnsafeRunFile``, whose message says what was found; nothing is read from
it, written to it or waited on. (manifest.json is written to a new temporary file, which
``mkstemp`` creates with ``O_EXCL | O_NOFOLLOW`` under a random name, then renamed over the
name: a link planted as manifest.json is replaced, never followed.)
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

# What is read back of an experiment's own files. A result is copied into manifest.json,
# which is rewritten after every experiment; an error file only gives its message.
RESULT_CAP = 4 * 1024 * 1024
ERROR_CAP = 1024 * 1024

_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class UnsafeRunFile(Exception):
    """A name in RUN_DIR that llem refuses to read or write; the message says why."""


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _refused(path: Path, what: str) -> UnsafeRunFile:
    return UnsafeRunFile(f"{path.name} in the run directory is {what}: refused, not followed")


def remove(path: Path) -> None:
    """Remove what has this name (a file, a link, a FIFO); a directory is refused."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise _refused(path, "a directory") from None
    except OSError as exc:
        raise UnsafeRunFile(f"{path.name}: cannot remove ({exc.strerror or exc})") from None


def create(path: Path) -> BinaryIO:
    """A new, empty regular file at ``path`` opened for reading and writing, never a link's target.

    What had the name before is removed first (see ``remove``).
    """
    remove(path)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:  # planted again between the unlink and the open
        raise _refused(path, "re-created while llem wrote it") from None
    except OSError as exc:
        raise UnsafeRunFile(f"{path.name}: cannot create ({exc.strerror or exc})") from None
    return os.fdopen(fd, "w+b")


def write(path: Path, data: bytes) -> None:
    """Write ``data`` as a new regular file at ``path`` (see ``create``)."""
    with create(path) as out:
        out.write(data)


def append(path: Path, data: bytes) -> None:
    """Add ``data`` at the end of the regular file ``path`` (created when absent), never
    following a link; anything else there raises UnsafeRunFile."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refused(path, "a symbolic link") from None
        raise UnsafeRunFile(f"{path.name}: cannot write ({exc.strerror or exc})") from None
    with os.fdopen(fd, "ab") as out:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # a FIFO or a device: never written to
            raise _refused(path, _kind(mode))
        out.write(data)


def read(path: Path, cap: int) -> bytes | None:
    """The content of the regular file ``path``, None when nothing has the name.

    Raises UnsafeRunFile for a link, a FIFO, a device, a directory, or a file over ``cap`` bytes.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnsafeRunFile(f"{path.name}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):  # refused before any open(): opening a device can act on it
        raise _refused(path, _kind(mode))
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refused(path, "a symbolic link") from None
        raise UnsafeRunFile(f"{path.name}: cannot read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # replaced between the lstat and the open
            raise _refused(path, _kind(info.st_mode))
        data = handle.read(cap + 1)
    if info.st_size > cap or len(data) > cap:
        raise UnsafeRunFile(
            f"{path.name} is larger than {cap // (1024 * 1024)} MiB: refused, not read"
        )
    return data


def tail(handle: BinaryIO, size: int) -> bytes:
    """The last ``size`` bytes of an open file, read without moving its offset."""
    fd = handle.fileno()
    end = os.fstat(fd).st_size
    start = max(0, end - size)
    return os.pread(fd, end - start, start)
