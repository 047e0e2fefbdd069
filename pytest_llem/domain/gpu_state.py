"""What ``nvidia-smi -q`` says about each GPU's readiness to measure energy (no I/O here).

``-q`` prints one ``GPU <bus id>`` section per GPU, in index order: ``Label : value`` lines and
section headers, nested by four spaces. The labels read here are the ones NVIDIA's binaries of
drivers 470, 535 and 550 store (``tests/data/reference/nvidia-smi-labels/``), that real
outputs of those drivers print (``tests/data/smi-q/``) and that the driver 580 capture
prints; what changed between them:

- ``Clocks Throttle Reasons`` (470) became ``Clocks Event Reasons`` (535 on), same items;
- ``Product Architecture`` is printed from 535 on (470 has neither it nor ``compute_cap``);
- ``Power Readings`` / ``Power Limit`` (470) became ``GPU Power Readings`` /
  ``Current Power Limit`` (535 on); ``Default Power Limit`` is in the same section in both;
- ``Utilization`` / ``Gpu`` became ``GPU`` (580);
- ``ECC Errors`` / ``Volatile`` holds ``Single Bit`` and ``Double Bit`` groups (each with a
  ``Total``) on GPUs before Ampere, whatever the driver (470 to 550 seen); Ampere and newer
  print ``SRAM Uncorrectable`` and ``DRAM Uncorrectable`` (535), the SRAM one split into
  ``SRAM Uncorrectable Parity`` and ``SRAM Uncorrectable SEC-DED`` from 550 on;
- ``Retired Pages`` / ``Pending Page Blacklist`` (``Pending Page Retirement`` and, in old
  drivers, ``Pending`` are read too) is ``No`` on pre-Ampere GPUs and ``N/A`` on newer ones,
  whose ``Remapped Rows`` section has ``Pending`` and ``Remapping Failure Occurred``
  (``Remapped Rows : N/A`` before Ampere).

A value of ``N/A`` (or any other not-available form) is "not reported", like a label a driver
does not print.

A ``Processes`` section lists per process ``GPU instance ID``, ``Compute instance ID``,
``Process ID`` and, under it, ``Type`` (``C``, ``G``, ``C+G``, ``M+C``...), ``Name`` and
``Used GPU Memory``; with no process it is the one line ``Processes : None``.

Driver 580 (not 535 or 550) adds ``Clocks Event Reasons Counters``: per reason the time it
has held the clocks down since the driver loaded (``SW Power Capping : 0 us``, ``Sync Boost``,
``SW Thermal Slowdown``, ``HW Thermal Slowdown``, ``HW Power Braking``). None of the drivers
seen prints locked clocks (``nvidia-smi -lgc``); ``Applications Clocks``, their defaults and
``Clock Policy`` are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .text import ascii_int

__all__ = [
    "ClockPolicy",
    "ClockReasons",
    "GpuProcess",
    "GpuState",
    "MemoryHealth",
    "parse_states",
    "watts",
]

_GPU_HEADER = re.compile(
    r"^GPU\s+([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f])\s*$"
)
_LINE = re.compile(r"^( *)(\S.*?)\s*(?::\s*(.*?))?\s*$")
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)")
_NOT_AVAILABLE = frozenset({"n/a", "[n/a]", "[not supported]", "not supported", "", "unknown"})

CLOCK_SECTIONS = ("Clocks Event Reasons", "Clocks Throttle Reasons")
COUNTERS_SECTION = "Clocks Event Reasons Counters"
_MICROSECONDS = re.compile(r"^\s*(\d+)\s*us\s*$")
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
class ClockPolicy:
    """The clocks a GPU is set to run at: ``Applications Clocks`` and their defaults
    (``(label, value)`` as printed, e.g. ``("Graphics", "1980 MHz")``), ``Clock Policy / Auto
    Boost``."""

    applications: tuple[tuple[str, str], ...] = ()
    default_applications: tuple[tuple[str, str], ...] = ()
    auto_boost: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "applications": dict(self.applications),
            "default_applications": dict(self.default_applications),
            "auto_boost": self.auto_boost,
        }


@dataclass(frozen=True)
class MemoryHealth:
    """What ``nvidia-smi -q`` says of the GPU memory's health; None: not reported."""

    remap_pending: bool | None = None  # Remapped Rows / Pending
    remap_failure: bool | None = None  # Remapped Rows / Remapping Failure Occurred
    # (counter as printed, e.g. "Volatile / DRAM Uncorrectable", count) of each non-zero volatile
    # uncorrectable ECC counter; () when the counters read zero; None when none is reported
    volatile_uncorrectable: tuple[tuple[str, int], ...] | None = None
    pages_pending: bool | None = None  # Retired Pages / Pending Page Blacklist (or Retirement)
    pages_label: str = "Pending Page Blacklist"  # the label this driver prints

    @property
    def reported(self) -> bool:
        """Whether the driver reports any of these for the GPU."""
        return any(
            value is not None
            for value in (
                self.remap_pending,
                self.remap_failure,
                self.volatile_uncorrectable,
                self.pages_pending,
            )
        )

    def faults(self) -> tuple[tuple[str, str], ...]:
        """(what, the counters that show it) of each fault, in a fixed order."""
        found: list[tuple[str, str]] = []
        if self.remap_pending:
            found.append(("pending row remapping", "Remapped Rows / Pending: Yes"))
        if self.remap_failure:
            found.append(
                ("row remapping failure", "Remapped Rows / Remapping Failure Occurred: Yes")
            )
        if self.volatile_uncorrectable:
            counters = ", ".join(f"ECC Errors / {c}: {n}" for c, n in self.volatile_uncorrectable)
            found.append(("volatile uncorrectable ECC errors", counters))
        if self.pages_pending:
            found.append(("pages pending retirement", f"Retired Pages / {self.pages_label}: Yes"))
        return tuple(found)

    def summary(self) -> dict[str, Any]:
        return {
            "remapped_rows_pending": self.remap_pending,
            "remapping_failure_occurred": self.remap_failure,
            "volatile_uncorrectable_ecc": (
                None if self.volatile_uncorrectable is None else dict(self.volatile_uncorrectable)
            ),
            "retired_pages_pending": self.pages_pending,
        }


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
    default_power_limit: str | None = None  # "Default Power Limit" of the same section
    memory: MemoryHealth = field(default_factory=MemoryHealth)
    processes: tuple[GpuProcess, ...] = ()
    # ``Clocks Event Reasons Counters`` (580 on): (reason, microseconds) as printed; None
    # when the driver prints no such section or no counter in it.
    event_counters_us: tuple[tuple[str, int], ...] | None = None
    temperature: str | None = None  # "Temperature / GPU Current Temp": "34 C", as printed
    clocks: ClockPolicy = field(default_factory=ClockPolicy)
    minor: int | None = None  # "Minor Number": N of /dev/nvidiaN (N/A on WSL2)

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
            "default_power_limit": self.default_power_limit,
            "utilization_gpu": self.utilization_gpu,
            "clock_events_active": list(self.clock_reasons.active) if self.clock_reasons else [],
            "processes": [p.summary() for p in self.processes],
            "temperature": self.temperature,
            "clocks": self.clocks.summary(),
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


