"""The CDI specs in an engine's spec directories, read as untrusted files.

Any local user who can write a spec directory writes what llem reads here, so a spec file is
opened without following a link (``O_NOFOLLOW``), must be a regular file, and is read up to a
size cap; it is parsed by `domain.cdi` within its own bounds. Besides the specs, which of the
host files they name (device nodes, driver libraries, hooks) exist: only ``stat`` is asked of
those, nothing is opened.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from ..domain.cdi import SPEC_SUFFIXES, CdiSpec, SpecError, parse_spec

MAX_SPEC_BYTES = 4 * 1024 * 1024  # NVIDIA's specs are tens of KiB
MAX_SPEC_FILES = 256  # per directory


class SpecFiles(NamedTuple):
    specs: tuple[CdiSpec, ...]  # in the engine's order: directory by directory, by name
    unread: tuple[tuple[str, str], ...]  # (file, why) of spec files that could not be used
    absent: frozenset[str]  # host files the specs name that do not exist


def read_specs(dirs: Sequence[str]) -> SpecFiles:
    """Every spec of ``dirs`` (``.json`` and ``.yaml`` files directly in each, as the CDI
    library reads them), and which of the host files they name are absent."""
    specs: list[CdiSpec] = []
    unread: list[tuple[str, str]] = []
    for directory in dirs:
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            continue
        except OSError as exc:
            unread.append((directory, f"cannot list ({exc.strerror or exc})"))
            continue
        chosen = [n for n in names if n.endswith(SPEC_SUFFIXES)]
        if len(chosen) > MAX_SPEC_FILES:
            unread.append((directory, f"more than {MAX_SPEC_FILES} spec files: the rest unread"))
            chosen = chosen[:MAX_SPEC_FILES]
        for name in chosen:
            path = os.path.join(directory, name)
            data, why = _read(path)
            if data is None:
                if why:
                    unread.append((path, why))
                continue
            try:
                specs.append(parse_spec(data, path))
            except SpecError as exc:
                unread.append((path, f"not a valid CDI spec: {exc}"))
    return SpecFiles(tuple(specs), tuple(unread), _absent(p for s in specs for p in s.host_paths()))


def _read(path: str) -> tuple[bytes | None, str]:
    """The bytes of a regular file, never a link's target; (None, why) otherwise (why is ""
    for a directory, which the CDI library skips too)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "a symbolic link: not followed"
        if exc.errno == errno.EISDIR:
            return None, ""
        return None, f"cannot open ({exc.strerror or exc})"
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            return None, ""
        if not stat.S_ISREG(mode):
            return None, "not a regular file: not read"
        chunks, size = [], 0
        while size <= MAX_SPEC_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_SPEC_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_SPEC_BYTES:
            return None, f"larger than {MAX_SPEC_BYTES // (1024 * 1024)} MiB: not read"
        return b"".join(chunks), ""
    except OSError as exc:
        return None, f"cannot read ({exc.strerror or exc})"
    finally:
        os.close(fd)


def _absent(paths: Iterable[str]) -> frozenset[str]:
    return frozenset(p for p in dict.fromkeys(paths) if not os.path.exists(p))
