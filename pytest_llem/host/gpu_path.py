"""The path a session's GPU requests take (`--gpus` or CDI), gathered from the engine.

One function for the pre-flight (`Facts.gpu_access`) and the dispatch (`docker_gpu_path`, when
an experiment of ``docker.gpu_request: auto`` starts): both decide with the same facts and the
same rule (`domain.gpu_access.choose_path`), so the probe and the experiment make the same
request.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from . import cdi, docker, nvidia, podman
from .proc import HOST_COMMAND_TIMEOUT_S

if TYPE_CHECKING:
    from ..domain.gpu_access import GpuAccess
    from ..domain.records import HostFacts

_lock = threading.Lock()
_decided: dict[tuple[str, str], str] = {}  # (endpoint, PATH) -> path, once per process


def gpu_access(
    mode: str,
    labels: Iterable[str],
    host: HostFacts,
    engine_config: Callable[[], docker.EngineConfig | None],
    *,
    read_specs: bool = True,
) -> GpuAccess:
    """How the GPU requests ``labels`` (``all``, ``device=1``) of a session on ``host``'s
    engine reach the GPUs under ``docker.gpu_request`` ``mode``, with the engine's CDI specs
    (read when the path is CDI, the engine answered and its files are this machine's).
    ``engine_config`` is asked (`docker info`) only when the decision needs it."""
    from ..domain import gpu_request
    from ..domain.gpu_access import GpuAccess, choose_path

    wanted = tuple(dict.fromkeys(n for label in labels for n in gpu_request.cdi_names(label)))
    answered = host.version is not None and host.version.ok
    if host.engine == "podman":
        path, reason = choose_path("podman", mode)
        version, client, remote = host.server_version, "", False
        dirs: tuple[str, ...] | None = podman.CDI_SPEC_DIRS
        discovered = None
    else:
        client, remote = host.client_version, host.endpoint.remote
        hook_found = nvidia.HOOK_TOOL in host.toolkit
        config = engine_config() if answered and _asks_engine(mode, host, hook_found) else None
        version = (config.server_version if config else "") or host.server_version
        dirs = config.cdi_spec_dirs if config else None
        discovered = config.discovered if config else None
        path, reason = choose_path(
            "docker", mode, engine_version=version, spec_dirs=dirs, discovered=discovered,
            hook_found=hook_found, remote=remote,
        )  # fmt: skip
    files = None
    if read_specs and answered and path == gpu_request.CDI and dirs and not remote:
        files = cdi.read_specs(dirs)
    return GpuAccess(
        engine=host.engine, mode=mode, path=path, reason=reason, engine_version=version,
        client_version=client, spec_dirs=dirs, specs=files.specs if files else (),
        unread=files.unread if files else (), absent=files.absent if files else frozenset(),
        discovered=discovered, wanted=wanted, remote=remote,
    )  # fmt: skip


def _asks_engine(mode: str, host: HostFacts, hook_found: bool) -> bool:
    """Whether the path of a Docker session's GPU requests needs `docker info` (its CDI spec
    directories and devices): not for ``gpus``, nor where ``auto`` has its answer already (a
    remote daemon, the NVIDIA hook installed, an engine older than CDI)."""
    from ..domain.gpu_access import CDI_FIRST, version_tuple

    if mode != "auto":
        return mode == "cdi"
    version = version_tuple(host.server_version)
    old = version is not None and version < CDI_FIRST
    return not (host.endpoint.remote or hook_found or old)


def docker_gpu_path(env: Mapping[str, str]) -> str:
    """``gpus`` or ``cdi``: what ``auto`` means on the engine the docker CLI reaches, asked
    once per process (an experiment of a study starts after its pre-flight decided the same)."""
    from ..domain.records import HostFacts

    endpoint = docker.daemon_endpoint(env)
    key = (endpoint.url, env.get("PATH", ""))
    with _lock:
        if key in _decided:
            return _decided[key]
    path = docker.docker_path(env)
    version = docker.docker_version(HOST_COMMAND_TIMEOUT_S, env) if path else None
    host = HostFacts(endpoint, path, version, nvidia.toolkit_tools(env), None, None)
    ask = functools.partial(docker.engine_config, HOST_COMMAND_TIMEOUT_S, env)
    decided = gpu_access("auto", (), host, ask, read_specs=False).path
    with _lock:
        _decided[key] = decided
    return decided
