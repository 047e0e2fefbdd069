"""Reading a study or user-config file: once, and at most a few MiB (no YAML here: a
remembered plan is found from these bytes without loading a YAML parser)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from ..errors import ConfigError

MAX_BYTES = 4 * 1024 * 1024


def read_bytes(path: Path) -> bytes:
    """The file's bytes, read once (a pipe such as /dev/stdin works), at most `MAX_BYTES`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a study file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_BYTES // (1024 * 1024)} MiB")
    return data


# Directories whose entries stand for open files (/dev/stdin, /dev/fd/N, /proc/self/fd/N):
# their "parent directory" says nothing about where the study came from.
_DESCRIPTOR_DIRS = re.compile(r"/dev|/dev/fd|/proc/[^/]+/fd")


def command_dir(path: Path) -> Path | None:
    """The directory a study's local commands run in: the study file's own (absolute), or
    None (the caller's current directory) when the study is not a regular file reached by a
    name of its own: a pipe, a terminal, /dev/stdin or /dev/fd/N (process substitution)."""
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
        parent = os.path.realpath(path.absolute().parent)
    except (OSError, ValueError):
        return None
    if not regular or _DESCRIPTOR_DIRS.fullmatch(parent):
        return None
    return path.absolute().parent
