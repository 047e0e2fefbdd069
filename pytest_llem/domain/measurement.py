"""Tier 3, measurement readiness: will this host's GPUs give trustworthy energy numbers?

Pure judgements of the host's ``nvidia-smi -q`` output (gathered by the pre-flight anyway):
another process on a GPU, persistence mode, MIG, clock slowdowns, whether the GPU has NVML's
total-energy counter at all, a power limit other than the default, and memory faults (pending
row remapping or page retirement, a remapping failure, volatile uncorrectable ECC errors).
Only the GPUs the study uses are judged; what a driver does not report is never a finding.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from .check_ids import MEASUREMENT_IDS
from .gpu_state import GpuState, parse_states, watts
from .records import HostFacts
from .remedies import (
    GPU_MEMORY_ERRORS_URL,
    MIG_URL,
    NVIDIA_SMI_URL,
    NVML_ENERGY_URL,
    PERSISTENCE_URL,
    remedy,
)
from .report import CheckResult
from .verdicts import Verdict, failed, host_driver, passed, skipped, warned

__all__ = [
    "BUSY_UTILIZATION_PCT",
    "MEASUREMENT_IDS",
    "architecture_of",
    "clock_events",
    "energy_counter",
    "gpu_health",
    "gpu_idle",
    "mig_mode",
    "persistence_mode",
    "power_limit",
]

BUSY_UTILIZATION_PCT = 10
# Power limits print with two decimals: a smaller difference is the same limit.
POWER_LIMIT_TOLERANCE_W = 0.005


# Architectures without NVML's total-energy counter (nvmlDeviceGetTotalEnergyConsumption is
# "for Volta or newer fully supported devices").
BEFORE_VOLTA = frozenset({"Tesla", "Fermi", "Kepler", "Maxwell", "Pascal"})

# Drivers before 535 print no "Product Architecture": the product name tells it. Checked in
# order; the first match wins (GTX 16xx are Turing, GTX 10xx Pascal).
_NAME_ARCHITECTURES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.I), arch)
    for pattern, arch in (
        (r"\bGTX 16\d\d|\bRTX 20\d\d|\bTITAN RTX\b|\bQuadro RTX\b|\bT4\b|\bT\d{3,4}\b", "Turing"),
        (r"\bV100|\bTITAN V\b|\bGV100\b", "Volta"),
        (r"\bTesla K\d|\bQuadro K\d|\bGTX (?:6|7)\d\d\b|\bGTX TITAN(?! X)\b|\bGRID K\d", "Kepler"),
        (r"\bTesla M\d|\bQuadro M\d|\bGTX 9\d\d\b|\bGTX TITAN X\b|\bGRID M\d", "Maxwell"),
        (
            r"\bTesla P\d|\bQuadro P\d|\bQuadro GP100\b|\bGTX 10\d\d\b|\bTITAN Xp?\b|"
            r"\bTITAN X \(Pascal\)|\bP10[0-9]\b|\bP40\b|\bP4\b",
            "Pascal",
        ),
    )
)


def architecture_of(gpu: GpuState) -> tuple[str | None, str]:
    """(architecture, where it was read): ``Product Architecture``, else the product name."""
    if gpu.architecture:
        return gpu.architecture, "Product Architecture"
    for pattern, arch in _NAME_ARCHITECTURES:
        if pattern.search(gpu.name):
            return arch, "product name"
    return None, ""


# --- which GPUs, and whether they can be judged -----------------------------------------------


def _judged(
    host: HostFacts, gpus: Sequence[int], local: bool, speaks: bool = False
) -> tuple[list[GpuState], dict[str, Any]] | Verdict:
    """The host's GPUs the study uses, with the details every tier-3 verdict carries; or the
    verdict that they cannot be judged (a remote daemon's GPUs, no host nvidia-smi).

    When only local experiments run, no host-driver check speaks for this machine's driver:
    the check that ``speaks`` (gpu-idle) then warns why the GPUs cannot be judged, with its
    fix, and the others skip."""
    if host.endpoint.remote and not local:
        return skipped(
            f"remote daemon ({host.endpoint.url}): its GPUs cannot be judged from this "
            "machine's nvidia-smi"
        )
    smi = host.smi
    if smi is None or smi.missing or not smi.ok:
        if local and speaks:
            found = host_driver(host).finding  # the tier-1 judgement of the same nvidia-smi
            if found is not None:
                return warned(
                    found.cause,
                    f"the GPUs to measure cannot be judged: {found.message}",
                    fix=found.fix,
                    url=found.url,
                    **found.details,
                )
        if smi is None or smi.missing:
            return skipped("no GPU state: nvidia-smi not found on this host")
        why = "timed out" if smi.timed_out else f"failed (exit status {smi.returncode})"
        line = next((x.strip() for x in smi.output.splitlines() if x.strip()), "")
        return skipped(f"no GPU state: `{smi.command}` {why}" + (f": {line}" if line else ""))
    from .allocation import in_host_indices

    states = in_host_indices(parse_states(smi.stdout), host.job_view)  # (in a Slurm job)
    if not states:
        reason = "no GPU state: host `nvidia-smi -q` listed no GPU"
        if local and speaks:
            return warned("no_devices", reason, **_remedy("no_devices"))
        return skipped(reason)
    chosen = [s for s in states if not gpus or s.index in gpus]
    details: dict[str, Any] = {"gpus": [s.summary() for s in chosen]}
    if host.job_view is not None:
        details["job_view"] = host.job_view
    if host.smi_info is not None:
        details["driver_version"] = host.smi_info.driver_version or ""
        details["cuda_version"] = host.smi_info.cuda_version or ""
    missing = sorted(set(gpus) - {s.index for s in states})
    if missing:
        details["gpus_not_on_host"] = missing
        details["host_gpus"] = sorted(s.index for s in states)
        if speaks:  # no experiment could get them: a failure, whatever runs them
            have = _indices(s.index for s in states)
            if host.job_view is not None:  # (the job sees its allocation alone)
                where = f"in this Slurm job, which has host GPU {have} alone"
            else:
                where = f"on this host (it has GPU {have})"
            return failed(
                "no_devices",
                f"GPU {_indices(missing)} is not {where}",
                fix="Name GPUs that `nvidia-smi -L` lists in the study's `gpus:` (or --gpus)",
                url=NVIDIA_SMI_URL,
                **details,
            )
    if not chosen:
        return skipped(
            f"none of the study's GPUs ({_indices(gpus)}) is on this host "
            f"(it has {_indices(s.index for s in states)})"
        )
    return chosen, details


def _remedy(cause: str) -> dict[str, str]:
    fix, url = remedy(cause)
    return {"fix": fix, "url": url}


def _indices(indices: Any) -> str:
    return ", ".join(str(i) for i in indices)


def _which(gpus: Sequence[GpuState]) -> str:
    return ", ".join(f"GPU {g.index}" for g in gpus)


def _judge(
    host: HostFacts,
    gpus: Sequence[int],
    local: bool,
    judge: Callable[[list[GpuState], dict[str, Any]], Verdict],
    speaks: bool = False,
) -> Verdict:
    judged = _judged(host, gpus, local, speaks)
    if isinstance(judged, CheckResult):
        return judged
    chosen, details = judged
    return judge(chosen, details)


# --- the checks ------------------------------------------------------------------------------


def gpu_idle(host: HostFacts, gpus: Sequence[int] = (), *, local: bool = False) -> Verdict:
    """A compute process on a GPU the study uses fails; utilisation of 10% or more with no
    process visible (another container, another VM) warns."""

    def judge(chosen: list[GpuState], details: dict[str, Any]) -> Verdict:
        busy = [(g, p) for g in chosen for p in g.compute_processes]
        if busy:
            items = "; ".join(
                f"GPU {g.index}: PID {p.pid} {p.name or '?'}"
                f" ({p.used_memory or 'memory not shown'})"
                for g, p in busy
            )
            indices = ",".join(str(i) for i in dict.fromkeys(g.index for g, _ in busy))
            pids = " ".join(str(p.pid) for _, p in busy)
            return failed(
                "gpu_busy",
                f"{len(busy)} compute process(es) on the GPU(s) to measure: {items}; "
                "their power draw would be counted in every reading",
                fix=f"Stop them (kill {pids}) or wait until they end (`nvidia-smi -i {indices}` "
                "shows them), or give the study idle GPUs with `gpus:`",
                url=NVIDIA_SMI_URL,
                processes=[{"gpu": g.index, **p.summary()} for g, p in busy],
                **details,
            )
        loaded = [
            g
            for g in chosen
            if g.utilization_gpu is not None and g.utilization_gpu >= BUSY_UTILIZATION_PCT
        ]
        if loaded:
            items = ", ".join(f"GPU {g.index} at {g.utilization_gpu}%" for g in loaded)
            indices = ",".join(str(g.index) for g in loaded)
            return warned(
                "gpu_busy",
                f"{items} utilisation with no process visible (another container or VM may "
                "be using it)",
                fix=f"Find what uses it (`nvidia-smi -i {indices}`, `nvidia-smi pmon -i "
                f"{indices}`, `docker ps`) and stop it, or give the study idle GPUs with `gpus:`",
                url=NVIDIA_SMI_URL,
                **details,
            )
        return passed(f"{_which(chosen)} idle", **details)

    return _judge(host, gpus, local, judge, speaks=True)


def persistence_mode(host: HostFacts, gpus: Sequence[int] = (), *, local: bool = False) -> Verdict:
    def judge(chosen: list[GpuState], details: dict[str, Any]) -> Verdict:
        off = [g for g in chosen if (g.persistence_mode or "").lower() == "disabled"]
        if off:
            return warned(
                "persistence_mode_off",
                f"persistence mode is off on {_which(off)}: the driver may unload between "
                "experiments, so the first one pays its start-up and the energy counter "
                "restarts",
                fix="sudo nvidia-smi -pm 1, or enable the persistence daemon "
                "(sudo systemctl enable --now nvidia-persistenced)",
                url=PERSISTENCE_URL,
                **details,
            )
        return passed(f"persistence mode on for {_which(chosen)}", **details)

    return _judge(host, gpus, local, judge)


def mig_mode(host: HostFacts, gpus: Sequence[int] = (), *, local: bool = False) -> Verdict:
    def judge(chosen: list[GpuState], details: dict[str, Any]) -> Verdict:
        on = [g for g in chosen if (g.mig_mode or "").lower() == "enabled"]
        if on:
            commands = " && ".join(f"sudo nvidia-smi -i {g.index} -mig 0" for g in on)
            return warned(
                "mig_enabled",
                f"MIG is enabled on {_which(on)}: power and energy are reported for the whole "
                "GPU, not for the instance an experiment uses",
                fix=f"{commands} (no process may use the GPU; a GPU reset or reboot may be "
                "needed), or measure on GPUs without MIG",
                url=MIG_URL,
                **details,
            )
        return passed(f"MIG off on {_which(chosen)}", **details)

    return _judge(host, gpus, local, judge)


def clock_events(host: HostFacts, gpus: Sequence[int] = (), *, local: bool = False) -> Verdict:
    def judge(chosen: list[GpuState], details: dict[str, Any]) -> Verdict:
        slowed = [
            (g, g.clock_reasons.slowdowns())
            for g in chosen
            if g.clock_reasons and g.clock_reasons.slowdowns()
        ]
        if slowed:
            items = "; ".join(f"GPU {g.index}: {', '.join(reasons)}" for g, reasons in slowed)
            indices = ",".join(str(g.index) for g, _ in slowed)
            return warned(
                "gpu_throttled",
                f"clocks slowed down: {items}; results would not compare between runs",
                fix="Check the cooling and the power supply, and the power limit for SW Power "
                f"Cap (`nvidia-smi -q -d PERFORMANCE,TEMPERATURE,POWER -i {indices}`); "
                "wait until the GPU has cooled down",
                url=NVIDIA_SMI_URL,
                slowdowns={str(g.index): list(reasons) for g, reasons in slowed},
                **details,
            )
        unknown = [g for g in chosen if g.clock_reasons is None]
        if len(unknown) == len(chosen):
            return skipped(f"nvidia-smi -q shows no clock event reasons for {_which(chosen)}")
        return passed(f"no clock slowdown on {_which(chosen)}", **details)

    return _judge(host, gpus, local, judge)


def energy_counter(host: HostFacts, gpus: Sequence[int] = (), *, local: bool = False) -> Verdict:
    def judge(chosen: list[GpuState], details: dict[str, Any]) -> Verdict:
        old: list[tuple[GpuState, str, str]] = []
        unknown: list[GpuState] = []
        for gpu in chosen:
            arch, source = architecture_of(gpu)
            if arch is None:
                unknown.append(gpu)
            elif arch in BEFORE_VOLTA:
                old.append((gpu, arch, source))
        if old:
            items = ", ".join(f"GPU {g.index} ({g.name}, {arch})" for g, arch, _ in old)
            return warned(
                "energy_counter_unsupported",
                f"{items}: older than Volta, no NVML total-energy counter; energy can only be "
                "estimated from power samples",
                fix="Measure on Volta or newer GPUs (compute capability 7.0+) for counter-based "
                "energy readings",
                url=NVML_ENERGY_URL,
                architectures={str(g.index): [arch, source] for g, arch, source in old},
                **details,
            )
        if len(unknown) == len(chosen):
            return skipped(f"the architecture of {_which(chosen)} is unknown")
        note = f" (architecture of {_which(unknown)} unknown)" if unknown else ""
        return passed(f"energy counter available on {_which(chosen)}{note}", **details)

    return _judge(host, gpus, local, judge)


def _watts(value: float) -> str:
    """A limit for `nvidia-smi -pl`: ``700``, ``312.5``."""
    return f"{value:g}"


def power_limit(host: HostFacts, gpus: Sequence[int] = (), *, local: bool = False) -> Verdict:
    """A current power limit other than the default warns: energy per token and speed both
    depend on it, so results would not compare with runs at the default limit."""

    def judge(chosen: list[GpuState], details: dict[str, Any]) -> Verdict:
        known: list[GpuState] = []
        changed: list[tuple[GpuState, float, float]] = []
        for gpu in chosen:
            current, default = watts(gpu.power_limit), watts(gpu.default_power_limit)
            if current is None or default is None:
                continue
            known.append(gpu)
            if abs(current - default) >= POWER_LIMIT_TOLERANCE_W:
                changed.append((gpu, current, default))
        if changed:
            items = "; ".join(
                f"GPU {g.index}: power limit {current:.2f} W, default {default:.2f} W"
                for g, current, default in changed
            )
            commands = " && ".join(
                f"sudo nvidia-smi -i {g.index} -pl {_watts(default)}" for g, _, default in changed
            )
            return warned(
                "power_limit_changed",
                f"{items}; energy and throughput would not compare with runs at the default limit",
                fix=f"{commands} (back to the default limit), or keep the limit and record it "
                "with the results",
                url=NVIDIA_SMI_URL,
                power_limits={
                    str(g.index): {"current_w": current, "default_w": default}
                    for g, current, default in changed
                },
                **details,
            )
        if not known:
            return skipped(
                f"nvidia-smi -q shows no current and default power limit for {_which(chosen)}"
            )
        unknown = [g for g in chosen if g not in known]
        note = f" (not reported for {_which(unknown)})" if unknown else ""
        return passed(f"power limit at its default on {_which(known)}{note}", **details)

    return _judge(host, gpus, local, judge)


def gpu_health(host: HostFacts, gpus: Sequence[int] = (), *, local: bool = False) -> Verdict:
    """A pending row remapping, a remapping failure, volatile uncorrectable ECC errors or pages
    pending retirement fail: the GPU's memory is faulty, and an experiment on it may crash or
    give wrong results. Counters the driver does not report (N/A, absent) are no finding."""

    def judge(chosen: list[GpuState], details: dict[str, Any]) -> Verdict:
        faulty = [(g, g.memory.faults()) for g in chosen if g.memory.faults()]
        if faulty:
            items = "; ".join(
                f"GPU {g.index}: " + ", ".join(f"{what} ({counters})" for what, counters in found)
                for g, found in faulty
            )
            indices = [g.index for g, _ in faulty]
            resets = " && ".join(f"sudo nvidia-smi -r -i {i}" for i in indices)
            listed = ",".join(str(i) for i in indices)
            it = "them" if len(indices) > 1 else "it"
            return failed(
                "gpu_hardware_fault",
                f"memory fault on the GPU(s) to measure: {items}",
                fix=f"Drain {_which([g for g, _ in faulty])} (no experiment or job may use "
                f"{it}); once idle, reset {it}: {resets}, then check the counters again "
                f"(`nvidia-smi -q -d ECC,PAGE_RETIREMENT,ROW_REMAPPER -i {listed}`); a "
                "remapping failure or errors that recur call for NVIDIA's field diagnostic",
                url=GPU_MEMORY_ERRORS_URL,
                faults={
                    str(g.index): [
                        {"fault": what, "counters": counters} for what, counters in found
                    ]
                    for g, found in faulty
                },
                memory={str(g.index): g.memory.summary() for g in chosen},
                **details,
            )
        reported = [g for g in chosen if g.memory.reported]
        if not reported:
            return skipped(
                "nvidia-smi -q reports no memory error counters (ECC, retired pages, remapped "
                f"rows) for {_which(chosen)}"
            )
        unknown = [g for g in chosen if not g.memory.reported]
        note = f" (not reported for {_which(unknown)})" if unknown else ""
        return passed(
            f"no memory fault on {_which(reported)}{note}",
            memory={str(g.index): g.memory.summary() for g in reported},
            **details,
        )

    return _judge(host, gpus, local, judge)
