"""The container engines a study's containers run on, and what sets them apart: one profile
each, read wherever the engine matters (its adapter on the host side is `host.engines`)."""

from __future__ import annotations

from typing import NamedTuple

from .check_ids import DOCKER, PODMAN


class EngineProfile(NamedTuple):  # (no dataclass: read before the first host queries start)
    name: str  # as a study, the settings and the runner kinds name it
    title: str  # as messages name it
    reached_by: str  # the tier-1 check that proves the engine answers
    cdi_only: bool  # its containers reach GPUs through CDI alone (no --gpus, no NVIDIA hook)
    version_part: str  # the part of `<cli> version --format json` that names the engine's


ENGINES = {
    e.name: e
    for e in (
        EngineProfile(DOCKER, "Docker", "docker-daemon", cdi_only=False, version_part="Server"),
        # Local Podman has no server: its CLI runs the containers (and names the version).
        EngineProfile(PODMAN, "Podman", "podman-cli", cdi_only=True, version_part="Client"),
    )
}


def profile(engine: str) -> EngineProfile:
    """The profile of ``engine`` (settings validate the name: an unknown one is a bug)."""
    return ENGINES[engine]
