"""GPU scenarios of the simulated host, and the fake `nvidia-smi` each one shows.

Standard library only and free of package-relative imports: the fake hook imports this module
when the engine runs it as a plain script.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

HookMode = Literal["ok", "fail", "sleep", "garbage"]
ContainerSmi = Literal["ok", "missing", "nvml_unknown"]
SmiFailure = Literal["driver_not_loaded", "nvml_mismatch", "no_devices", "nvml_unknown"]

# Real texts and exit codes of a failing nvidia-smi.
SMI_FAILURES: dict[str, tuple[tuple[str, ...], int]] = {
    "driver_not_loaded": (
        (
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
            "Make sure that the latest NVIDIA driver is installed and running.",
        ),
        9,
    ),
    "nvml_mismatch": (
        (
            "Failed to initialize NVML: Driver/library version mismatch",
            "NVML library version: {nvml}",
        ),
        18,
    ),
    "no_devices": (("No devices were found",), 6),
    "nvml_unknown": (("Failed to initialize NVML: Unknown Error",), 255),
}

_ARCHITECTURES = {
    "6": "Pascal",
    "7.0": "Volta",
    "7.2": "Volta",
    "7.5": "Turing",
    "8.9": "Ada Lovelace",
    "8": "Ampere",
    "9": "Hopper",
    "10": "Blackwell",
    "12": "Blackwell",
}
_BRANDS = {
    "tesla": "Tesla",
    "nvidia": "NVIDIA",
    "geforce": "GeForce",
    "quadro": "Quadro",
    "titan": "Titan",
    "grid": "GRID",
    "nvidiartx": "NVIDIA RTX",
    "geforcertx": "GeForce RTX",
    "quadrortx": "Quadro RTX",
    "titanrtx": "Titan RTX",
}


@dataclass(frozen=True)
class GpuProcess:
    """A process `nvidia-smi -q` lists on a GPU (type "C" compute, "G" graphics)."""

    pid: int
    name: str
    used_mib: int = 1024
    type: str = "C"


@dataclass(frozen=True)
class Gpu:
    name: str
    uuid: str
    pci_bus_id: str = "00000000:19:00.0"
    memory_mib: int = 81559
    # What `nvidia-smi -q` shows of its readiness to measure energy.
    persistence: bool = True
    mig: bool = False
    clock_events: tuple[str, ...] = ()  # reasons shown Active, e.g. "HW Thermal Slowdown"
    utilization_pct: int = 0
    processes: tuple[GpuProcess, ...] = ()
    power_limit_w: float | None = None  # None: the default (the capture's 700.00 W)
    remap_pending: bool = False  # a row remapping waits for a GPU reset (one uncorrectable row)
    # `Clocks Event Reasons Counters`: microseconds each reason has held the clocks down.
    sw_power_cap_us: int = 0
    sw_thermal_us: int = 0
    hw_thermal_us: int = 0
    hw_power_brake_us: int = 0
    temperature_c: int | None = None  # None: the capture's 34 C
    # Its device minor number (/dev/nvidiaN); None: its index. A view that renumbers GPUs
    # (a Slurm job's, with devices constrained by a cgroup) keeps the host's.
    minor: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Gpu:
        processes = tuple(GpuProcess(**p) for p in data.get("processes", ()))
        events = tuple(data.get("clock_events", ()))
        return cls(**{**data, "processes": processes, "clock_events": events})


DEFAULT_GPUS = (
    Gpu("NVIDIA H100 80GB HBM3", "GPU-8f6b2c3a-1d4e-4b7a-9c2d-5e6f7a8b9c01", "00000000:19:00.0"),
    Gpu("NVIDIA H100 80GB HBM3", "GPU-3a9d7e21-6c5b-4f80-a1d2-e3f4a5b6c702", "00000000:3B:00.0"),
)
# PCI buses of the GPUs of real multi-GPU servers, in index order: an HGX H200 board (8), and
# two boards behind NVSwitch (16, the DGX-2 layout).
_HGX8_BUSES = ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")
_HGX16_BUSES = (
    *("34", "36", "39", "3B", "57", "59", "5C", "5E"),
    *("B7", "B9", "BC", "BE", "E0", "E2", "E5", "E7"),
)


def server_gpus(count: int, name: str = "NVIDIA H200", memory_mib: int = 143771) -> tuple[Gpu, ...]:
    """``count`` (at most 16) GPUs of one server, each with its own bus id and UUID."""
    buses = _HGX8_BUSES if count <= len(_HGX8_BUSES) else _HGX16_BUSES
    if count > len(buses):
        raise ValueError(f"at most {len(buses)} GPUs, not {count}")
    return tuple(
        Gpu(
            name,
            f"GPU-{index:08x}-5e1f-4c2a-9b3d-{0x7A0C00000000 + index * 0x1111:012x}",
            f"00000000:{bus}:00.0",
            memory_mib=memory_mib,
        )
        for index, bus in enumerate(buses[:count])
    )


@dataclass(frozen=True)
class HookBehaviour:
    """What the fake `nvidia-container-runtime-hook` does for each `--gpus` container."""

    mode: HookMode = "ok"
    message: str = ""  # "fail": written to stderr as is
    exit_code: int = 1  # "fail"
    sleep_s: float = 0.0  # "sleep": then behaves as "ok"
    garbage_bytes: int = 20000  # "garbage": that many non-UTF-8 bytes on stderr, exit 1
    delay_s: float | None = None  # every mode; None: env LLEM_TESTBED_HOOK_DELAY_S, else 0


@dataclass(frozen=True)
class GpuScenario:
    """The GPUs, driver and toolkit behaviour that the simulated host shows."""

    driver_version: str = "550.54.15"
    cuda_version: str = "12.4"  # the highest CUDA version the driver supports
    brand: str = "tesla"  # as NVIDIA_REQUIRE_* conditions name it
    arch: str = "9.0"  # compute capability
    gpus: tuple[Gpu, ...] = DEFAULT_GPUS
    hook: HookBehaviour = HookBehaviour()
    container_smi: ContainerSmi = "ok"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> GpuScenario:
        data: dict[str, Any] = json.loads(text)
        gpus = (
            tuple(Gpu.from_dict(gpu) for gpu in data.pop("gpus"))
            if "gpus" in data
            else DEFAULT_GPUS
        )
        hook = HookBehaviour(**data.pop("hook", {}))
        return cls(gpus=gpus, hook=hook, **data)

    @property
    def product_brand(self) -> str:
        """The `Product Brand` that `nvidia-smi -q` prints for this brand."""
        return _BRANDS.get(self.brand, self.brand.capitalize())

    @property
    def architecture(self) -> str:
        major = self.arch.split(".")[0]
        return _ARCHITECTURES.get(self.arch) or _ARCHITECTURES.get(major, "Unknown")


def _fields(scenario: GpuScenario, index: int, gpu: Gpu, count: int) -> dict[str, str]:
    memory = f"{gpu.memory_mib} MiB"
    return {
        "index": str(index),
        "name": gpu.name,
        "uuid": gpu.uuid,
        "driver_version": scenario.driver_version,
        "memory.total": memory,
        "memory.free": memory,
        "memory.used": "0 MiB",
        "pci.bus_id": gpu.pci_bus_id,
        "compute_cap": scenario.arch,
        "count": str(count),
    }


_ALIASES = {"gpu_name": "name", "gpu_uuid": "uuid", "gpu_bus_id": "pci.bus_id"}


def _row(left: str, middle: str, right: str) -> str:
    """One line of nvidia-smi's three-column table (91 characters wide)."""
    return f"| {left:<39} | {middle:>22} | {right:>20} |"


