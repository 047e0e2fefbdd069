"""Whether an experiment's measurement window was undisturbed (no I/O here).

The judgement reads `nvidia-smi -q` snapshots of the host's GPUs: one before the experiment
starts, samples while it runs, one after it has ended. Its status is ``clean`` (nothing
disturbed its GPUs), ``suspect`` (something did: each reason names its cause, the GPU and the
time) or ``unverified`` (their state could not be read). Times are seconds from the first
snapshot, i.e. from just before the experiment started.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal

from .gpu_state import GpuProcess, GpuState, parse_states
from .text import is_decimal

if TYPE_CHECKING:
    from .allocation import Allocation

Status = Literal["clean", "suspect", "unverified"]
# The causes of a reason (DESIGN §10), in the order reasons are listed.
REASON_CAUSES = (
    "driver_reloaded",
    "gpu_busy",
    "gpu_throttled",
    "power_limit_changed",
    "persistence_mode_off",
    "mig_enabled",
)
# SW power capping that held the clocks for more than this share of the window is a finding.
SW_POWER_CAP_SHARE = 0.05
# `Clocks Event Reasons Counters` (driver 580): label -> key of `throttle_us`.
COUNTER_KEYS = {
    "SW Power Capping": "sw_power_cap",
    "Sync Boost": "sync_boost",
    "SW Thermal Slowdown": "sw_thermal_slowdown",
    "HW Thermal Slowdown": "hw_thermal_slowdown",
    "HW Power Braking": "hw_power_brake",
}
# Counters whose every microsecond is a finding (thermal and power-brake slowdowns).
SLOWDOWN_COUNTERS = ("SW Thermal Slowdown", "HW Thermal Slowdown", "HW Power Braking")
SW_POWER_CAP = "SW Power Capping"
# Without counters (drivers before 580): the reason shown Active in a sample stands in.
ACTIVE_SW_POWER_CAP = "SW Power Cap"


@dataclass(frozen=True)
class Snapshot:
    """The host's GPUs as one `nvidia-smi -q` showed them, ``at_s`` into the window.

    ``own_pids``: the listed processes that were the experiment's own when it was taken.
    """

    at_s: float
    driver_version: str | None
    gpus: tuple[GpuState, ...]
    own_pids: frozenset[int] = frozenset()

    @classmethod
    def parse(
        cls,
        text: str,
        at_s: float,
        own_pids: Iterable[int] = (),
        allocation: Allocation | None = None,
    ) -> Snapshot:
        """``text`` read ``at_s`` into the window; inside a Slurm job (``allocation``) whose
        nvidia-smi numbers its GPUs from 0, its GPUs under their host indices."""
        from .allocation import in_host_indices, job_view
        from .nvidia_smi import parse_q

        listed = parse_states(text)
        gpus = in_host_indices(listed, job_view(listed, allocation))
        return cls(at_s, parse_q(text).driver_version, gpus, frozenset(own_pids))

    def gpu(self, index: int) -> GpuState | None:
        return next((g for g in self.gpus if g.index == index), None)

    @property
    def uuids(self) -> tuple[str, ...]:
        return tuple(g.uuid for g in self.gpus)


@dataclass(frozen=True)
class Reason:
    cause: str  # one of REASON_CAUSES (an unverified one: why the state could not be read)
    message: str
    gpu: int | None = None  # the GPU's index, None when it concerns the host

    def to_json(self) -> dict[str, Any]:
        return {"cause": self.cause, "message": self.message, "gpu": self.gpu}


@dataclass(frozen=True)
class Attestation:
    """The manifest entry's ``attestation``."""

    status: Status
    reasons: tuple[Reason, ...] = ()
    # GPU index -> COUNTER_KEYS value -> microseconds its counter advanced in the window;
    # empty when the driver keeps no counters.
    throttle_us: dict[str, dict[str, int]] = field(default_factory=dict)
    samples: int = 0  # the snapshots read, the one before and the one after included
    interval_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reasons": [r.to_json() for r in self.reasons],
            "throttle_us": self.throttle_us,
            "samples": self.samples,
            "interval_s": self.interval_s,
        }

    def summary(self) -> str:
        """One line: each reason's cause and message."""
        return "; ".join(f"[{r.cause}] {r.message}" for r in self.reasons)


def unverified(reason: Reason, interval_s: float, samples: int = 0) -> Attestation:
    """The attestation of an experiment whose GPUs' state could not be read."""
    return Attestation("unverified", (reason,), {}, samples, interval_s)


