"""Plain records of what the host adapters found (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .host.docker import Endpoint, ImageInfo
from .host.proc import CommandResult

if TYPE_CHECKING:
    from .nvidia_smi import SmiInfo


@dataclass(frozen=True)
class HostFacts:
    endpoint: Endpoint
    docker_path: str | None
    version: CommandResult | None  # None when there is no docker CLI
    toolkit: dict[str, str]
    smi: CommandResult | None  # None when not asked (remote daemon)
    smi_info: SmiInfo | None

    @property
    def server_version(self) -> str:
        from .host.docker import parse_version

        if self.version is None:
            return ""
        server = parse_version(self.version).get("Server") or {}
        return str(server.get("Version", "")) if isinstance(server, dict) else ""

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
