"""Where llem keeps the user's files (no heavy imports: the CLI's fast paths use it)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

USER_CONFIG = Path("llenergymeasure") / "config.yaml"


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/llenergymeasure/config.yaml`` (default ``~/.config``)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):  # the XDG spec says to ignore a relative value
        base = os.path.join(env.get("HOME") or str(Path.home()), ".config")
    return Path(base) / USER_CONFIG


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/llenergymeasure`` (default ``~/.cache``)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(env.get("HOME") or str(Path.home()), ".cache")
    return Path(base) / "llenergymeasure"
