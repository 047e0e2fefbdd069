"""The ids of the built-in checks (DESIGN §1 and §9), light enough for the study model."""

from __future__ import annotations

from collections.abc import Iterable

DOCKER_IDS = (
    "docker-cli",
    "docker-daemon",
    "host-driver",
    "nvidia-toolkit",
    "cuda-compat",
    "gpu-in-container",
)
MEASUREMENT_IDS = ("gpu-idle", "persistence-mode", "mig-mode", "clock-events", "energy-counter")
BUILTIN_IDS = DOCKER_IDS + MEASUREMENT_IDS
PER_IMAGE_IDS = ("cuda-compat", "gpu-in-container")


def unknown_check_ids(ids: Iterable[str]) -> list[str]:
    """The ids that name no built-in check: ``all``, a base id and ``BASE[IMAGE]`` of a
    per-image check are known."""
    unknown = []
    for cid in ids:
        base, bracket, rest = cid.partition("[")
        known = cid == "all" or cid in BUILTIN_IDS
        known = known or (bool(bracket) and base in PER_IMAGE_IDS and rest.endswith("]"))
        if not known:
            unknown.append(cid)
    return unknown