def _event_counters(gpu: _Node) -> tuple[tuple[str, int], ...] | None:
    section = gpu.get(COUNTERS_SECTION)
    if section is None:
        return None
    found = []
    for node in section.children:
        m = _MICROSECONDS.match(node.value or "")
        if m:
            found.append((node.label, int(m.group(1))))
    return tuple(found) or None


def _pairs(section: _Node | None) -> tuple[tuple[str, str], ...]:
    if section is None:
        return ()
    pairs = ((node.label, _available(node.value)) for node in section.children)
    return tuple((label, value) for label, value in pairs if value is not None)


def _clock_policy(gpu: _Node) -> ClockPolicy:
    return ClockPolicy(
        applications=_pairs(gpu.get("Applications Clocks")),
        default_applications=_pairs(gpu.get("Default Applications Clocks")),
        auto_boost=_available(gpu.value_of("Clock Policy", "Auto Boost")),
    )


def watts(value: str | None) -> float | None:
    """The number of ``"450.00 W"``; None when there is none."""
    m = _NUMBER.match(value or "")
    return float(m.group(1)) if m else None


def _power_limits(gpu: _Node) -> tuple[str | None, str | None]:
    """(current, default) power limit as printed: ``GPU Power Readings`` (535 on) or
    ``Power Readings`` (470), each from the one section that reports the current limit."""
    for name in ("GPU Power Readings", "Power Readings"):
        section = gpu.get(name)
        if section is None:
            continue
        for label in ("Current Power Limit", "Power Limit", "Enforced Power Limit"):
            current = _available(section.value_of(label))
            if current:
                return current, _available(section.value_of("Default Power Limit"))
    return None, None


