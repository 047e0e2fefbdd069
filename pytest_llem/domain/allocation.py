"""The GPUs Slurm allocated to this job, step or prolog, in host indices (pure parsing).

Slurm names them in ``SLURM_STEP_GPUS`` (inside a job step) and ``SLURM_JOB_GPUS`` (a batch
or interactive job, the Prolog and the Epilog): "the global GPU IDs ... not relative to any
device cgroup" (srun(1)), written as indices joined by commas
(src/plugins/gres/common/gres_common.c). ``CUDA_VISIBLE_DEVICES`` is the same list where
devices are not constrained, but renumbered from 0 where they are (and UUIDs for MIG or
``env_uuid``), so it is only compared, never read as host indices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

G = TypeVar("G", bound="Numbered")
# Where the allocation is read, the step's first (a step may hold part of its job's GPUs).
SOURCES = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS")
# Everything that can change what `allocation_of` returns.
ENV_NAMES = (*SOURCES, "SLURM_JOB_ID", "SLURM_STEP_ID", "SLURMD_NODENAME", "CUDA_VISIBLE_DEVICES")


class Allocation(NamedTuple):
    """A Slurm job's (or step's) GPUs on this node. A tuple of plain values, so that it
    crosses to an xdist worker like the other settings."""

    job_id: str
    gpus: tuple[int, ...]  # host indices, as nvidia-smi numbers them; () for none
    source: str = ""  # the variable they were read from
    step_id: str = ""
    node: str = ""
    visible: str | None = None  # CUDA_VISIBLE_DEVICES as Slurm (or the user) set it
    note: str = ""  # how CUDA_VISIBLE_DEVICES compares, when it is worth saying

    def describe(self) -> str:
        """One line: ``Slurm job 42 (step 0) on node1: GPU 0,1 (SLURM_STEP_GPUS)``."""
        step = f" (step {self.step_id})" if self.step_id else ""
        node = f" on {self.node}" if self.node else ""
        gpus = f"GPU {_indices(self.gpus)}" if self.gpus else "no GPU"
        source = f" ({self.source})" if self.source else ""
        return f"Slurm job {self.job_id}{step}{node}: {gpus}{source}"

    def summary(self) -> dict[str, Any]:
        """The report's ``host.slurm`` block."""
        found: dict[str, Any] = {"job_id": self.job_id, "gpus": list(self.gpus)}
        for key in ("source", "step_id", "node", "note"):
            if getattr(self, key):
                found[key] = getattr(self, key)
        if self.visible is not None:
            found["cuda_visible_devices"] = self.visible
        return found


def parse_gpu_ids(text: str) -> tuple[int, ...] | None:
    """``"0,2,3"`` -> (0, 2, 3); None when it is not such a list (empty text: ())."""
    text = text.strip()
    if not text:
        return ()
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isascii() and part.isdigit() for part in parts):
        return None
    return tuple(int(part) for part in parts)


def allocation_of(env: Mapping[str, str]) -> Allocation | None:
    """The allocation this process runs in, or None outside a Slurm job (no ``SLURM_JOB_ID``).

    A job with no GPU on this node (or a list that cannot be read, said in ``note``) gives an
    allocation without GPUs: the job is named, nothing is narrowed.
    """
    job_id = env.get("SLURM_JOB_ID", "").strip()
    if not job_id:
        return None
    source, note = "", ""
    gpus: tuple[int, ...] = ()
    for name in SOURCES:
        text = env.get(name, "").strip()
        if not text:
            continue
        parsed = parse_gpu_ids(text)
        if parsed is None:
            note = f"{name}={text!r} is not a list of GPU indices: all GPUs are judged"
            source = ""
        else:
            source, gpus = name, parsed
        break
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if gpus and visible is not None:
        note = visible_note(gpus, visible, source)
    return Allocation(
        job_id=job_id,
        gpus=tuple(sorted(set(gpus))),
        source=source,
        step_id=env.get("SLURM_STEP_ID", "").strip(),
        node=env.get("SLURMD_NODENAME", "").strip(),
        visible=visible,
        note=note,
    )


