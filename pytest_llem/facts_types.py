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
    compute_caps: tuple[str, ...] = ()

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

    def arch(self) -> str | None:
        """Compute capability of the first GPU, as NVIDIA_REQUIRE_* `arch` conditions mean it."""
        return self.compute_caps[0] if self.compute_caps else None

    def _caps(self, count: int) -> list[str | None]:
        caps: list[str | None] = list(self.compute_caps)
        return (caps + [None] * count)[:count]

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
                    "compute_capability": cap,
                }
                for g, cap in zip(info.gpus, self._caps(len(info.gpus)), strict=True)
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
