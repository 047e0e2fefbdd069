"""The built-in checks, each declared once: its id, tier, the runners that require it, how it
is parametrised, the facts it needs and where its verdict is.

Everything that used to restate these lists derives from `CHECKS`: the ids a study may skip,
the checks whose failure holds image work back (`gating_ids`), the ones `--wait` retries
(`waiting_ids`), the measurement tier, and the checks a configuration requires
(`required_ids`), which the verdict holds the session to. Adding a check means one
declaration here, its verdict, its pytest function in `checks/`, and their tests (a test ties
the declarations to the collected items).

Light enough for the study model and for the modules that start the first host queries: no
dataclasses, no records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

# Runner kinds whose experiments a check guards (see run/runner_kinds.py), and `CDI`: the
# containers whose GPU request goes through CDI (Podman's always; Docker's when
# `docker.gpu_request` says so, or the engine does).
DOCKER, LOCAL, PODMAN, CDI = "docker", "local", "podman", "cdi"


class CheckDecl(NamedTuple):
    """One built-in check."""

    id: str
    tier: int
    runners: frozenset[str]  # the runner kinds whose experiments require it
    per: str = ""  # "": once a session; "image": once per image; "request": per (image, GPUs)
    verdict: str = ""  # where its verdict is: "module:function" under pytest_llem.domain
    gates_images: bool = False  # a failure keeps pulls and probes from starting
    waits: bool = False  # `--wait` retries its host queries while its finding may clear
    needs: tuple[str, ...] = ()  # facts: docker, smi, image, probe
    doc: str = ""  # what it proves, one line


_DOCKER = frozenset({DOCKER})
_ENGINES = frozenset({DOCKER, PODMAN})
_ANY = frozenset({DOCKER, PODMAN, LOCAL})

CHECKS: tuple[CheckDecl, ...] = (
    CheckDecl(
        "docker-cli", 1, _DOCKER, verdict="verdicts:docker_cli", gates_images=True,
        waits=True, needs=("docker",), doc="the docker CLI is on PATH",
    ),
    CheckDecl(
        "docker-daemon", 1, _DOCKER, verdict="verdicts:docker_daemon", gates_images=True,
        waits=True, needs=("docker",), doc="the CLI reaches a daemon",
    ),
    CheckDecl(
        "nvidia-toolkit", 1, _DOCKER, verdict="verdicts:nvidia_toolkit", gates_images=True,
        waits=True, needs=("docker",), doc="an NVIDIA Container Toolkit CLI beside a local daemon",
    ),
    CheckDecl(
        "podman-cli", 1, frozenset({PODMAN}), verdict="gpu_access:podman_cli",
        gates_images=True, needs=("podman",), doc="a local podman CLI is on PATH and answers",
    ),
    CheckDecl(
        "host-driver", 1, _ENGINES, verdict="verdicts:host_driver", waits=True,
        needs=("smi",), doc="host nvidia-smi reports the driver (warning only)",
    ),
    CheckDecl(
        "cdi-spec", 1, frozenset({CDI}), verdict="gpu_access:cdi_spec", gates_images=True,
        needs=("docker", "smi", "cdi"),
        doc="the engine's CDI spec names every requested GPU, for this driver and these GPUs",
    ),
    CheckDecl(
        "cuda-compat", 2, _ENGINES, per="image", verdict="verdicts:cuda_compat",
        needs=("image", "smi"), doc="the image's CUDA requirement holds for the driver",
    ),
    CheckDecl(
        "gpu-in-container", 2, _ENGINES, per="request", verdict="verdicts:gpu_in_container",
        needs=("image", "probe"), doc="a container of the image sees exactly the GPUs it asks for",
    ),
    CheckDecl(
        "gpu-idle", 3, _ANY, verdict="measurement:gpu_idle", needs=("smi",),
        doc="no other compute process on the GPUs to measure",
    ),
    CheckDecl(
        "persistence-mode", 3, _ANY, verdict="measurement:persistence_mode", needs=("smi",),
        doc="persistence mode on",
    ),
    CheckDecl(
        "mig-mode", 3, _ANY, verdict="measurement:mig_mode", needs=("smi",), doc="MIG off",
    ),
    CheckDecl(
        "clock-events", 3, _ANY, verdict="measurement:clock_events", needs=("smi",),
        doc="no thermal or power slowdown active",
    ),
    CheckDecl(
        "energy-counter", 3, _ANY, verdict="measurement:energy_counter", needs=("smi",),
        doc="NVML's total-energy counter exists (Volta or newer)",
    ),
    CheckDecl(
        "power-limit", 3, _ANY, verdict="measurement:power_limit", needs=("smi",),
        doc="the power limit is the default one (warning only)",
    ),
    CheckDecl(
        "gpu-health", 3, _ANY, verdict="measurement:gpu_health", needs=("smi",),
        doc="no pending row remapping or page retirement, remapping failure, volatile "
        "uncorrectable ECC error",
    ),
)  # fmt: skip

BY_ID = {decl.id: decl for decl in CHECKS}
MEASUREMENT_TIER = 3

BUILTIN_IDS = tuple(decl.id for decl in CHECKS)
DOCKER_IDS = tuple(decl.id for decl in CHECKS if LOCAL not in decl.runners)
MEASUREMENT_IDS = tuple(decl.id for decl in CHECKS if decl.tier == MEASUREMENT_TIER)
PER_IMAGE_IDS = tuple(decl.id for decl in CHECKS if decl.per)


def gating_ids(kinds: Iterable[str] | None = None) -> tuple[str, ...]:
    """The checks whose failure keeps every pull and probe from starting (of the runner
    ``kinds`` only, when given)."""
    wanted = None if kinds is None else frozenset(kinds)
    return tuple(
        decl.id
        for decl in CHECKS
        if decl.gates_images and (wanted is None or decl.runners & wanted)
    )


def waiting_ids(kinds: Iterable[str] | None = None) -> tuple[str, ...]:
    """The checks `--wait` retries while their finding may clear by itself (of the runner
    ``kinds`` only, when given)."""
    wanted = None if kinds is None else frozenset(kinds)
    return tuple(
        decl.id for decl in CHECKS if decl.waits and (wanted is None or decl.runners & wanted)
    )


def split_ids(values: Iterable[str]) -> list[str]:
    """Check ids from repeatable, comma-separated values; a comma inside ``[...]`` (a GPU
    request's device list) does not separate."""
    found: list[str] = []
    for value in values:
        depth, part = 0, list[str]()
        for char in value:
            depth += (char == "[") - (char == "]")
            if char == "," and depth <= 0:
                found.append("".join(part).strip())
                part = []
            else:
                part.append(char)
        found.append("".join(part).strip())
    return [cid for cid in found if cid]


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


def is_skipped(skip: Iterable[str], check_id: str) -> bool:
    """Whether ``skip`` names ``check_id``: itself, its base id, ``BASE[IMAGE]`` for every GPU
    request of that image, or ``all``."""
    return skipped_as(skip, check_id) is not None


def skipped_as(skip: Iterable[str], check_id: str) -> str | None:
    """The name in ``skip`` that skips ``check_id`` (the most precise one), or None."""
    names = set(skip)
    if not names:
        return None
    base, _, param = check_id.partition("[")
    image = param.removesuffix("]").partition(" ")[0]
    for name in (check_id, f"{base}[{image}]", base, "all"):
        if name in names:
            return name
    return None


def request_label(image: str, request: str, several: bool) -> str:
    """The bracket of a per-request check: the image alone when the configuration asks for it
    with one GPU request, else the image and the request (``IMAGE device=1,3``)."""
    return f"{image} {request}" if several else image


def param_ids(
    decl: CheckDecl, images: Sequence[str], requests: Sequence[tuple[str, str]]
) -> list[str]:
    """The ids of ``decl`` for a session checking ``images`` with ``requests`` ((image, GPU
    request label) pairs, each once)."""
    if decl.per == "image":
        return [f"{decl.id}[{image}]" for image in images]
    if decl.per == "request":
        counts: dict[str, int] = {}
        for image, _ in requests:
            counts[image] = counts.get(image, 0) + 1
        return [
            f"{decl.id}[{request_label(image, label, counts[image] > 1)}]"
            for image, label in requests
        ]
    return [decl.id]


def required_ids(
    kinds: Iterable[str],
    images: Sequence[str],
    requests: Sequence[tuple[str, str]],
    skip: Iterable[str] = (),
) -> list[str]:
    """Every check a configuration requires, in running order: those of the runner ``kinds``
    its experiments use, per image and GPU request; the ones ``skip`` names are left out
    (the person chose not to run them)."""
    kinds = set(kinds)
    skip = frozenset(skip)
    ids: list[str] = []
    for decl in sorted(CHECKS, key=lambda d: (d.tier, d.id)):  # the order they run in
        if not decl.runners & kinds:
            continue
        ids += [cid for cid in param_ids(decl, images, requests) if not is_skipped(skip, cid)]
    return ids
