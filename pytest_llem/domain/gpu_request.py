"""The GPU request a container makes, in one place for the probe and the experiment.

A request is named by its label. Which GPUs: ``all`` or ``device=1,3`` (what ``docker run
--gpus`` takes; GPU indices as the host's nvidia-smi numbers them). How they are reached: a
plain label goes through the engine's NVIDIA hook (``--gpus``); a ``cdi:`` label (``cdi:all``,
``cdi:1,3``) names CDI devices instead (``--device nvidia.com/gpu=1 --device
nvidia.com/gpu=3``), which the engine resolves from its CDI specs.
"""

from __future__ import annotations

from collections.abc import Sequence

ALL = "all"
CDI_PREFIX = "cdi:"
CDI_KIND = "nvidia.com/gpu"  # the device kind of NVIDIA's CDI specs (`nvidia-ctk cdi generate`)
# How a request reaches the GPUs: through the NVIDIA hook, or through CDI.
GPUS, CDI = "gpus", "cdi"
PATHS = (GPUS, CDI)


def label_of(devices: Sequence[int] | None, path: str = GPUS) -> str:
    """The request of an experiment that uses ``devices`` (None: every GPU), by ``path``."""
    if path == CDI:
        return CDI_PREFIX + (ALL if devices is None else ",".join(str(i) for i in devices))
    if devices is None:
        return ALL
    return "device=" + ",".join(str(i) for i in devices)


def is_cdi(label: str) -> bool:
    return label.startswith(CDI_PREFIX)


def devices_of(label: str) -> tuple[int, ...] | None:
    """The GPU indices ``label`` asks for; None for every GPU. ValueError when it is no
    request llem makes."""
    if label.startswith(CDI_PREFIX):
        rest = label.removeprefix(CDI_PREFIX)
        if rest == ALL:
            return None
        kind = "device"
    elif label == ALL:
        return None
    else:
        kind, _, rest = label.partition("=")
    parts = rest.split(",")
    if kind != "device" or not rest or not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(
            f"not a GPU request: {label!r} (expected all, device=N[,N...], cdi:all or cdi:N[,N...])"
        )
    return tuple(int(p) for p in parts)


def via(label: str, path: str) -> str:
    """The same GPUs as ``label``, reached by ``path`` (`GPUS` or `CDI`)."""
    return label_of(devices_of(label), path)


def cdi_names(label: str) -> list[str]:
    """The fully qualified CDI device names of the request (``nvidia.com/gpu=all``, ...)."""
    devices = devices_of(label)
    ids = [ALL] if devices is None else [str(i) for i in devices]
    return [f"{CDI_KIND}={i}" for i in ids]


def docker_args(label: str) -> list[str]:
    """The ``docker run`` (or ``podman run``) arguments of the request. A ``--gpus`` device
    list is quoted: the CLI reads the value as CSV, where a bare comma would split it."""
    if is_cdi(label):
        return [arg for name in cdi_names(label) for arg in ("--device", name)]
    devices = devices_of(label)
    if devices is None:
        return ["--gpus", ALL]
    return ["--gpus", f'"device={",".join(str(i) for i in devices)}"']


def shown(label: str) -> str:
    """The request as a person would type it: ``--gpus all``, ``--gpus device=1,3``,
    ``--device nvidia.com/gpu=1 --device nvidia.com/gpu=3``."""
    if is_cdi(label):
        return " ".join(f"--device {name}" for name in cdi_names(label))
    return f"--gpus {label}"


def cuda_visible_devices(label: str) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` of a local process that makes the request (None: all)."""
    devices = devices_of(label)
    return None if devices is None else ",".join(str(i) for i in devices)
