"""Reading a study or user-config file: once, and at most a few MiB (no YAML here: a
remembered plan is found from these bytes without loading a YAML parser)."""

from __future__ import annotations

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