def _rule(fill: str, ends: str, last: str) -> str:
    return f"{ends}{fill * 41}+{fill * 24}+{fill * 22}{last}"


def _banner(scenario: GpuScenario, gpus: Sequence[Gpu]) -> list[str]:
    driver, cuda = scenario.driver_version, scenario.cuda_version
    lines = [
        "Thu Nov 28 17:00:00 2026",
        "+" + "-" * 89 + "+",
        f"| NVIDIA-SMI {driver:<22} Driver Version: {driver:<14} CUDA Version: {cuda:<9}|",
        _rule("-", "|", "+"),
        _row(
            "GPU  Name                 Persistence-M",
            "Bus-Id          Disp.A",
            "Volatile Uncorr. ECC",
        ),
        _row("Fan  Temp   Perf          Pwr:Usage/Cap", "Memory-Usage", "GPU-Util  Compute M."),
        _row("", "", "MIG M."),
        _rule("=", "|", "|"),
    ]
    for index, gpu in enumerate(gpus):
        lines += [
            _row(f"{index:>3}  {gpu.name:<30}  On", f"{gpu.pci_bus_id} Off", "0"),
            _row(
                "N/A   30C    P0             70W /  700W",
                f"0MiB / {gpu.memory_mib}MiB",
                "0%      Default",
            ),
            _row("", "", "Disabled"),
            _rule("-", "+", "+"),
        ]
    return lines


