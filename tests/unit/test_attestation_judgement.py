"""The judgement of a measurement window (`domain.attestation`), from series of snapshots in
real layouts: the H200 capture of driver 580 (with its `Clocks Event Reasons Counters`), with
values injected, and an 8-GPU report of driver 535 (no counters)."""

from __future__ import annotations

import pytest
from testbed.captures import verbatim, with_value

from pytest_llem.domain.attestation import (
    COUNTER_KEYS,
    Attestation,
    Reason,
    Snapshot,
    judge,
    unverified,
)
from pytest_llem.domain.gpu_state import parse_states

IDLE = verbatim("captured/h200-580.159.04_smi-q.txt")
# python3, PID 556, on GPU 0: another capture of the same card (one UUID for both)
BUSY = with_value(
    verbatim("captured/h200-580.159.04_smi-q_busy.txt"), 0, ("GPU UUID",),
    "GPU-00000000-1111-2222-3333-444444444444",
)  # fmt: skip
A100X8 = verbatim("smi-q/nvidia-smi-q_535.129.03_8x-a100-sxm4-40gb.txt")
COUNTERS = "Clocks Event Reasons Counters"
ZEROS = dict.fromkeys(COUNTER_KEYS.values(), 0)


def counter(text: str, label: str, micros: int, gpu: int = 0) -> str:
    return with_value(text, gpu, (COUNTERS, label), f"{micros} us")


def series(*texts: str, own: frozenset[int] = frozenset()) -> list[Snapshot]:
    """Snapshots one second apart; ``own``: the experiment's pids in each but the first and
    the last (it runs between them)."""
    last = len(texts) - 1
    return [
        Snapshot.parse(text, float(n), own if 0 < n < last else ()) for n, text in enumerate(texts)
    ]


def test_the_580_capture_has_counters_in_microseconds() -> None:
    [gpu] = parse_states(counter(IDLE, "HW Thermal Slowdown", 1250))
    assert gpu.event_counters_us == (
        ("SW Power Capping", 0),
        ("Sync Boost", 0),
        ("SW Thermal Slowdown", 0),
        ("HW Thermal Slowdown", 1250),
        ("HW Power Braking", 0),
    )
    assert (gpu.temperature, gpu.clocks.summary()) == (
        "34 C",
        {
            "applications": {"Graphics": "1980 MHz", "Memory": "3201 MHz"},
            "default_applications": {"Graphics": "1980 MHz", "Memory": "3201 MHz"},
            "auto_boost": None,
        },
    )
    # Drivers before 580 print no counters: None, not zeros.
    assert {g.event_counters_us for g in parse_states(A100X8)} == {None}


def test_an_undisturbed_window_is_clean() -> None:
    result = judge(series(IDLE, IDLE, IDLE), None, 1.0)
    assert result == Attestation("clean", (), {"0": ZEROS}, 3, 1.0)
    assert result.to_json() == {
        "status": "clean",
        "reasons": [],
        "throttle_us": {"0": ZEROS},
        "samples": 3,
        "interval_s": 1.0,
    }


@pytest.mark.parametrize(
    ("label", "key"),
    [
        ("HW Thermal Slowdown", "hw_thermal_slowdown"),
        ("HW Power Braking", "hw_power_brake"),
        ("SW Thermal Slowdown", "sw_thermal_slowdown"),
    ],
)
def test_a_slowdown_counter_that_advances_is_throttling(label: str, key: str) -> None:
    """Any time at all: 2 ms of a 3 s window, seen between the samples at 1 s and 2 s."""
    later = counter(IDLE, label, 2000)
    result = judge(series(IDLE, IDLE, later, later), None, 1.0)
    assert result.status == "suspect"
    assert result.reasons == (
        Reason(
            "gpu_throttled",
            f"GPU 0: {label} held the clocks down for 0.002 s (0% of the window), first "
            "between 1.0 s and 2.0 s",
            0,
        ),
    )
    assert result.throttle_us == {"0": {**ZEROS, key: 2000}}


def test_sw_power_capping_counts_past_five_percent_of_the_window() -> None:
    """A 2 s window: 100 ms (5%) is not a finding, 101 ms is."""
    within = judge(series(IDLE, IDLE, counter(IDLE, "SW Power Capping", 100_000)), None, 1.0)
    assert within.status == "clean"
    assert within.throttle_us == {"0": {**ZEROS, "sw_power_cap": 100_000}}
    windows = series(IDLE, IDLE, counter(IDLE, "SW Power Capping", 101_000))
    past = judge(windows, None, 1.0)
    assert [(r.cause, r.gpu) for r in past.reasons] == [("gpu_throttled", 0)]
    assert "SW Power Capping held the clocks down for 0.101 s (5% of the window)" in (
        past.reasons[0].message
    )
    # Sync Boost is no slowdown.
    assert judge(series(IDLE, counter(IDLE, "Sync Boost", 10**6)), None, 0).status == "clean"


def test_a_counter_that_goes_back_is_a_reload_not_throttling() -> None:
    before = counter(IDLE, "HW Thermal Slowdown", 5_000_000)
    after = with_value(IDLE, 0, ("GPU UUID",), "GPU-00000000-1111-2222-3333-999999999999")
    result = judge(series(before, after), None, 0.0)
    assert [r.cause for r in result.reasons] == ["driver_reloaded"]
    assert result.reasons[0].message == (
        "the GPUs changed at 1.0 s (gone: GPU-00000000-1111-2222-3333-444444444444, new: "
        "GPU-00000000-1111-2222-3333-999999999999)"
    )
    assert result.throttle_us == {"0": ZEROS}


