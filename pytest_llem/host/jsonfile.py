"""The one report writer (JSON, and JUnit XML): a reader sees the old file or the new one,
never half of one.

A regular file (or a new one) is replaced atomically through a temporary file beside it; a
link at the destination is replaced, never followed. Only where the caller names a path of
its own choosing (`follow=True`, a report path) may that path lead to a special file, a FIFO,
a terminal or `/dev/stdout`, which is then written in place.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Any


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


def unwritable_reason(path: Path) -> str | None:
    """Why a JSON file could not be written at ``path`` (checked before any work), or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        return exc.strerror or str(exc)
    if st is not None and stat.S_ISDIR(st.st_mode):
        return "is a directory"
    if st is not None and not stat.S_ISREG(st.st_mode):
        return None if os.access(path, os.W_OK) else "not writable"
    parent = path.absolute().parent
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not a writable directory"
    return None


def write_json(path: Path, data: Any, *, mode: int = 0o644, follow: bool = False) -> None:
    """Write ``data`` as JSON to ``path``; raises OSError (and leaves no temporary file)."""
    write_text(path, dumps(data), mode=mode, follow=follow)


def write_text(path: Path, content: str, *, mode: int = 0o644, follow: bool = False) -> None:
    """Write ``content`` (a report: JSON, JUnit XML) to ``path`` the same way."""
    text = content.encode("utf-8")
    if follow:
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISREG(os.stat(path).st_mode):
                _write_in_place(path, text)
                return
    fd, tmp = tempfile.mkstemp(dir=path.absolute().parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(text)
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


def _write_in_place(path: Path, text: bytes) -> None:
    """A FIFO, a terminal, /dev/stdout: written as they are (never replaced by a file)."""
    fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)
    try:
        view = memoryview(text)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
