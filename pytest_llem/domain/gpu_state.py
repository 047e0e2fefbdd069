"""What ``nvidia-smi -q`` says about each GPU's readiness to measure energy (no I/O here).

``-q`` prints one ``GPU <bus id>`` section per GPU, in index order: ``Label : value`` lines and
section headers, nested by four spaces. The labels read here are the ones NVIDIA's binaries of
drivers 470, 535 and 550 store (``tests/data/reference/nvidia-smi-labels/``) and that
the driver 580 capture prints; what changed between them:

- ``Clocks Throttle Reasons`` (470) became ``Clocks Event Reasons`` (535 on), same items;
- ``Product Architecture`` is printed from 535 on (470 has neither it nor ``compute_cap``);
- ``Power Readings`` / ``Power Limit`` (470) became ``GPU Power Readings`` /
  ``Current Power Limit`` (535 on);
- ``Utilization`` / ``Gpu`` became ``GPU`` (580).

A ``Processes`` section lists per process ``GPU instance ID``, ``Compute instance ID``,
``Process ID`` and, under it, ``Type`` (``C``, ``G``, ``C+G``, ``M+C``...), ``Name`` and
``Used GPU Memory``; with no process it is the one line ``Processes : None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

__all__ = ["ClockReasons", "GpuProcess", "GpuState", "parse_states"]

_GPU_HEADER = re.compile(
    r"^GPU\s+([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f])\s*$"
)
_LINE = re.compile(r"^( *)(\S.*?)\s*(?::\s*(.*?))?\s*$")
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)")
_NOT_AVAILABLE = frozenset({"n/a", "[n/a]", "[not supported]", "not supported", "", "unknown"})

CLOCK_SECTIONS = ("Clocks Event Reasons", "Clocks Throttle Reasons")
# Reasons that make a measurement incomparable, as -q names them (children before parents).
SLOWDOWNS = (
    "HW Thermal Slowdown",
    "HW Power Brake Slowdown",
    "SW Thermal Slowdown",
    "SW Power Cap",
    "HW Slowdown",
)


@dataclass
class _Node:
    label: str
    value: str | None
    children: list[_Node] = field(default_factory=list)

    def get(self, label: str) -> _Node | None:
        wanted = label.lower()
        return next((c for c in self.children if c.label.lower() == wanted), None)

    def value_of(self, *path: str) -> str | None:
        node: _Node | None = self
        for label in path:
            node = node.get(label) if node is not None else None
        return node.value if node is not None else None


@dataclass(frozen=True)
class GpuProcess:
    """One process of a ``Processes`` section."""

    pid: int
    type: str  # "C" compute, "G" graphics, "C+G", "M+C" (MPS)...
    name: str
    used_memory: str | None  # "1024 MiB", as printed; None when not shown

    @property
    def compute(self) -> bool:
        return "C" in self.type.upper().split("+")

    def summary(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "type": self.type,
            "name": self.name,
            "used_memory": self.used_memory,
        }


@dataclass(frozen=True)
class ClockReasons:
    """The ``Clocks Event/Throttle Reasons`` section: each reason -> ``Active``?"""

    section: str  # the label this driver prints
    active: tuple[str, ...]  # the reasons shown Active, in printed order

    def slowdowns(self) -> tuple[str, ...]:
        """The active reasons that slow a measurement down; a parent ``HW Slowdown`` only
        when no more precise child is active."""
        found = [r for r in SLOWDOWNS if r in self.active]
        if "HW Slowdown" in found and any(r.startswith("HW ") for r in found[:-1]):
            found.remove("HW Slowdown")
        return tuple(found)


@dataclass(frozen=True)
class GpuState:
    """One GPU of ``nvidia-smi -q``, as far as measuring energy on it is concerned."""

    index: int
    bus_id: str
    name: str = ""
    uuid: str = ""
    architecture: str | None = None  # "Product Architecture" (535 on), else None
    persistence_mode: str | None = None  # "Enabled" | "Disabled" | None (N/A, absent)
    mig_mode: str | None = None  # "MIG Mode / Current": "Enabled" | "Disabled" | None
    clock_reasons: ClockReasons | None = None
    utilization_gpu: int | None = None  # percent
    power_limit: str | None = None  # "700.00 W", as printed
    processes: tuple[GpuProcess, ...] = ()

    @property
    def compute_processes(self) -> tuple[GpuProcess, ...]:
        return tuple(p for p in self.processes if p.compute)

    def summary(self) -> dict[str, Any]:
        """The record of this GPU in reports and the manifest."""
        return {
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "architecture": self.architecture,
            "persistence_mode": self.persistence_mode,
            "mig_mode": self.mig_mode,
            "power_limit": self.power_limit,
            "utilization_gpu": self.utilization_gpu,
            "clock_events_active": list(self.clock_reasons.active) if self.clock_reasons else [],
            "processes": [p.summary() for p in self.processes],
        }


def _tree(lines: list[str]) -> _Node:
    """Nest ``lines`` by their indentation under one root."""
    root = _Node("", None)
    stack: list[tuple[int, _Node]] = [(-1, root)]
    for line in lines:
        m = _LINE.match(line)
        if not m or not m.group(2).strip():
            continue
        indent = len(m.group(1))
        node = _Node(m.group(2).strip(), m.group(3))
        while stack[-1][0] >= indent:
            stack.pop()
        stack[-1][1].children.append(node)
        stack.append((indent, node))
    return root


def _available(value: str | None) -> str | None:
    if value is None or value.strip().lower() in _NOT_AVAILABLE:
        return None
    return value.strip()


def _percent(value: str | None) -> int | None:
    m = _NUMBER.match(value or "")
    return round(float(m.group(1))) if m else None


def _processes(section: _Node | None) -> tuple[GpuProcess, ...]:
    if section is None or section.value is not None:  # "Processes : None"
        return ()
    found: list[GpuProcess] = []
    for node in section.children:
        if node.label.lower() != "process id":
            continue
        pid = _percent(node.value)
        if pid is None:
            continue
        found.append(
            GpuProcess(
                pid=pid,
                type=(node.value_of("Type") or "").strip(),
                name=(node.value_of("Name") or "").strip(),
                used_memory=_available(node.value_of("Used GPU Memory")),
            )
        )
    return tuple(found)


def _clock_reasons(gpu: _Node) -> ClockReasons | None:
    for label in CLOCK_SECTIONS:
        section = gpu.get(label)
        if section is None:
            continue
        active: list[str] = []
        stack = list(reversed(section.children))
        while stack:
            node = stack.pop()
            if (node.value or "").strip().lower() == "active":
                active.append(node.label)
            stack.extend(reversed(node.children))
        return ClockReasons(label, tuple(active))
    return None


def _power_limit(gpu: _Node) -> str | None:
    for section, label in (
        ("GPU Power Readings", "Current Power Limit"),
        ("Power Readings", "Power Limit"),
        ("Power Readings", "Enforced Power Limit"),
    ):
        value = _available(gpu.value_of(section, label))
        if value:
            return value
    return None


def _state(position: int, bus_id: str, gpu: _Node) -> GpuState:
    utilization = gpu.get("Utilization")
    return GpuState(
        index=position,
        bus_id=bus_id,
        name=(gpu.value_of("Product Name") or "").strip(),
        uuid=(gpu.value_of("GPU UUID") or "").strip(),
        architecture=_available(gpu.value_of("Product Architecture")),
        persistence_mode=_available(gpu.value_of("Persistence Mode")),
        mig_mode=_available(gpu.value_of("MIG Mode", "Current")),
        clock_reasons=_clock_reasons(gpu),
        utilization_gpu=_percent(utilization.value_of("GPU")) if utilization else None,
        power_limit=_power_limit(gpu),
        processes=_processes(gpu.get("Processes")),
    )


@lru_cache(maxsize=8)
def parse_states(text: str) -> tuple[GpuState, ...]:
    """Every ``GPU <bus id>`` section of ``nvidia-smi -q`` output, in order (index = position).

    Never raises: text that is not ``-q`` output gives no GPU; what a section lacks stays None.
    """
    if not isinstance(text, str):
        return ()
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        header = _GPU_HEADER.match(line)
        if header:
            sections.append((header.group(1), []))
        elif sections and line[:1] == " ":
            sections[-1][1].append(line)
        elif sections and line.strip():
            sections.append(("", []))  # a top-level line ends the section (e.g. "Unit 0")
    return tuple(
        _state(position, bus, _tree(body))
        for position, (bus, body) in enumerate(s for s in sections if s[0])
    )
