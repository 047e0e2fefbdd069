"""Each container engine as the host queries see it: how its version is asked, whether its
containers run on this machine, its facts, what keys a remembered probe on its side, and how
it decides the path of GPU requests. One adapter per engine (`domain.engines` profiles them);
`facts.Facts` and `gpu_path` ask the session's adapter and never name an engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple, Protocol

from . import docker, nvidia, podman
from .proc import Started

if TYPE_CHECKING:
    from ..domain.records import HostFacts

EngineConfigOf = Callable[[], "docker.EngineConfig | None"]


class PathFacts(NamedTuple):
    """What decided the path of the session's GPU requests, and where CDI specs are read."""

    path: str  # `gpu_request.GPUS` or `gpu_request.CDI`
    reason: str
    version: str  # the engine's
    client: str  # the CLI's, where it parses the request itself ("" otherwise)
    remote: bool
    spec_dirs: tuple[str, ...] | None  # None: the engine reads no CDI specs, or did not say
    discovered: tuple[str, ...] | None


class EngineHost(Protocol):
    name: str

    def start_version(self, env: Mapping[str, str]) -> Started | None:
        """Its `<cli> version`, started now; None when it cannot be asked here."""
        ...

    def runs_here(self, env: Mapping[str, str]) -> bool:
        """Whether its containers run on this machine (then its GPUs are this `nvidia-smi`'s)."""
        ...

    def gather(self, timeout: float, version: Started | None, env: Mapping[str, str]) -> HostFacts:
        """Its facts (``version``: the `start_version` started already, if any)."""
        ...

    def identity(
        self, facts: HostFacts, env: Mapping[str, str], config: EngineConfigOf
    ) -> dict[str, str]:
        """What keys a remembered probe on its side (besides the toolkit's)."""
        ...

    def gpu_path(self, host: HostFacts, mode: str, config: EngineConfigOf) -> PathFacts:
        """The path its GPU requests take under ``docker.gpu_request`` ``mode``."""
        ...


class DockerHost:
    """The Docker engine the docker CLI reaches, here or on another machine."""

    name = "docker"

    def start_version(self, env: Mapping[str, str]) -> Started | None:
        return docker.start_version(env) if docker.docker_path(env) else None

    def runs_here(self, env: Mapping[str, str]) -> bool:
        return not docker.daemon_is_remote(env)

    def gather(self, timeout: float, version: Started | None, env: Mapping[str, str]) -> HostFacts:
        from ..domain.records import HostFacts

        path = docker.docker_path(env)
        result = None
        if version is not None:
            result = version.finish(timeout)
        elif path:
            result = docker.docker_version(timeout, env)
        return HostFacts(
            endpoint=docker.daemon_endpoint(env),
            docker_path=path,
            version=result,
            toolkit=nvidia.toolkit_tools(env),
            smi=None,
            smi_info=None,
        )

    def identity(
        self, facts: HostFacts, env: Mapping[str, str], config: EngineConfigOf
    ) -> dict[str, str]:
        """The daemon's ID, runtimes, default runtime and CDI setup (one `docker info`)."""
        engine = None
        if facts.docker_path and facts.version is not None and facts.version.ok:
            engine = config()
        dirs = engine.cdi_spec_dirs if engine else None
        local = not facts.endpoint.remote  # (spec files are read only when they are here)
        return {
            "daemon_id": engine.id if engine else "",
            "runtimes": engine.runtimes if engine else "",
            "default_runtime": engine.default_runtime if engine else "",
            "cdi_spec_dirs": "" if dirs is None else "\n".join(dirs),
            "cdi_specs": nvidia.cdi_specs_digest(dirs) if dirs and local else "",
        }

    def gpu_path(self, host: HostFacts, mode: str, config: EngineConfigOf) -> PathFacts:
        from ..domain.gpu_access import choose_path

        remote = host.endpoint.remote
        hook_found = nvidia.HOOK_TOOL in host.toolkit
        answered = host.version is not None and host.version.ok
        found = config() if answered and _asks_engine(mode, host, hook_found) else None
        version = (found.server_version if found else "") or host.server_version
        dirs = found.cdi_spec_dirs if found else None
        discovered = found.discovered if found else None
        path, reason = choose_path(
            self.name, mode, engine_version=version, spec_dirs=dirs, discovered=discovered,
            hook_found=hook_found, remote=remote,
        )  # fmt: skip
        return PathFacts(path, reason, version, host.client_version, remote, dirs, discovered)


class PodmanHost:
    """A local Podman: its CLI runs the containers (a remote Podman is refused for now)."""

    name = "podman"

    def start_version(self, env: Mapping[str, str]) -> Started | None:
        path = podman.podman_path(env)
        local = path and not podman.remote_setting(path, env)
        return podman.start_version(env) if local else None

    def runs_here(self, env: Mapping[str, str]) -> bool:
        return True  # (a remote one is refused by podman-cli before any container)

    def gather(self, timeout: float, version: Started | None, env: Mapping[str, str]) -> HostFacts:
        """Its CLI, whether it is set to run containers elsewhere, and its `podman version`
        (not asked of a remote Podman: the session refuses it)."""
        from ..domain.records import Endpoint, HostFacts

        path = podman.podman_path(env)
        remote = podman.remote_setting(path, env) if path else ""
        result = None
        if version is not None:
            result = version.finish(timeout)
        elif path and not remote:
            result = podman.podman_version(timeout, env)
        return HostFacts(
            endpoint=Endpoint("local", source=self.name),
            docker_path=None,
            version=result,
            toolkit=nvidia.toolkit_tools(env),
            smi=None,
            smi_info=None,
            engine=self.name,
            podman_path=path,
            podman_remote=remote,
        )

    def identity(
        self, facts: HostFacts, env: Mapping[str, str], config: EngineConfigOf
    ) -> dict[str, str]:
        """Its version and its CDI specs."""
        return {
            "engine": self.name,
            "podman_version": facts.server_version,
            "cdi_specs": nvidia.cdi_specs_digest(podman.CDI_SPEC_DIRS),
        }

    def gpu_path(self, host: HostFacts, mode: str, config: EngineConfigOf) -> PathFacts:
        from ..domain.gpu_access import choose_path

        path, reason = choose_path(self.name, mode)
        dirs = podman.CDI_SPEC_DIRS
        return PathFacts(path, reason, host.server_version, "", False, dirs, None)


HOSTS: dict[str, EngineHost] = {h.name: h for h in (DockerHost(), PodmanHost())}


def engine_host(engine: str) -> EngineHost:
    """The adapter of ``engine`` (a name `domain.engines.ENGINES` knows)."""
    return HOSTS[engine]


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
