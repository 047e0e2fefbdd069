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

from . import cdi, docker, nvidia
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
    from ..domain.gpu_access import GpuAccess
    from .engines import engine_host

    wanted = tuple(dict.fromkeys(n for label in labels for n in gpu_request.cdi_names(label)))
    answered = host.version is not None and host.version.ok
    found = engine_host(host.engine).gpu_path(host, mode, engine_config)
    files = None
    here = not found.remote
    if read_specs and answered and found.path == gpu_request.CDI and found.spec_dirs and here:
        files = cdi.read_specs(found.spec_dirs)
    return GpuAccess(
        engine=host.engine, mode=mode, path=found.path, reason=found.reason,
        engine_version=found.version, client_version=found.client, spec_dirs=found.spec_dirs,
        specs=files.specs if files else (), unread=files.unread if files else (),
        absent=files.absent if files else frozenset(), discovered=found.discovered,
        wanted=wanted, remote=found.remote,
    )  # fmt: skip


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
