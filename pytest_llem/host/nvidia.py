"""The host's NVIDIA driver and Container Toolkit, as seen from this machine."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .proc import PARSED_OUTPUT_MAX, Started, run, start

if TYPE_CHECKING:
    from ..domain.records import CommandResult

TOOLKIT_TOOLS = ("nvidia-ctk", "nvidia-container-runtime", "nvidia-container-cli")
HOOK_TOOL = "nvidia-container-runtime-hook"
TOOLKIT_CONFIG = "/etc/nvidia-container-runtime/config.toml"
SMI_ARGV = ("nvidia-smi", "-q")
# `-q` names the architecture (Hopper), but NVIDIA_REQUIRE_* `arch` compares compute capability.
CAPS_ARGV = ("nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader")


def toolkit_tools(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The toolkit executables on PATH, name -> path (the hook included)."""
    path = (os.environ if env is None else env).get("PATH", os.defpath)
    found = {name: shutil.which(name, path=path) for name in (*TOOLKIT_TOOLS, HOOK_TOOL)}
    return {name: where for name, where in found.items() if where}


def toolkit_version(
    tools: Mapping[str, str], timeout: float, env: Mapping[str, str] | None = None
) -> str:
    """First line of the toolkit's own version output ("" when it cannot tell)."""
    argv = toolkit_version_argv(tools)
    if argv:
        result = run(argv, timeout=timeout, env=env)
        if result.ok and result.stdout.strip():
            return result.stdout.strip().splitlines()[0]
    return ""


def toolkit_version_argv(tools: Mapping[str, str]) -> tuple[str, ...] | None:
    name = next((n for n in ("nvidia-ctk", "nvidia-container-cli") if n in tools), None)
    return (tools[name], "--version") if name else None


def toolkit_config_digest(path: str = TOOLKIT_CONFIG) -> str:
    import hashlib

    try:
        with open(path, "rb") as config:
            return hashlib.sha256(config.read()).hexdigest()[:16]
    except OSError:
        return ""


CDI_SPEC_SUFFIXES = (".json", ".yaml", ".yml")
MAX_CDI_SPEC_BYTES = 16 * 1024 * 1024


def cdi_specs_digest(dirs: Sequence[str]) -> str:
    """A digest of the CDI specs in ``dirs`` (each directory's own spec files, as the CDI
    library reads them): a spec rewritten after a driver upgrade, or left stale, changes it.
    "" when no directory is named."""
    if not dirs:
        return ""
    import hashlib

    digest = hashlib.sha256()
    for directory in dirs:
        digest.update(f"dir {directory}\n".encode())
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            digest.update(f"unreadable {exc.errno}\n".encode())
            continue
        for name in names:
            if not name.endswith(CDI_SPEC_SUFFIXES):
                continue
            path = os.path.join(directory, name)
            try:
                with open(path, "rb") as spec:
                    data = spec.read(MAX_CDI_SPEC_BYTES + 1)
            except IsADirectoryError:
                continue
            except OSError as exc:
                digest.update(f"spec {name} unreadable {exc.errno}\n".encode())
                continue
            digest.update(f"spec {name} {len(data)}\n".encode())
            digest.update(data)
    return digest.hexdigest()[:16]


def nvidia_smi_query(timeout: float, env: Mapping[str, str] | None = None) -> CommandResult:
    """`nvidia-smi -q`: driver, CUDA version, and per GPU its name, brand, architecture, UUID."""
    return run(SMI_ARGV, timeout=timeout, env=env, limit=PARSED_OUTPUT_MAX)


def start_smi_query(env: Mapping[str, str] | None = None) -> Started:
    """`nvidia_smi_query()` started now; `Started.finish(timeout)` collects it."""
    return start(SMI_ARGV, env=env, limit=PARSED_OUTPUT_MAX)


def compute_capabilities(timeout: float, env: Mapping[str, str] | None = None) -> list[str]:
    """Compute capability of each GPU ("9.0"); empty when the driver cannot tell."""
    result = run(CAPS_ARGV, timeout=timeout, env=env, limit=PARSED_OUTPUT_MAX)
    if not result.ok:
        return []
    values = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    from ..domain.text import is_decimal

    return values if all(is_decimal(v) for v in values) else []
