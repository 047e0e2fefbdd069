"""Plain records of what the host adapters found (no I/O here)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .gpu_access import GpuAccess
    from .nvidia_smi import SmiInfo


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    timed_out: bool = False
    missing: bool = False  # the executable itself was not found
    # Its output passed the limit of output read whole: stopped, and no stdout (stderr says so).
    too_large: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.too_large

    @property
    def output(self) -> str:
        return "\n".join(s for s in (self.stdout.strip(), self.stderr.strip()) if s)

    @property
    def command(self) -> str:
        return " ".join(self.argv)


@dataclass(frozen=True)
class Endpoint:
    """Where the docker CLI will connect, and whether that daemon runs on another machine."""

    url: str  # as the docker CLI reads it ("127.0.0.1:2375" is tcp://127.0.0.1:2375)
    context: str | None = None
    source: str = "default"
    error: str = ""  # why the docker CLI refuses this endpoint ("" when it takes it)

    @property
    def remote(self) -> bool:
        return not self.error and self.url.startswith(("tcp://", "ssh://", "http://", "https://"))


@dataclass(frozen=True)
class ImageInfo:
    id: str
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()


def parse_version(result: CommandResult) -> dict[str, Any]:
    """The Client/Server parts of `docker version --format '{{json .}}'` (empty if unreadable)."""
    for line in result.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            return data if isinstance(data, dict) else {}
    return {}


@dataclass(frozen=True)
class HostFacts:
    endpoint: Endpoint
    docker_path: str | None
    # `docker version` (`podman version` for Podman); None when there is no such CLI
    version: CommandResult | None
    toolkit: dict[str, str]
    smi: CommandResult | None  # None when not asked (remote daemon)
    smi_info: SmiInfo | None
    waited_s: float = 0.0  # how long `--wait` retried these queries (0: not at all)
    waited_for: tuple[str, ...] = ()  # the checks still waited for when its time was up
    engine: str = "docker"  # the container engine the session's containers run on
    podman_path: str | None = None
    podman_remote: str = ""  # why Podman would run containers elsewhere ("": it would not)
    gpu_access: GpuAccess | None = None  # the path GPU requests take (once settings are known)
    # Inside a Slurm job whose nvidia-smi numbers its GPUs from 0: how they map to host
    # indices (`allocation.job_view`); ``smi_info`` is in host indices already. None elsewhere.
    job_view: dict[str, Any] | None = None

    @property
    def server_version(self) -> str:
        """The engine's version (local Podman has no server: its CLI's)."""
        if self.version is None:
            return ""
        data = parse_version(self.version)
        from .engines import profile

        part = data.get(profile(self.engine).version_part) or {}
        return str(part.get("Version", "")) if isinstance(part, dict) else ""

    @property
    def client_version(self) -> str:
        if self.version is None:
            return ""
        client = parse_version(self.version).get("Client") or {}
        return str(client.get("Version", "")) if isinstance(client, dict) else ""

    def brand(self) -> str | None:
        info = self.smi_info
        brand = info.gpus[0].brand if info and info.gpus else None
        return brand.lower() if brand else None

    def driver_details(self) -> dict[str, Any]:
        info = self.smi_info
        if info is None:
            return {}
        cuda = info.cuda_version
        derived = False
        if not cuda and info.driver_version:
            from .cuda_table import cuda_for_driver

            cuda, derived = cuda_for_driver(info.driver_version), True
        return {
            "driver_version": info.driver_version,
            "cuda_version": cuda,
            "cuda_version_derived": derived,
            "gpus": [
                {
                    "index": g.index,
                    "name": g.name,
                    "uuid": g.uuid,
                    "brand": g.brand,
                    "architecture": g.architecture,
                }
                for g in info.gpus
            ],
        }


@dataclass(frozen=True)
class ImageFacts:
    image: str
    info: ImageInfo | None
    inspect: CommandResult
    pull: CommandResult | None = None


@dataclass(frozen=True)
class ProbeFacts:
    image: str
    name: str
    result: CommandResult
    gpus: list[dict[str, str]] = field(default_factory=list)
    cached: bool = False
    request: str = "all"  # the GPU request it made (`domain.gpu_request`)
