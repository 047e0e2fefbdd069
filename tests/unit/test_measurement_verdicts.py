"""Tier 3 judgements over real `nvidia-smi -q` layouts: no Docker, no subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest
from testbed.captures import verbatim

from pytest_llem.domain import measurement
from pytest_llem.domain.records import CommandResult, Endpoint, HostFacts
from pytest_llem.domain.report import CheckResult

H200 = "captured/h200-580.159.04_smi-q.txt"
H200_BUSY = "captured/h200-580.159.04_smi-q_busy.txt"
H200_CONTEXT = "captured/h200-580.159.04_smi-q_context.txt"
P100 = "assembled/nvidia-smi-q_470.256.02_2x-tesla-p100.txt"
A100_MIG = "assembled/nvidia-smi-q_535.261.03_a100-mig.txt"
RTX_DESKTOP = "assembled/nvidia-smi-q_550.163.01_rtx-4070-desktop.txt"

CHECKS = {
    "gpu-idle": measurement.gpu_idle,
    "persistence-mode": measurement.persistence_mode,
    "mig-mode": measurement.mig_mode,
    "clock-events": measurement.clock_events,
    "energy-counter": measurement.energy_counter,
}


def host(
    path: str | None = H200,
    url: str = "unix:///var/run/docker.sock",
    smi: CommandResult | None = None,
) -> HostFacts:
    if smi is None and path is not None:
        smi = CommandResult(("nvidia-smi", "-q"), 0, verbatim(path))
    return HostFacts(Endpoint(url), "/usr/bin/docker", None, {}, smi, None)


def outcomes(facts: HostFacts, gpus: tuple[int, ...] = (), local: bool = False) -> dict[str, str]:
    return {cid: judge(facts, gpus, local=local).outcome for cid, judge in CHECKS.items()}


def test_healthy_h200_has_no_finding() -> None:
    assert set(outcomes(host(H200)).values()) == {"passed"}
    verdict = measurement.gpu_idle(host(H200))
    [gpu] = verdict.details["gpus"]
    assert (gpu["name"], gpu["architecture"], gpu["persistence_mode"]) == (
        "NVIDIA H200",
        "Hopper",
        "Enabled",
    )
    assert (gpu["mig_mode"], gpu["power_limit"]) == ("Disabled", "700.00 W")


def test_compute_process_fails_gpu_idle_naming_pid_name_memory() -> None:
    verdict = measurement.gpu_idle(host(H200_BUSY))
    assert verdict.outcome == "failed" and verdict.finding is not None
    assert verdict.finding.cause == "gpu_busy"
    message = verdict.finding.message
    assert "GPU 0: PID 556 python3 (1542 MiB)" in message
    assert "kill 556" in verdict.finding.fix and "nvidia-smi -i 0" in verdict.finding.fix
    assert verdict.finding.url.startswith("https://docs.nvidia.com/")
    assert verdict.details["processes"] == [
        {"gpu": 0, "pid": 556, "type": "C", "name": "python3", "used_memory": "1542 MiB"}
    ]


def test_a_process_holding_a_context_fails_gpu_idle_at_zero_utilization() -> None:
    """Real capture: a CUDA context with 1.5 GiB and no kernel reads 0 %, yet the next
    kernel of that process would share the GPU with the experiment."""
    verdict = measurement.gpu_idle(host(H200_CONTEXT))
    assert verdict.outcome == "failed" and verdict.finding is not None
    assert verdict.finding.cause == "gpu_busy"
    assert "PID 532 python3 (1542 MiB)" in verdict.finding.message
    others = [CHECKS[c](host(H200_CONTEXT)).outcome for c in CHECKS if c != "gpu-idle"]
    assert others == ["passed"] * 4


def test_driver_470_two_p100() -> None:
    """GPU 0: persistence off, HW thermal slowdown; GPU 1: a compute process. Both Pascal."""
    facts = host(P100)
    idle = measurement.gpu_idle(facts)
    assert idle.outcome == "failed" and idle.finding is not None
    assert "GPU 1: PID 48213 /usr/bin/python3 (15281 MiB)" in idle.finding.message
    persistence = measurement.persistence_mode(facts)
    assert persistence.outcome == "warning" and persistence.finding is not None
    assert persistence.finding.cause == "persistence_mode_off"
    assert "GPU 0" in persistence.finding.message and "GPU 1" not in persistence.finding.message
    assert persistence.finding.fix.startswith("sudo nvidia-smi -pm 1")
    assert "nvidia-persistenced" in persistence.finding.fix
    clocks = measurement.clock_events(facts)
    assert clocks.outcome == "warning" and clocks.finding is not None
    assert clocks.finding.cause == "gpu_throttled"
    assert "GPU 0: HW Thermal Slowdown" in clocks.finding.message
    energy = measurement.energy_counter(facts)
    assert energy.outcome == "warning" and energy.finding is not None
    assert energy.finding.cause == "energy_counter_unsupported"
    assert "GPU 0 (Tesla P100-PCIE-16GB, Pascal)" in energy.finding.message
    assert energy.details["architectures"]["1"] == ["Pascal", "product name"]
    assert measurement.mig_mode(facts).outcome == "passed"


def test_only_the_studys_gpus_are_judged() -> None:
    assert outcomes(host(P100), gpus=(0,))["gpu-idle"] == "passed"
    assert outcomes(host(P100), gpus=(1,)) == {
        "gpu-idle": "failed",
        "persistence-mode": "passed",
        "mig-mode": "passed",
        "clock-events": "passed",
        "energy-counter": "warning",
    }
    verdict = measurement.gpu_idle(host(P100), (0,))
    assert [g["index"] for g in verdict.details["gpus"]] == [0]


def test_gpus_the_host_does_not_have() -> None:
    verdict = measurement.gpu_idle(host(P100), (1, 5))
    assert verdict.outcome == "failed" and verdict.details["gpus_not_on_host"] == [5]
    none = measurement.persistence_mode(host(P100), (7,))
    assert none.outcome == "skipped" and "(7)" in none.reason and "0, 1" in none.reason


def test_mig_enabled_and_power_cap_driver_535() -> None:
    facts = host(A100_MIG)
    mig = measurement.mig_mode(facts)
    assert mig.outcome == "warning" and mig.finding is not None
    assert mig.finding.cause == "mig_enabled"
    assert mig.finding.fix.startswith("sudo nvidia-smi -i 0 -mig 0")
    clocks = measurement.clock_events(facts)
    assert clocks.finding is not None and "GPU 0: SW Power Cap" in clocks.finding.message
    assert measurement.gpu_idle(facts).outcome == "failed"  # a process in a MIG instance
    assert measurement.energy_counter(facts).outcome == "passed"


def test_graphics_processes_and_load_only_warn() -> None:
    verdict = measurement.gpu_idle(host(RTX_DESKTOP))
    assert verdict.outcome == "warning" and verdict.finding is not None
    assert verdict.finding.cause == "gpu_busy"
    assert "GPU 0 at 37%" in verdict.finding.message


@pytest.mark.parametrize("utilization, outcome", [("9 %", "passed"), ("10 %", "warning")])
def test_utilisation_threshold(utilization: str, outcome: str) -> None:
    text = verbatim(H200).replace(
        "        GPU                                            : 0 %",
        f"        GPU                                            : {utilization}",
    )
    facts = host(smi=CommandResult(("nvidia-smi", "-q"), 0, text))
    assert measurement.gpu_idle(facts).outcome == outcome


def test_remote_daemon_is_skipped_with_a_reason() -> None:
    facts = host(H200, url="tcp://gpu-box:2376")
    verdicts = {cid: judge(facts, ()) for cid, judge in CHECKS.items()}
    assert {v.outcome for v in verdicts.values()} == {"skipped"}
    assert all("remote daemon (tcp://gpu-box:2376)" in v.reason for v in verdicts.values())
    # Local experiments only: this machine's GPUs are the ones measured.
    assert outcomes(facts, local=True)["gpu-idle"] == "passed"


@pytest.mark.parametrize(
    "smi, reason",
    [
        (None, "nvidia-smi not found"),
        (CommandResult(("nvidia-smi", "-q"), None, missing=True), "nvidia-smi not found"),
        (
            CommandResult(
                ("nvidia-smi", "-q"),
                9,
                "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
            ),
            "failed (exit status 9): NVIDIA-SMI has failed",
        ),
    ],
)
def test_no_gpu_state_is_skipped_not_failed(smi: CommandResult | None, reason: str) -> None:
    for judge in CHECKS.values():
        verdict: CheckResult = judge(host(None, smi=smi), ())
        assert verdict.outcome == "skipped" and reason in verdict.reason


def test_local_experiments_read_this_machines_gpus_even_with_a_remote_daemon(
    tmp_path: Path,
) -> None:
    """DOCKER_HOST names another machine, but every experiment runs here: this machine's
    `nvidia-smi -q` is asked (once) for the measurement checks."""
    from pytest_llem.facts import Facts
    from pytest_llem.settings import PreflightSettings

    capture = tmp_path / "q.txt"
    capture.write_text(verbatim(H200_BUSY))
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\necho called >> {tmp_path}/calls\nexec /bin/cat {capture}\n")
    smi.chmod(0o755)
    env = {"PATH": str(tmp_path), "DOCKER_HOST": "tcp://gpu-box:2376"}
    docker_checks = Facts(PreflightSettings(), env)
    local_only = Facts(PreflightSettings(measurement_only=True), env)
    try:
        assert docker_checks.measured_host().smi is None  # the remote host's GPUs: not asked
        facts = local_only.measured_host()
        assert facts.smi_info is not None and facts.smi_info.driver_version == "580.159.04"
        assert local_only.measured_host() is facts
        assert measurement.gpu_idle(facts, local=True).outcome == "failed"
        assert (tmp_path / "calls").read_text() == "called\n"
    finally:
        docker_checks.close()
        local_only.close()


CAPTURED_SMI_FAILURE = CommandResult(
    ("nvidia-smi", "-q"),
    4,
    "Failed to initialize NVML: Insufficient Permissions\n",  # driver 580, files of mode 0600
)


@pytest.mark.parametrize(
    ("smi", "cause", "fix"),
    [
        (None, "host_driver_unavailable", "Install the NVIDIA driver"),
        (
            CommandResult(("nvidia-smi", "-q"), None, missing=True),
            "host_driver_unavailable",
            "Install the NVIDIA driver",
        ),
        (CAPTURED_SMI_FAILURE, "driver_not_loaded", "ls -l /dev/nvidia*"),
    ],
)
def test_local_experiments_hear_why_their_gpus_cannot_be_judged(
    smi: CommandResult | None, cause: str, fix: str
) -> None:
    """No host-driver check runs for a study of local experiments alone: gpu-idle warns, once,
    with the diagnosis and its fix; the other checks skip. With Docker, host-driver says it."""
    facts = host(None, smi=smi)
    verdicts = {cid: judge(facts, (), local=True) for cid, judge in CHECKS.items()}
    idle = verdicts.pop("gpu-idle")
    assert idle.outcome == "warning" and idle.finding is not None
    assert idle.finding.cause == cause and idle.finding.fix.startswith(fix)
    assert idle.finding.message.startswith("the GPUs to measure cannot be judged: ")
    assert {v.outcome for v in verdicts.values()} == {"skipped"}
    assert measurement.gpu_idle(facts, ()).outcome == "skipped"


@pytest.mark.parametrize("local", [True, False])
def test_gpus_the_host_does_not_have_fail_for_every_runner_kind(local: bool) -> None:
    verdict = measurement.gpu_idle(host(P100), (0, 7), local=local)
    assert verdict.outcome == "failed" and verdict.finding is not None
    assert verdict.finding.cause == "no_devices"
    assert verdict.finding.message == "GPU 7 is not on this host (it has GPU 0, 1)"
    assert verdict.details["gpus_not_on_host"] == [7] and verdict.details["host_gpus"] == [0, 1]
    assert "nvidia-smi -L" in verdict.finding.fix
    # the others judge the GPUs the host has, or skip when it has none of them
    assert measurement.persistence_mode(host(P100), (0, 7), local=local).outcome != "skipped"
    assert measurement.persistence_mode(host(P100), (7,), local=local).outcome == "skipped"
