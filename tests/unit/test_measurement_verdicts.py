"""Tier 3 judgements over real `nvidia-smi -q` layouts: no Docker, no subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest
from testbed.captures import verbatim, with_value

from pytest_llem.domain import measurement
from pytest_llem.domain.records import CommandResult, Endpoint, HostFacts
from pytest_llem.domain.report import CheckResult

H200 = "captured/h200-580.159.04_smi-q.txt"
H200_BUSY = "captured/h200-580.159.04_smi-q_busy.txt"
H200_CONTEXT = "captured/h200-580.159.04_smi-q_context.txt"
P100 = "assembled/nvidia-smi-q_470.256.02_2x-tesla-p100.txt"
A100_MIG = "assembled/nvidia-smi-q_535.261.03_a100-mig.txt"
RTX_DESKTOP = "assembled/nvidia-smi-q_550.163.01_rtx-4070-desktop.txt"
# Real outputs of public sources (each file names its own).
V100_470 = "smi-q/nvidia-smi-q_470.129.06_v100-pcie-32gb.txt"
GTX680_470 = "smi-q/nvidia-smi-q_470.256.02_gtx-680.txt"
A100_535 = "smi-q/nvidia-smi-q_535.129.03_8x-a100-sxm4-40gb.txt"
V100_550 = "smi-q/nvidia-smi-q_550.127.05_8x-v100-sxm2-16gb.txt"
H200_550 = "smi-q/nvidia-smi-q_550.90.12_h200.txt"

CHECKS = {
    "gpu-idle": measurement.gpu_idle,
    "persistence-mode": measurement.persistence_mode,
    "mig-mode": measurement.mig_mode,
    "clock-events": measurement.clock_events,
    "energy-counter": measurement.energy_counter,
    "power-limit": measurement.power_limit,
    "gpu-health": measurement.gpu_health,
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
    assert others == ["passed"] * (len(CHECKS) - 1)


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
        "power-limit": "passed",
        "gpu-health": "skipped",  # this layout has no ECC, retired pages or remapped rows
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


# -- power-limit and gpu-health on the real layouts of drivers 470, 535, 550 and 580 -----------

# (file, its GPUs, where the current power limit is, the default in W)
LAYOUTS = {
    "470-v100": (V100_470, 1, ("Power Readings", "Power Limit"), 250.0),
    "535-a100": (A100_535, 8, ("GPU Power Readings", "Current Power Limit"), 400.0),
    "550-v100": (V100_550, 8, ("GPU Power Readings", "Current Power Limit"), 300.0),
    "550-h200": (H200_550, 1, ("GPU Power Readings", "Current Power Limit"), 700.0),
    "580-h200": (H200, 1, ("GPU Power Readings", "Current Power Limit"), 700.0),
}
GPU_MEMORY_ERRORS_URL = "https://docs.nvidia.com/deploy/a100-gpu-mem-error-mgmt/index.html"


def injected(path: str, *changes: tuple[int, tuple[str, ...], str]) -> HostFacts:
    """The real output at ``path`` with values injected: (GPU section, label path, value)."""
    text = verbatim(path)
    for gpu, where, value in changes:
        text = with_value(text, gpu, where, value)
    return host(smi=CommandResult(("nvidia-smi", "-q"), 0, text))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_healthy_real_layouts_pass(layout: str) -> None:
    path, count, _, default = LAYOUTS[layout]
    limit = measurement.power_limit(host(path))
    assert limit.outcome == "passed", limit
    assert limit.reason.startswith("power limit at its default on GPU 0")
    health = measurement.gpu_health(host(path))
    assert health.outcome == "passed", health
    assert health.reason == "no memory fault on " + ", ".join(f"GPU {i}" for i in range(count))
    assert health.details["gpus"][0]["default_power_limit"] == f"{default:.2f} W"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_lowered_power_limit_warns_naming_both_in_watts(layout: str) -> None:
    path, count, where, default = LAYOUTS[layout]
    gpu = count - 1  # the last GPU of the host
    verdict = measurement.power_limit(injected(path, (gpu, where, "150.00 W")))
    assert verdict.outcome == "warning" and verdict.finding is not None
    assert verdict.finding.cause == "power_limit_changed"
    assert verdict.finding.message.startswith(
        f"GPU {gpu}: power limit 150.00 W, default {default:.2f} W; "
    )
    assert verdict.finding.fix.startswith(f"sudo nvidia-smi -i {gpu} -pl {default:g} ")
    assert verdict.finding.url == "https://docs.nvidia.com/deploy/nvidia-smi/index.html"
    assert verdict.details["power_limits"] == {str(gpu): {"current_w": 150.0, "default_w": default}}
    # a limit raised above the default (a board allowing more) warns the same way
    raised = measurement.power_limit(injected(path, (gpu, where, f"{default + 50:.2f} W")))
    assert raised.outcome == "warning"


def test_several_changed_limits_are_named_each_with_its_command() -> None:
    where = LAYOUTS["535-a100"][2]
    verdict = measurement.power_limit(
        injected(A100_535, (1, where, "250.00 W"), (6, where, "312.50 W"))
    )
    assert verdict.finding is not None
    assert verdict.finding.message.startswith(
        "GPU 1: power limit 250.00 W, default 400.00 W; "
        "GPU 6: power limit 312.50 W, default 400.00 W; "
    )
    assert verdict.finding.fix.startswith(
        "sudo nvidia-smi -i 1 -pl 400 && sudo nvidia-smi -i 6 -pl 400 "
    )


DOUBLE_BIT = ("ECC Errors", "Volatile", "Double Bit")
# (layout, GPU, injected values, the counter the finding names)
FAULTS = [
    pytest.param(
        V100_470, 0,
        [((*DOUBLE_BIT, "Device Memory"), "1"), ((*DOUBLE_BIT, "Total"), "1")],
        "volatile uncorrectable ECC errors (ECC Errors / Volatile / Double Bit / Total: 1)",
        id="470-volatile-double-bit",
    ),
    pytest.param(
        V100_470, 0, [(("Retired Pages", "Pending Page Blacklist"), "Yes")],
        "pages pending retirement (Retired Pages / Pending Page Blacklist: Yes)",
        id="470-pending-page",
    ),
    pytest.param(
        A100_535, 3,
        [(("Remapped Rows", "Uncorrectable Error"), "1"), (("Remapped Rows", "Pending"), "Yes")],
        "pending row remapping (Remapped Rows / Pending: Yes)",
        id="535-pending-remap",
    ),
    pytest.param(
        A100_535, 7, [(("Remapped Rows", "Remapping Failure Occurred"), "Yes")],
        "row remapping failure (Remapped Rows / Remapping Failure Occurred: Yes)",
        id="535-remap-failure",
    ),
    pytest.param(
        A100_535, 2, [(("ECC Errors", "Volatile", "DRAM Uncorrectable"), "3")],
        "volatile uncorrectable ECC errors (ECC Errors / Volatile / DRAM Uncorrectable: 3)",
        id="535-volatile-dram",
    ),
    pytest.param(
        V100_550, 5,
        [((*DOUBLE_BIT, "L2 Cache"), "2"), ((*DOUBLE_BIT, "Total"), "2")],
        "volatile uncorrectable ECC errors (ECC Errors / Volatile / Double Bit / Total: 2)",
        id="550-volatile-double-bit",
    ),
    pytest.param(
        V100_550, 4, [(("Retired Pages", "Pending Page Blacklist"), "Yes")],
        "pages pending retirement (Retired Pages / Pending Page Blacklist: Yes)",
        id="550-pending-page",
    ),
    pytest.param(
        H200_550, 0, [(("Remapped Rows", "Pending"), "Yes")],
        "pending row remapping (Remapped Rows / Pending: Yes)",
        id="550-pending-remap",
    ),
    pytest.param(
        H200_550, 0, [(("Remapped Rows", "Remapping Failure Occurred"), "Yes")],
        "row remapping failure (Remapped Rows / Remapping Failure Occurred: Yes)",
        id="550-remap-failure",
    ),
    pytest.param(
        H200_550, 0, [(("ECC Errors", "Volatile", "SRAM Uncorrectable Parity"), "1")],
        "volatile uncorrectable ECC errors (ECC Errors / Volatile / SRAM Uncorrectable Parity: 1)",
        id="550-volatile-sram",
    ),
    pytest.param(
        H200, 0, [(("Remapped Rows", "Pending"), "Yes")],
        "pending row remapping (Remapped Rows / Pending: Yes)",
        id="580-pending-remap",
    ),
    pytest.param(
        H200, 0, [(("Remapped Rows", "Remapping Failure Occurred"), "Yes")],
        "row remapping failure (Remapped Rows / Remapping Failure Occurred: Yes)",
        id="580-remap-failure",
    ),
    pytest.param(
        H200, 0, [(("ECC Errors", "Volatile", "DRAM Uncorrectable"), "1")],
        "volatile uncorrectable ECC errors (ECC Errors / Volatile / DRAM Uncorrectable: 1)",
        id="580-volatile-dram",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("path", "gpu", "values", "named"), FAULTS)
def test_each_memory_fault_fails_gpu_health(
    path: str, gpu: int, values: list[tuple[tuple[str, ...], str]], named: str
) -> None:
    verdict = measurement.gpu_health(injected(path, *((gpu, w, v) for w, v in values)))
    assert verdict.outcome == "failed" and verdict.finding is not None
    assert verdict.finding.cause == "gpu_hardware_fault"
    assert verdict.finding.message == f"memory fault on the GPU(s) to measure: GPU {gpu}: {named}"
    fix = verdict.finding.fix
    assert fix.startswith(f"Drain GPU {gpu} ") and f"sudo nvidia-smi -r -i {gpu}," in fix
    assert verdict.finding.url == GPU_MEMORY_ERRORS_URL
    [found] = verdict.details["faults"][str(gpu)]
    assert f"{found['fault']} ({found['counters']})" == named


def test_several_faults_on_several_gpus() -> None:
    verdict = measurement.gpu_health(
        injected(
            A100_535,
            (1, ("Remapped Rows", "Pending"), "Yes"),
            (1, ("ECC Errors", "Volatile", "DRAM Uncorrectable"), "2"),
            (1, ("ECC Errors", "Volatile", "SRAM Uncorrectable"), "1"),
            (4, ("Remapped Rows", "Remapping Failure Occurred"), "Yes"),
        )
    )
    assert verdict.finding is not None
    assert verdict.finding.message == (
        "memory fault on the GPU(s) to measure: GPU 1: pending row remapping (Remapped Rows / "
        "Pending: Yes), volatile uncorrectable ECC errors (ECC Errors / Volatile / SRAM "
        "Uncorrectable: 1, ECC Errors / Volatile / DRAM Uncorrectable: 2); GPU 4: row "
        "remapping failure (Remapped Rows / Remapping Failure Occurred: Yes)"
    )
    assert "sudo nvidia-smi -r -i 1 && sudo nvidia-smi -r -i 4" in verdict.finding.fix
    assert "-i 1,4`" in verdict.finding.fix
    assert verdict.details["memory"]["1"]["volatile_uncorrectable_ecc"] == {
        "Volatile / SRAM Uncorrectable": 1,
        "Volatile / DRAM Uncorrectable": 2,
    }


def test_gpus_outside_the_study_are_not_judged() -> None:
    """GPU 5 has a pending remap, GPU 6 a lowered limit; a study of GPUs 0 and 1 sees neither."""
    facts = injected(
        A100_535,
        (5, ("Remapped Rows", "Pending"), "Yes"),
        (6, ("GPU Power Readings", "Current Power Limit"), "250.00 W"),
    )
    assert measurement.gpu_health(facts, (0, 1)).outcome == "passed"
    assert measurement.power_limit(facts, (0, 1)).outcome == "passed"
    health = measurement.gpu_health(facts, (5,))
    assert health.outcome == "failed" and health.finding is not None
    assert health.finding.message.startswith("memory fault on the GPU(s) to measure: GPU 5: ")
    assert [g["index"] for g in health.details["gpus"]] == [5]
    limit = measurement.power_limit(facts, (1, 6))
    assert limit.finding is not None
    assert limit.finding.message.startswith("GPU 6: power limit 250.00 W, default 400.00 W;")
    assert "GPU 1" not in limit.finding.message
    assert measurement.gpu_health(facts, (6,)).outcome == "passed"


def test_what_a_driver_does_not_report_is_no_finding() -> None:
    """Driver 470, GTX 680: the power limits and every memory counter print N/A."""
    limit = measurement.power_limit(host(GTX680_470))
    assert limit.outcome == "skipped"
    assert limit.reason == "nvidia-smi -q shows no current and default power limit for GPU 0"
    health = measurement.gpu_health(host(GTX680_470))
    assert health.outcome == "skipped"
    assert health.reason.startswith("nvidia-smi -q reports no memory error counters")
    # N/A where a value could be: a pre-Ampere GPU's `Remapped Rows : N/A`, an Ampere GPU's
    # `Pending Page Blacklist : N/A` (both real) and an N/A remap flag are not reported
    assert measurement.gpu_health(host(V100_470)).outcome == "passed"
    na = injected(A100_535, (0, ("Remapped Rows", "Pending"), "N/A"))
    assert measurement.gpu_health(na, (0,)).outcome == "passed"


def test_historic_and_corrected_errors_pass() -> None:
    """The real driver 470 V100 has a retired page and aggregate single-bit errors; corrected
    and lifetime counts, and rows remapped before (no longer pending), are no fault."""
    assert measurement.gpu_health(host(V100_470)).outcome == "passed"
    facts = injected(
        A100_535,
        (0, ("ECC Errors", "Volatile", "DRAM Correctable"), "12"),
        (0, ("ECC Errors", "Aggregate", "DRAM Uncorrectable"), "3"),
        (0, ("Remapped Rows", "Uncorrectable Error"), "3"),
    )
    assert measurement.gpu_health(facts).outcome == "passed"


def test_the_new_checks_are_skipped_for_a_remote_daemon() -> None:
    facts = host(H200, url="tcp://gpu-box:2376")
    for judge in (measurement.power_limit, measurement.gpu_health):
        verdict = judge(facts, ())
        assert verdict.outcome == "skipped" and "remote daemon" in verdict.reason