# `nvidia-smi -q` is printed in the layout of a real capture (driver 580, one H200): its GPU
# section is the template of every GPU, with the scenario's values put in.
Q_TEMPLATE = Path(__file__).resolve().parents[1] / "data" / "captured" / "h200-580.159.04_smi-q.txt"
_Q_WIDTH = 55  # the column of ':' in that capture


def _q_line(depth: int, label: str, value: str | None = None) -> str:
    text = "    " * depth + label
    return text if value is None else f"{text.ljust(_Q_WIDTH)}: {value}"


def _q_template() -> tuple[list[str], list[str]]:
    """The capture's lines before its first GPU section, and that section."""
    body = Q_TEMPLATE.read_text().split("# ---- verbatim output below ----\n", 1)[1]
    lines = body.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("GPU "))
    return lines[:start], lines[start + 1 :]


def _q_values(scenario: GpuScenario, gpu: Gpu, index: int) -> dict[tuple[str, ...], str]:
    """Section path -> value, for the lines of the template that this GPU changes."""
    on = {True: "Enabled", False: "Disabled"}
    domain, bus, device = gpu.pci_bus_id.replace(".", ":").split(":")[:3]
    values = {
        ("Product Name",): gpu.name,
        ("Product Brand",): scenario.product_brand,
        ("Product Architecture",): scenario.architecture,
        ("Persistence Mode",): on[gpu.persistence],
        ("MIG Mode", "Current"): on[gpu.mig],
        ("MIG Mode", "Pending"): on[gpu.mig],
        ("Serial Number",): f"{1654923000000 + index}",
        ("GPU UUID",): gpu.uuid,
        ("GPU PDI",): f"0x{0x5A3C00000000 + index:016x}",
        ("Minor Number",): str(index if gpu.minor is None else gpu.minor),
        ("Board ID",): f"0x{int(bus, 16) << 8 | int(device, 16):x}",
        ("Platform Info", "Module Id"): str(index + 1),
        ("PCI", "Bus"): f"0x{bus.upper()}",
        ("PCI", "Device"): f"0x{device.upper()}",
        ("PCI", "Domain"): f"0x{domain[-4:].upper()}",
        ("PCI", "Bus Id"): gpu.pci_bus_id,
        ("FB Memory Usage", "Total"): f"{gpu.memory_mib} MiB",
        ("FB Memory Usage", "Used"): f"{sum(p.used_mib for p in gpu.processes)} MiB",
        ("Utilization", "GPU"): f"{gpu.utilization_pct} %",
    }
    if gpu.power_limit_w is not None:
        for label in ("Current Power Limit", "Requested Power Limit"):
            values[("GPU Power Readings", label)] = f"{gpu.power_limit_w:.2f} W"
    counters = {
        "SW Power Capping": gpu.sw_power_cap_us,
        "SW Thermal Slowdown": gpu.sw_thermal_us,
        "HW Thermal Slowdown": gpu.hw_thermal_us,
        "HW Power Braking": gpu.hw_power_brake_us,
    }
    for label, micros in counters.items():
        values[("Clocks Event Reasons Counters", label)] = f"{micros} us"
    if gpu.temperature_c is not None:
        values[("Temperature", "GPU Current Temp")] = f"{gpu.temperature_c} C"
    if gpu.remap_pending:
        values[("Remapped Rows", "Uncorrectable Error")] = "1"
        values[("Remapped Rows", "Pending")] = "Yes"
    busy = bool(gpu.clock_events or gpu.utilization_pct or gpu.processes)
    reasons = ("SW Power Cap", "HW Slowdown", "Sync Boost", "SW Thermal Slowdown")
    for reason in ("Idle", "Applications Clocks Setting", *reasons, "Display Clock Setting"):
        active = reason in gpu.clock_events or (reason == "Idle" and not busy)
        values[("Clocks Event Reasons", reason)] = "Active" if active else "Not Active"
    for reason in ("HW Thermal Slowdown", "HW Power Brake Slowdown"):
        active = reason in gpu.clock_events
        values[("Clocks Event Reasons", "HW Slowdown", reason)] = (
            "Active" if active else "Not Active"
        )
        if active:
            values[("Clocks Event Reasons", "HW Slowdown")] = "Active"
    return values