def test_a_foreign_process_seen_in_one_sample_only() -> None:
    """It came and went between the snapshots before and after: still named."""
    result = judge(series(IDLE, BUSY, IDLE), None, 1.0)
    assert result.status == "suspect"
    assert result.reasons == (
        Reason(
            "gpu_busy",
            "GPU 0: PID 556 python3 (1542 MiB), not the experiment's, seen at 1.0 s",
            0,
        ),
    )
    assert (
        judge(series(IDLE, BUSY, BUSY, IDLE), None, 1.0)
        .reasons[0]
        .message.endswith("seen from 1.0 s to 2.0 s")
    )


def test_the_experiments_own_process_is_not_foreign() -> None:
    result = judge(series(IDLE, BUSY, BUSY, IDLE, own=frozenset({556})), None, 1.0)
    assert result.status == "clean"
    # Before it started, the same process is another's.
    assert judge(series(BUSY, BUSY, IDLE, own=frozenset({556})), None, 1.0).status == "suspect"


def test_a_power_limit_changed_in_the_window() -> None:
    lowered = with_value(IDLE, 0, ("GPU Power Readings", "Current Power Limit"), "450.00 W")
    result = judge(series(IDLE, lowered, IDLE), None, 1.0)
    assert result.reasons == (
        Reason(
            "power_limit_changed",
            "GPU 0: power limit 700.00 W at the start, 450.00 W at 1.0 s",
            0,
        ),
    )


def test_the_driver_version_changed() -> None:
    label = "Driver Version".ljust(55)
    newer = IDLE.replace(f"{label}: 580.159.04", f"{label}: 580.160.01")
    assert newer != IDLE
    result = judge(series(IDLE, newer), None, 0.0)
    assert result.reasons == (
        Reason("driver_reloaded", "driver 580.159.04 at the start, 580.160.01 at 1.0 s"),
    )


def test_persistence_off_and_mig_on_count_when_they_change() -> None:
    off = with_value(IDLE, 0, ("Persistence Mode",), "Disabled")
    mig = with_value(IDLE, 0, ("MIG Mode", "Current"), "Enabled")
    result = judge(series(IDLE, off, mig), None, 1.0)
    assert [(r.cause, r.message) for r in result.reasons] == [
        ("persistence_mode_off", "GPU 0: persistence mode turned off at 1.0 s"),
        ("mig_enabled", "GPU 0: MIG mode turned on at 2.0 s"),
    ]
    # Already so at the start: the pre-flight's warning, not the window's finding.
    assert judge(series(off, off), None, 0.0).status == "clean"


def test_only_the_experiments_gpus_are_judged() -> None:
    """GPU 5 of eight (driver 535) runs at another power limit during the window."""
    lowered = with_value(A100X8, 5, ("GPU Power Readings", "Current Power Limit"), "250.00 W")
    windows = series(A100X8, lowered, A100X8)
    assert judge(windows, (0, 1), 1.0).status == "clean"
    everything = judge(windows, None, 1.0)
    assert [(r.cause, r.gpu) for r in everything.reasons] == [("power_limit_changed", 5)]
    assert everything.throttle_us == {}  # this driver keeps no counters


def test_without_counters_the_active_reasons_stand_in() -> None:
    braking = with_value(A100X8, 2, ("Clocks Event Reasons", "HW Slowdown"), "Active")
    result = judge(series(A100X8, braking, A100X8), (2,), 1.0)
    assert result.reasons == (
        Reason("gpu_throttled", "GPU 2: HW Slowdown active in 1 of 3 sample(s), at 1.0 s", 2),
    )
    # SW power cap by the share of samples: 1 of 20 (5%) is not a finding, 1 of 19 is.
    capped = with_value(A100X8, 2, ("Clocks Event Reasons", "SW Power Cap"), "Active")
    many = [A100X8] * 19 + [capped]
    assert judge(series(*many), (2,), 1.0).status == "clean"
    assert judge(series(*many[1:]), (2,), 1.0).status == "suspect"


def test_a_window_read_in_part() -> None:
    lost = Reason("host_driver_unavailable", "nvidia-smi -q did not answer within 10 s after")
    nothing_seen = judge(series(IDLE, IDLE), None, 1.0, unreadable=lost)
    assert (nothing_seen.status, nothing_seen.reasons) == ("unverified", (lost,))
    seen = judge(series(IDLE, BUSY), None, 1.0, unreadable=lost)
    assert seen.status == "suspect"
    assert [r.cause for r in seen.reasons] == ["gpu_busy", "host_driver_unavailable"]
    assert judge(series(IDLE), None, 1.0).status == "unverified"


def test_unverified_names_why() -> None:
    why = Reason("host_driver_unavailable", "its GPUs are those of the remote Docker daemon")
    assert unverified(why, 5.0).to_json() == {
        "status": "unverified",
        "reasons": [why.to_json()],
        "throttle_us": {},
        "samples": 0,
        "interval_s": 5.0,
    }