def judge(
    snapshots: Sequence[Snapshot],
    devices: Sequence[int] | None,
    interval_s: float,
    *,
    unreadable: Reason | None = None,
) -> Attestation:
    """The attestation of a window from its snapshots, in time order: the first taken before
    the experiment started and, unless ``unreadable`` says why not, the last after it ended.

    ``devices``: the GPU indices the experiment used (None: every GPU of the first snapshot).
    A window read only in part is ``suspect`` when what was read shows a reason, otherwise
    ``unverified``; ``unreadable`` is then one of its reasons.
    """
    if not snapshots:
        return unverified(unreadable or Reason("unknown", "no snapshot"), interval_s)
    first = snapshots[0]
    indices = [g.index for g in first.gpus] if devices is None else list(devices)
    reasons = _driver(snapshots)
    throttle: dict[str, dict[str, int]] = {}
    for index in indices:
        series = _series(snapshots, index)
        if not series:
            continue
        reasons += _foreign(series, index)
        found, counted = _throttling(series, index)
        reasons += found
        if counted is not None:
            throttle[str(index)] = counted
        reasons += _settings(series, index)
    reasons.sort(key=lambda r: REASON_CAUSES.index(r.cause))
    unseen = [i for i in indices if first.gpu(i) is None]
    if unseen and unreadable is None:  # (never "clean" for GPUs that were not read)
        listed = ", ".join(str(g.index) for g in first.gpus) or "none"
        unreadable = Reason(
            "unknown",
            f"GPU {', '.join(map(str, unseen))} not among the GPUs nvidia-smi lists here "
            f"({listed}): its state could not be read",
            gpu=unseen[0],
        )
    partial = unreadable is not None or len(snapshots) < 2
    if partial:
        note = unreadable or Reason("unknown", "only one snapshot was read")
        status: Status = "suspect" if reasons else "unverified"
        return Attestation(status, (*reasons, note), throttle, len(snapshots), interval_s)
    status = "suspect" if reasons else "clean"
    return Attestation(status, tuple(reasons), throttle, len(snapshots), interval_s)


# ---- the reasons -------------------------------------------------------------------------------


def _at(seconds: float) -> str:
    return f"{seconds:.1f} s"


def _during(times: Sequence[float]) -> str:
    return f"at {_at(times[0])}" if len(times) == 1 else f"from {_at(times[0])} to {_at(times[-1])}"


def _series(snapshots: Sequence[Snapshot], index: int) -> list[tuple[Snapshot, GpuState]]:
    """GPU ``index`` in each snapshot, as long as it is the GPU (UUID) of the first."""
    found: list[tuple[Snapshot, GpuState]] = []
    uuid: str | None = None
    for snapshot in snapshots:
        gpu = snapshot.gpu(index)
        if gpu is None or (uuid is not None and gpu.uuid != uuid):
            break
        uuid = gpu.uuid
        found.append((snapshot, gpu))
    return found


def _driver(snapshots: Sequence[Snapshot]) -> list[Reason]:
    """The driver reloaded: its version, or the GPUs it shows (their UUIDs), changed."""
    first = snapshots[0]
    for snapshot in snapshots[1:]:
        when = _at(snapshot.at_s)
        if snapshot.driver_version != first.driver_version:
            return [
                Reason(
                    "driver_reloaded",
                    f"driver {first.driver_version or 'unknown'} at the start, "
                    f"{snapshot.driver_version or 'unknown'} at {when}",
                )
            ]
        if snapshot.uuids != first.uuids:
            gone = [u for u in first.uuids if u not in snapshot.uuids]
            new = [u for u in snapshot.uuids if u not in first.uuids]
            what = ", ".join(
                part
                for part in (
                    f"gone: {', '.join(gone)}" if gone else "",
                    f"new: {', '.join(new)}" if new else "",
                )
                if part
            )
            return [
                Reason(
                    "driver_reloaded",
                    f"the GPUs changed at {when} ({what or 'renumbered'})",
                )
            ]
    return []


def _mib(memory: str) -> float:
    """The number of ``"20480 MiB"`` (0 when there is none)."""
    number = memory.split()[0] if memory.split() else ""
    return float(number) if is_decimal(number) else 0.0