def _q_processes(gpu: Gpu) -> list[str]:
    """The `Processes` block as drivers print it (labels of NVIDIA's format strings)."""
    if not gpu.processes:
        return [_q_line(1, "Processes", "None")]
    lines = [_q_line(1, "Processes")]
    for p in gpu.processes:
        lines += [
            _q_line(2, "GPU instance ID", "N/A"),
            _q_line(2, "Compute instance ID", "N/A"),
            _q_line(2, "Process ID", str(p.pid)),
            _q_line(3, "Type", p.type),
            _q_line(3, "Name", p.name),
            _q_line(3, "Used GPU Memory", f"{p.used_mib} MiB"),
        ]
    return lines


def _gpu_section(scenario: GpuScenario, gpu: Gpu, index: int, template: list[str]) -> list[str]:
    values = _q_values(scenario, gpu, index)
    out = [f"GPU {gpu.pci_bus_id}"]
    path: list[str] = []
    for line in template:
        indent = (len(line) - len(line.lstrip(" "))) // 4
        label, colon, _ = line.strip().partition(":")
        label = label.strip()
        del path[max(indent - 1, 0) :]
        path.append(label)
        if indent == 1 and label == "Processes":
            out += _q_processes(gpu)
        elif colon and tuple(path) in values:
            out.append(_q_line(indent, label, values[tuple(path)]))
        else:
            out.append(line)
    return out


def _full_query(scenario: GpuScenario, gpus: Sequence[Gpu]) -> list[str]:
    head, section = _q_template()
    top = {
        "Driver Version": scenario.driver_version,
        "CUDA Version": scenario.cuda_version,
        "Attached GPUs": str(len(gpus)),
    }
    lines = []
    for line in head:
        label = line.partition(":")[0].strip()
        lines.append(f"{label.ljust(_Q_WIDTH)}: {top[label]}" if label in top else line)
    for index, gpu in enumerate(gpus):
        lines += _gpu_section(scenario, gpu, index, section)
    return lines


def query_text(scenario: GpuScenario) -> str:
    """What `nvidia-smi -q` prints for `scenario` (every GPU), as the fake prints it."""
    return "\n".join(_full_query(scenario, scenario.gpus)) + "\n"


def print_lines(lines: Sequence[str]) -> str:
    """A shell command (builtins only) that prints `lines`."""
    return "printf '%s\\n' " + " ".join(shlex.quote(line) for line in lines)


