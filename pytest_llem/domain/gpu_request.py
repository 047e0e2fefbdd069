"""The GPU request a container makes, in one place for the probe and the experiment.

A request is named by its label: ``all`` or ``device=1,3`` (what ``docker run --gpus`` takes;
GPU indices as the host's nvidia-smi numbers them).
"""

from __future__ import annotations

from collections.abc import Sequence

ALL = "all"


def label_of(devices: Sequence[int] | None) -> str:
    """The request of an experiment that uses ``devices`` (None: every GPU)."""
    if devices is None:
        return ALL
    return "device=" + ",".join(str(i) for i in devices)


def devices_of(label: str) -> tuple[int, ...] | None:
    """The GPU indices ``label`` asks for; None for every GPU. ValueError when it is no
    request llem makes."""
    if label == ALL:
        return None
    kind, _, rest = label.partition("=")
    parts = rest.split(",")
    if kind != "device" or not rest or not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(f"not a GPU request: {label!r} (expected all or device=N[,N...])")
    return tuple(int(p) for p in parts)


def docker_args(label: str) -> list[str]:
    """The ``docker run`` arguments of the request. The device list is quoted: the CLI reads
    the value as CSV, where a bare comma would split it."""
    devices = devices_of(label)
    if devices is None:
        return ["--gpus", ALL]
    return ["--gpus", f'"device={",".join(str(i) for i in devices)}"']


def shown(label: str) -> str:
    """The request as a person would type it: ``--gpus all``, ``--gpus device=1,3``."""
    return f"--gpus {label}"


def cuda_visible_devices(label: str) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` of a local process that makes the request (None: all)."""
    devices = devices_of(label)
    return None if devices is None else ",".join(str(i) for i in devices)