_YES_NO = {"yes": True, "no": False}
_PAGES_PENDING = ("Pending Page Blacklist", "Pending Page Retirement", "Pending")


def _yes(value: str | None) -> bool | None:
    return _YES_NO.get((value or "").strip().lower())


def _count(value: str | None) -> int | None:
    m = re.match(r"^\s*(\d+)\s*$", value or "")
    return int(m.group(1)) if m else None


def _volatile_uncorrectable(gpu: _Node) -> tuple[tuple[str, int], ...] | None:
    """The non-zero volatile uncorrectable ECC counters; () when every one reads 0; None when
    none is reported. ``Double Bit`` counts by its ``Total`` (its items when it has none)."""
    ecc = gpu.get("ECC Errors")  # "ECC Errors : N/A" has no Volatile section
    section = ecc.get("Volatile") if ecc is not None else None
    if section is None:
        return None
    found: list[tuple[str, int]] = []
    reported = False

    def note(path: str, value: str | None) -> None:
        nonlocal reported
        count = _count(value)
        if count is not None:
            reported = True
            if count:
                found.append((path, count))

    for node in section.children:
        if node.label.lower() == "double bit":
            total = node.get("Total")
            if total is not None and _count(total.value) is not None:
                note(f"Volatile / {node.label} / {total.label}", total.value)
            else:
                for item in node.children:
                    note(f"Volatile / {node.label} / {item.label}", item.value)
        elif "uncorrectable" in node.label.lower():
            note(f"Volatile / {node.label}", node.value)
    return tuple(found) if reported else None


def _memory(gpu: _Node) -> MemoryHealth:
    remapped = gpu.get("Remapped Rows")
    retired = gpu.get("Retired Pages")
    pages = next(
        (retired.get(label) for label in _PAGES_PENDING if retired and retired.get(label)), None
    )
    return MemoryHealth(
        remap_pending=_yes(remapped.value_of("Pending")) if remapped else None,
        remap_failure=_yes(remapped.value_of("Remapping Failure Occurred")) if remapped else None,
        volatile_uncorrectable=_volatile_uncorrectable(gpu),
        pages_pending=_yes(pages.value) if pages else None,
        pages_label=pages.label if pages else "Pending Page Blacklist",
    )


def _state(position: int, bus_id: str, gpu: _Node) -> GpuState:
    utilization = gpu.get("Utilization")
    power_limit, default_power_limit = _power_limits(gpu)
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
        power_limit=power_limit,
        default_power_limit=default_power_limit,
        memory=_memory(gpu),
        processes=_processes(gpu.get("Processes")),
        event_counters_us=_event_counters(gpu),
        temperature=_available(gpu.value_of("Temperature", "GPU Current Temp")),
        clocks=_clock_policy(gpu),
        minor=_minor(gpu.value_of("Minor Number")),
    )


def _minor(value: str | None) -> int | None:
    return ascii_int(value, max_digits=7)


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
