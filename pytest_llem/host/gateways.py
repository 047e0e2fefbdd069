"""Can a fleet host run the pre-flight? Asked before pytest-xdist opens its gateway there.

The question goes the way execnet will go (ssh with the spec's arguments and ssh config, the
spec's Python), with a limit, so that a host that does not answer fails alone and at once,
instead of stopping the whole session.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..domain.records import CommandResult
from .proc import run

# What the host's Python is asked: can it import what a worker needs? (No single quotes: it
# travels inside them through the remote shell.)
PROBE_CODE = (
    "import sys\n"
    "try:\n"
    "    import pytest_llem, xdist\n"
    "except ImportError as exc:\n"
    "    print(exc)\n"
    "    sys.exit(3)\n"
    "print(pytest_llem.__version__)\n"
)
MISSING_PACKAGE = 3  # the probe's exit status when pytest-llem (or pytest-xdist) is missing


def probe_ssh(
    ssh: str,
    python: str,
    *,
    ssh_config: str | None,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """``ssh ARGS PYTHON -c PROBE`` without a prompt; exit 255 is ssh's own failure."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(timeout))}"]
    if ssh_config:
        argv += ["-F", ssh_config]
    argv += ssh.split()
    argv.append(f"{python} -c '{PROBE_CODE}'")
    return run(argv, timeout=timeout + 5, env=env)


def probe_local(
    python: list[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> CommandResult:
    """``PYTHON -c PROBE`` on this machine (a popen gateway with a Python of its own)."""
    return run([*python, "-c", PROBE_CODE], timeout=timeout, env=env)


def probe_context(
    context: str, *, timeout: float, env: Mapping[str, str] | None = None
) -> CommandResult:
    """``docker context inspect CONTEXT``: does the Docker context of a popen gateway exist?"""
    return run(["docker", "context", "inspect", context], timeout=timeout, env=env)