def _foreign(series: Sequence[tuple[Snapshot, GpuState]], index: int) -> list[Reason]:
    """A compute process on the GPU that was not the experiment's own, in any snapshot."""
    seen: dict[int, list[tuple[float, GpuProcess]]] = {}
    for snapshot, gpu in series:
        for process in gpu.compute_processes:
            if process.pid not in snapshot.own_pids:
                seen.setdefault(process.pid, []).append((snapshot.at_s, process))
    reasons = []
    for pid, sightings in seen.items():
        times = [at for at, _ in sightings]
        name = sightings[0][1].name
        memory = max((p.used_memory or "" for _, p in sightings), key=_mib)
        held = f" ({memory})" if memory else ""
        reasons.append(
            Reason(
                "gpu_busy",
                f"GPU {index}: PID {pid} {name or '(no name)'}{held}, not the experiment's, "
                f"seen {_during(times)}",
                index,
            )
        )
    return reasons


def _throttling(
    series: Sequence[tuple[Snapshot, GpuState]], index: int
) -> tuple[list[Reason], dict[str, int] | None]:
    """(reasons, the counters' advance) of slowdowns: from the counters where the driver
    keeps them, else from the reasons the snapshots show Active (advance None)."""
    if series[0][1].event_counters_us is None:
        return _active_slowdowns(series, index), None
    advanced = dict.fromkeys(COUNTER_KEYS, 0)
    first_at: dict[str, tuple[float, float]] = {}
    for (before, old), (after, new) in pairwise(series):
        was, now = dict(old.event_counters_us or ()), dict(new.event_counters_us or ())
        for label in COUNTER_KEYS:
            if label in was and label in now and now[label] > was[label]:
                advanced[label] += now[label] - was[label]
                first_at.setdefault(label, (before.at_s, after.at_s))
    window_us = (series[-1][0].at_s - series[0][0].at_s) * 1e6
    reasons = []
    for label, micros in advanced.items():
        if not micros:
            continue
        share = micros / window_us if window_us > 0 else 1.0
        if label in SLOWDOWN_COUNTERS or (label == SW_POWER_CAP and share > SW_POWER_CAP_SHARE):
            start, end = first_at[label]
            reasons.append(
                Reason(
                    "gpu_throttled",
                    f"GPU {index}: {label} held the clocks down for {micros / 1e6:.3f} s "
                    f"({share:.0%} of the window), first between {_at(start)} and {_at(end)}",
                    index,
                )
            )
    return reasons, {COUNTER_KEYS[label]: us for label, us in advanced.items()}


def _active_slowdowns(series: Sequence[tuple[Snapshot, GpuState]], index: int) -> list[Reason]:
    times: dict[str, list[float]] = {}
    for snapshot, gpu in series:
        for reason in gpu.clock_reasons.slowdowns() if gpu.clock_reasons else ():
            times.setdefault(reason, []).append(snapshot.at_s)
    reasons = []
    for reason, seen in times.items():
        share = len(seen) / len(series)
        if reason == ACTIVE_SW_POWER_CAP and share <= SW_POWER_CAP_SHARE:
            continue
        reasons.append(
            Reason(
                "gpu_throttled",
                f"GPU {index}: {reason} active in {len(seen)} of {len(series)} sample(s), "
                f"{_during(seen)}",
                index,
            )
        )
    return reasons


def _settings(series: Sequence[tuple[Snapshot, GpuState]], index: int) -> list[Reason]:
    """The power limit changed; persistence mode went off, or MIG on, during the window."""
    start = series[0][1]
    reasons = []
    limit = next(((s, g) for s, g in series if g.power_limit != start.power_limit), None)
    if limit is not None:
        snapshot, gpu = limit
        reasons.append(
            Reason(
                "power_limit_changed",
                f"GPU {index}: power limit {start.power_limit or 'unknown'} at the start, "
                f"{gpu.power_limit or 'unknown'} at {_at(snapshot.at_s)}",
                index,
            )
        )
    for cause, label, attribute, state in (
        ("persistence_mode_off", "persistence mode", "persistence_mode", "Disabled"),
        ("mig_enabled", "MIG mode", "mig_mode", "Enabled"),
    ):
        if getattr(start, attribute) == state:
            continue  # so at the start: the pre-flight's finding, not the window's
        changed = next((s for s, g in series if getattr(g, attribute) == state), None)
        if changed is not None:
            word = "off" if state == "Disabled" else "on"
            reasons.append(
                Reason(cause, f"GPU {index}: {label} turned {word} at {_at(changed.at_s)}", index)
            )
    return reasons
