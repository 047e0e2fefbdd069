"""Podman, reached through its CLI on this machine (a remote Podman is refused for now)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .proc import PARSED_OUTPUT_MAX, Started, run, start

if TYPE_CHECKING:
    from ..domain.records import CommandResult

CLI = "podman"
VERSION_ARGV = (CLI, "version", "--format", "{{json .}}")
# Where Podman reads CDI specs: the CDI library's defaults (container-device-interface,
# pkg/cdi/spec-dirs.go). A containers.conf `cdi_spec_dirs` is honoured from Podman 5.5 on only
# (containers/podman#25717), and is not read here.
CDI_SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")
# What makes the podman CLI a client of a Podman service elsewhere (podman(1), "Remote
# Access"): these variables; `podman --remote` and podman-remote are the CLI's own forms.
REMOTE_ENV = ("CONTAINER_HOST", "CONTAINER_CONNECTION")


def podman_path(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return shutil.which(CLI, path=env.get("PATH", os.defpath))


def remote_setting(path: str | None, env: Mapping[str, str] | None = None) -> str:
    """Why the podman CLI would run containers on a Podman service rather than here ("": it
    would not, as far as its environment and its executable tell)."""
    env = os.environ if env is None else env
    for name in REMOTE_ENV:
        if env.get(name):
            return f"{name}={env[name]}"
    if path and os.path.basename(os.path.realpath(path)).startswith("podman-remote"):
        return f"{path} is podman-remote"
    return ""


def podman_version(timeout: float, env: Mapping[str, str] | None = None) -> CommandResult:
    return run(VERSION_ARGV, timeout=timeout, env=env, limit=PARSED_OUTPUT_MAX)


def start_version(env: Mapping[str, str] | None = None) -> Started:
    """`podman_version()` started now; `Started.finish(timeout)` collects it."""
    return start(VERSION_ARGV, env=env, limit=PARSED_OUTPUT_MAX)