def visible_note(gpus: tuple[int, ...], visible: str, source: str) -> str:
    """How ``CUDA_VISIBLE_DEVICES`` compares with the allocation: "" when it names the very
    same GPUs; a note when Slurm renumbered them (devices constrained by a cgroup), when they
    are UUIDs, or when they disagree (someone changed it: the allocation is what is judged)."""
    listed = parse_gpu_ids(visible)
    if listed == gpus:
        return ""
    if listed is not None and listed == tuple(range(len(gpus))):
        return (
            f"CUDA_VISIBLE_DEVICES={visible} numbers the {source} GPUs from 0 (devices "
            "constrained by a cgroup): the host indices are judged"
        )
    if listed is None and len([p for p in visible.split(",") if p.strip()]) == len(gpus):
        return f"CUDA_VISIBLE_DEVICES names the {source} GPUs by UUID: the host indices are judged"
    return (
        f"CUDA_VISIBLE_DEVICES={visible or '(empty)'} does not match {source}="
        f"{_indices(gpus)}: the allocation is judged"
    )


def visible_in_job(devices: Sequence[int], allocation: Allocation | None) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` for the host GPUs ``devices`` of a process inside
    ``allocation``: Slurm's own entries for them (its list follows the allocation's indices in
    order, renumbered from 0 where devices are constrained). None when Slurm's list cannot
    say: outside a job, no such list, or a GPU outside the allocation."""
    if allocation is None or allocation.visible is None or not allocation.gpus:
        return None
    entries = [part.strip() for part in allocation.visible.split(",")]
    order = list(allocation.gpus)
    if len(entries) != len(order) or not all(entries) or not set(devices) <= set(order):
        return None
    return ",".join(entries[order.index(d)] for d in devices)


class Numbered(Protocol):
    """A GPU as an `nvidia-smi -q` section gives it (`GpuState`, `GpuInfo`)."""

    @property
    def index(self) -> int: ...
    @property
    def minor(self) -> int | None: ...


def job_view(gpus: Sequence[Numbered], allocation: Allocation | None) -> dict[str, Any] | None:
    """How a Slurm job's ``nvidia-smi`` numbers the allocated GPUs, when not as the host does:
    ``{"note": ..., "host_index": {"0": 4, "1": 5}}``; None when it numbers them as the host.

    With devices constrained by a cgroup, `nvidia-smi` in the job lists only the job's GPUs,
    numbered from 0 (NVIDIA/nvidia-container-toolkit#211: "Inside the slurm job only the GPUs
    we have requested are visible"), while the allocation names host indices. Such a view is
    told by the allocation's indices being absent while it numbers its GPUs 0..n-1. Each GPU
    takes the host index its device minor number gives (/dev/nvidiaN, the file the cgroup
    allows) when the minors are exactly the allocation; otherwise, when it lists as many GPUs
    as were allocated, the allocation's indices in order (both in PCI bus order). Anything
    else is left as listed: a GPU that is not there stays missing, and is reported so."""
    if allocation is None or not allocation.gpus:
        return None
    listed = sorted(g.index for g in gpus)
    wanted = sorted(set(allocation.gpus))
    if set(wanted) <= set(listed) or listed != list(range(len(listed))):
        return None
    minors = [g.minor for g in sorted(gpus, key=lambda g: g.index)]
    if sorted(m for m in minors if m is not None) == wanted and None not in minors:
        host, how = [m for m in minors if m is not None], "device minor number"
    elif len(listed) == len(wanted):
        host, how = wanted, "allocation order"
    else:
        return None
    return {
        "note": (
            f"this job's nvidia-smi numbers its GPUs from 0 (devices constrained by a cgroup): "
            f"GPU {_indices(tuple(listed))} here are host GPU {_indices(tuple(host))} "
            f"({allocation.source}), matched by {how}"
        ),
        "host_index": {str(i): h for i, h in zip(listed, host, strict=True)},
    }


def in_host_indices(gpus: Sequence[G], view: Mapping[str, Any] | None) -> tuple[G, ...]:
    """``gpus`` numbered as the host numbers them (`job_view`; as listed when None)."""
    if not view:
        return tuple(gpus)
    host = view["host_index"]
    return tuple(dataclasses.replace(g, index=host[str(g.index)]) for g in gpus)  # type: ignore[type-var]


def _indices(indices: tuple[int, ...]) -> str:
    return ",".join(str(i) for i in indices)