def nvidia_smi_script(
    scenario: GpuScenario,
    *,
    gpus: Sequence[Gpu] | None = None,
    failure: SmiFailure | None = None,
    nvml_library_version: str = "550.67",
) -> str:
    """A POSIX sh script (shell builtins only) that answers like `nvidia-smi` would.

    It understands `--query-gpu=F,... --format=csv[,noheader][,nounits]`, `-L`, `-q` and plain
    invocation; `gpus` are the visible GPUs (default: all of the scenario's), renumbered from 0.
    """
    gpus = scenario.gpus if gpus is None else gpus
    if failure is None and not gpus:
        failure = "no_devices"
    head = ["#!/bin/sh", "# nvidia-smi emulated by the pytest-llem test bed"]
    if failure is not None:
        texts, code = SMI_FAILURES[failure]
        return "\n".join(
            [
                *head,
                print_lines([t.format(nvml=nvml_library_version) for t in texts]),
                f"exit {code}",
                "",
            ]
        )

    values = []
    for index, gpu in enumerate(gpus):
        for field, value in _fields(scenario, index, gpu, len(gpus)).items():
            values.append(f"    {index}:{field}) v={shlex.quote(value)} ;;")
    known = "|".join(_fields(scenario, 0, gpus[0], 0))
    aliases = "".join(f"{alias}) f={field} ;; " for alias, field in _ALIASES.items())
    listing = [f"GPU {i}: {gpu.name} (UUID: {gpu.uuid})" for i, gpu in enumerate(gpus)]
    body = f"""
mode=table fields= fmt=
while [ "$#" -gt 0 ]; do
  case "$1" in
    --query-gpu=*) mode=query; fields=${{1#*=}} ;;
    --query-gpu) mode=query; fields=${{2-}}; [ "$#" -gt 1 ] && shift ;;
    --format=*) fmt=${{1#*=}} ;;
    --format) fmt=${{2-}}; [ "$#" -gt 1 ] && shift ;;
    -L|--list-gpus) mode=list ;;
    -q|--query) mode=full ;;
  esac
  shift
done
value() {{
  case "$1:$2" in
{chr(10).join(values)}
    *) return 1 ;;
  esac
}}
case $mode in
  list) {print_lines(listing)} ;;
  full) {print_lines(_full_query(scenario, gpus))} ;;
  table) {print_lines(_banner(scenario, gpus))} ;;
  query)
    case $fmt in
      csv*) ;;
      *) printf '%s\\n' '"--format=" switch is missing. Please use --format=csv'
         printf '%s\\n' 'Run "nvidia-smi -h" for help.'
         exit 2 ;;
    esac
    set -f; old=$IFS; IFS=', '; set -- $fields; IFS=$old; set +f
    names= header= sep=
    for f in "$@"; do
      case $f in {aliases}esac
      case $f in
        {known}) ;;
        *) printf 'Field "%s" is not a valid field to query.\\n\\n' "$f"; exit 2 ;;
      esac
      case $f in memory.*) h="$f [MiB]" ;; *) h=$f ;; esac
      names="$names $f"; header="$header$sep$h"; sep=', '
    done
    case $fmt in *noheader*) ;; *) printf '%s\\n' "$header" ;; esac
    for g in {" ".join(str(i) for i in range(len(gpus)))}; do
      row= sep=
      for f in $names; do
        value "$g" "$f"
        case $fmt in *nounits*) v=${{v% MiB}} ;; esac
        row="$row$sep$v"; sep=', '
      done
      printf '%s\\n' "$row"
    done ;;
esac
"""
    return "\n".join(head) + body


def visible_gpus(value: str | None, gpus: Sequence[Gpu]) -> list[Gpu]:
    """The GPUs that `NVIDIA_VISIBLE_DEVICES` selects; raises KeyError naming an unknown device."""
    if value is None or value.strip() in ("", "void", "none"):
        return []
    if value.strip() == "all":
        return list(gpus)
    chosen = []
    for item in (part.strip() for part in value.split(",")):
        match = [g for i, g in enumerate(gpus) if item in (str(i), g.uuid)]
        if not match:
            raise KeyError(item)
        chosen += match
    return chosen


class ScenarioSetter(Protocol):
    """The `scenario` fixture: `scenario(**changes)` or `scenario(base, **changes)`."""

    def __call__(self, base: GpuScenario | None = None, /, **changes: Any) -> GpuScenario: ...
