"""Tier 3, measurement readiness, end to end: the fake host's `nvidia-smi -q` in the layout of
a real capture, judged by `pytest --llem-preflight` and by `llem run`."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from testbed import (
    DEFAULT_GPUS,
    Engine,
    GpuScenario,
    HostTools,
    ProductRunner,
    ScenarioSetter,
    build_workload_image,
)
from testbed.preflight import PreflightRun, run_preflight
from testbed.scenario import GpuProcess

IMAGE = "llem-test/measure:1"
WORKLOAD = "llem-test/measure-workload:1"
TIER3 = [
    "clock-events",
    "energy-counter",
    "gpu-health",
    "gpu-idle",
    "mig-mode",
    "persistence-mode",
    "power-limit",
]
DOCKER_CHECKS = ("docker-cli", "docker-daemon", "host-driver", "nvidia-toolkit", "cuda-compat")
FIRST, SECOND = DEFAULT_GPUS
TRAINER = GpuProcess(pid=31337, name="python3", used_mib=20480)
# A local experiment: records the GPUs it was given, writes its result beside its config.
LOCAL_WORKLOAD = """\
import json, os
config = json.load(open(os.environ["LLEM_CONFIG_PATH"]))
seen = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")}
json.dump({"energy_j": 1.0, "env": seen}, open(config["result_path"], "w"))
"""


@pytest.fixture(scope="module")
def images(gpu_engine: Engine) -> None:
    gpu_engine.build_image(IMAGE)
    build_workload_image(gpu_engine, WORKLOAD)


def busy_second_gpu(scenario: ScenarioSetter) -> GpuScenario:
    """A compute process on GPU 1."""
    busy = dataclasses.replace(SECOND, processes=(TRAINER,), utilization_pct=98)
    return scenario(gpus=(FIRST, busy))


def preflight(run_product: ProductRunner, host_tools: HostTools, *args: str) -> PreflightRun:
    return run_preflight(run_product, host_tools.work, "--llem-image", IMAGE, *args)


def local_study(host_tools: HostTools, extra: str = "") -> None:
    (host_tools.work / "w.py").write_text(LOCAL_WORKLOAD)
    (host_tools.work / "study.yaml").write_text(
        f"name: local\n{extra}experiments:\n"
        f"  - {{model: gpt2, backend: pytorch, command: [{sys.executable}, w.py]}}\n"
    )


def manifest_of(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    return data


# -- pytest --llem-preflight -----------------------------------------------------------------


def test_healthy_host_has_no_measurement_finding(
    run_product: ProductRunner, host_tools: HostTools, scenario: ScenarioSetter, images: None
) -> None:
    scenario()
    run = preflight(run_product, host_tools)
    assert run.returncode == 0, run.describe()
    assert {cid: run.outcomes[cid] for cid in TIER3} == dict.fromkeys(TIER3, "passed")
    assert (run.failures, run.warnings) == ([], [])
    gpus = run.check("persistence-mode")["details"]["gpus"]
    assert [(g["index"], g["uuid"], g["persistence_mode"]) for g in gpus] == [
        (0, FIRST.uuid, "Enabled"),
        (1, SECOND.uuid, "Enabled"),
    ]
    assert {g["architecture"] for g in gpus} == {"Hopper"}
    assert "Warnings:" not in run.output and "pre-flight failed" not in run.output


def test_compute_process_on_gpu_1_fails_gpu_idle(
    run_product: ProductRunner, host_tools: HostTools, scenario: ScenarioSetter, images: None
) -> None:
    busy_second_gpu(scenario)
    run = preflight(run_product, host_tools)
    assert run.returncode == 1, run.describe()
    assert run.failure_causes == [(1, "gpu-idle", "gpu_busy")]
    message = run.failure("gpu-idle")["message"]
    assert "GPU 1: PID 31337 python3 (20480 MiB)" in message, message
    assert run.failure("gpu-idle")["details"]["processes"] == [
        {"gpu": 1, "pid": 31337, "type": "C", "name": "python3", "used_memory": "20480 MiB"}
    ]
    lines = run.lines
    header = lines.index("Docker pre-flight failed: 1 issue(s) found")
    assert lines[header + 1].startswith("  1. [gpu-idle] 1 compute process(es)")
    assert lines[header + 2].startswith("     Fix: Stop them (kill 31337)")
    assert lines[header + 2].endswith("— https://docs.nvidia.com/deploy/nvidia-smi/index.html")
    # The README shows this very report.
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    sample = readme.split("```\nDocker pre-flight failed: 1 issue(s) found\n  1. [gpu-idle]", 1)[1]
    sample = "  1. [gpu-idle]" + sample.split("\n```", 1)[0]
    assert lines[header + 1 : header + 3] == sample.splitlines()


@pytest.mark.parametrize(
    ("changes", "check_id", "cause", "words"),
    [
        ({"persistence": False}, "persistence-mode", "persistence_mode_off", "GPU 0"),
        ({"mig": True}, "mig-mode", "mig_enabled", "MIG is enabled on GPU 0"),
        (
            {"clock_events": ("HW Thermal Slowdown",)},
            "clock-events",
            "gpu_throttled",
            "GPU 0: HW Thermal Slowdown",
        ),
        ({}, "energy-counter", "energy_counter_unsupported", "Pascal"),
        (
            {"power_limit_w": 450.0},
            "power-limit",
            "power_limit_changed",
            "GPU 0: power limit 450.00 W, default 700.00 W",
        ),
    ],
    ids=["persistence-off", "mig-on", "thermal-slowdown", "pascal", "power-limit-lowered"],
)
def test_each_measurement_warning(
    run_product: ProductRunner,
    host_tools: HostTools,
    scenario: ScenarioSetter,
    images: None,
    changes: dict[str, Any],
    check_id: str,
    cause: str,
    words: str,
) -> None:
    pascal = {"arch": "6.1"} if check_id == "energy-counter" else {}
    scenario(gpus=(dataclasses.replace(FIRST, **changes), SECOND), **pascal)
    run = preflight(run_product, host_tools)
    assert run.returncode == 0, run.describe()
    assert run.warning_causes == [(check_id, cause)]
    assert words in run.warnings[0]["message"], run.warnings[0]
    assert "Docker pre-flight passed with 1 warning(s)" in run.lines
    assert any(line.startswith(f"  - [{check_id}] ") for line in run.lines)


def test_a_pending_row_remap_fails_llem_preflight(
    run_product: ProductRunner, host_tools: HostTools, scenario: ScenarioSetter, images: None
) -> None:
    """GPU 1 waits for a reset to remap a row; GPU 0 runs at a lowered power limit. `llem
    preflight` fails on the first and warns of the second; `--gpus 0` judges GPU 0 alone."""
    scenario(
        gpus=(
            dataclasses.replace(FIRST, power_limit_w=450.0),
            dataclasses.replace(SECOND, remap_pending=True),
        )
    )
    result = run_product(["llem", "preflight", "--image", IMAGE, "--json", "r.json"])
    assert result.returncode == 1, result.stderr + result.stdout
    report = json.loads((host_tools.work / "r.json").read_text())
    assert [(f["id"], f["cause"]) for f in report["failures"]] == [
        ("gpu-health", "gpu_hardware_fault")
    ]
    assert [(w["id"], w["cause"]) for w in report["warnings"]] == [
        ("power-limit", "power_limit_changed")
    ]
    [failure] = report["failures"]
    assert failure["message"] == (
        "memory fault on the GPU(s) to measure: GPU 1: pending row remapping "
        "(Remapped Rows / Pending: Yes)"
    )
    assert "sudo nvidia-smi -r -i 1" in failure["fix"]
    output = result.stdout + result.stderr
    assert "Docker pre-flight failed: 1 issue(s) found" in output
    assert "  1. [gpu-health] memory fault on the GPU(s) to measure: GPU 1: " in output
    assert "  - [power-limit] GPU 0: power limit 450.00 W, default 700.00 W; " in output
    assert "sudo nvidia-smi -i 0 -pl 700 " in output
    # The study's GPU 0 alone: the fault of GPU 1 is not judged.
    first_only = run_product(
        ["llem", "preflight", "--image", IMAGE, "--gpus", "0", "--json", "r0.json"]
    )
    assert first_only.returncode == 0, first_only.stderr + first_only.stdout
    report = json.loads((host_tools.work / "r0.json").read_text())
    outcomes = {c["id"]: c["outcome"] for c in report["checks"]}
    assert (outcomes["gpu-health"], outcomes["power-limit"]) == ("passed", "warning")


def test_skip_and_gpu_choice(
    run_product: ProductRunner, host_tools: HostTools, scenario: ScenarioSetter, images: None
) -> None:
    busy_second_gpu(scenario)
    skipped = preflight(run_product, host_tools, "--llem-skip", "gpu-idle")
    assert skipped.returncode == 0, skipped.describe()
    assert skipped.check("gpu-idle")["outcome"] == "skipped"
    assert skipped.check("gpu-idle")["reason"] == "skipped by --llem-skip gpu-idle"
    first_only = preflight(run_product, host_tools, "--llem-gpus", "0")
    assert first_only.returncode == 0, first_only.describe()
    details = first_only.check("gpu-idle")["details"]
    assert [g["index"] for g in details["gpus"]] == [0]


# -- llem run ----------------------------------------------------------------------------------


def test_local_only_study_on_a_busy_gpu(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    scenario: ScenarioSetter,
) -> None:
    """No Docker check runs or is reported: there is not even a docker CLI on the PATH."""
    busy_second_gpu(scenario)
    host_tools.use_docker(None)
    local_study(host_tools)
    since = time.time()
    result = run_product(["llem", "run", "study.yaml", "--dry-run"])
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("Docker pre-flight failed: 1 issue(s) found\n")
    assert "  1. [gpu-idle] " in result.stderr and "PID 31337 python3" in result.stderr
    assert not any(f"[{cid}" in result.stderr for cid in DOCKER_CHECKS), result.stderr
    assert "llem: dry run:" not in result.stderr
    assert gpu_engine.created_since(since) == []
    # The study's GPU 0 alone: the busy GPU 1 is not judged.
    local_study(host_tools, extra="gpus: [0]\n")
    result = run_product(["llem", "run", "study.yaml", "--dry-run"])
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("llem: dry run: 001 gpt2 (pytorch, local from default)")


def test_local_run_records_the_host_and_the_skipped_check(
    run_product: ProductRunner, host_tools: HostTools, scenario: ScenarioSetter
) -> None:
    sluggish = dataclasses.replace(FIRST, persistence=False)
    scenario(gpus=(sluggish, dataclasses.replace(SECOND, processes=(TRAINER,))))
    local_study(host_tools, extra="gpus: [1]\n")
    result = run_product(
        ["llem", "run", "study.yaml", "--skip-check", "gpu-idle", "--output", "out"]
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("llem: warning: check gpu-idle skipped (--skip-check)\n")
    manifest = manifest_of(host_tools.work / "out")
    host = manifest["host"]
    assert (host["driver_version"], host["cuda_version"]) == ("550.54.15", "12.4")
    assert host["gpus"] == [
        {
            "index": 1,
            "name": SECOND.name,
            "uuid": SECOND.uuid,
            "architecture": "Hopper",
            "persistence_mode": "Enabled",
            "mig_mode": "Disabled",
            "power_limit": "700.00 W",
            "default_power_limit": "700.00 W",
            "temperature": "34 C",
            "clocks": {
                "applications": {"Graphics": "1980 MHz", "Memory": "3201 MHz"},
                "default_applications": {"Graphics": "1980 MHz", "Memory": "3201 MHz"},
                "auto_boost": None,
            },
        }
    ]
    outcomes = {m["id"]: m["outcome"] for m in host["measurement"]}
    assert outcomes == {**dict.fromkeys(TIER3, "passed"), "gpu-idle": "skipped"}
    assert manifest["skipped_checks"] == [{"id": "gpu-idle", "source": "--skip-check"}]
    [record] = manifest["experiments"]
    assert record["status"] == "ok"
    assert record["result"]["env"] == {
        "CUDA_VISIBLE_DEVICES": "1",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
    # The process that gpu-idle was not asked to see was on its GPU all along.
    reasons = record["attestation"]["reasons"]
    assert [(r["cause"], r["gpu"]) for r in reasons] == [("gpu_busy", 1)]
    assert "llem: suspect measurement: 001: [gpu_busy] GPU 1: PID 31337 python3" in result.stderr


def test_docker_study_gets_only_its_gpus(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    scenario: ScenarioSetter,
    images: None,
) -> None:
    """`gpus: [1]` reaches the container as --gpus "device=1"; the study skips gpu-idle itself,
    and the warning of GPU 0's persistence mode is not the study's concern."""
    scenario(
        gpus=(
            dataclasses.replace(FIRST, persistence=False),
            dataclasses.replace(SECOND, processes=(TRAINER,)),
        )
    )
    (host_tools.work / "study.yaml").write_text(
        f"name: d\nrunners: {{vllm: 'docker:{WORKLOAD}'}}\n"
        "gpus: [1]\nexecution: {skip_checks: [gpu-idle]}\nexperiments:\n"
        "  - {model: m, backend: vllm, command: [sh, -c, 'nvidia-smi -L; exec llem-workload']}\n"
    )
    result = run_product(["llem", "run", "study.yaml", "--output", "out"])
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(
        "llem: warning: check gpu-idle skipped (execution.skip_checks in study.yaml)\n"
    ), result.stderr
    log = (host_tools.work / "out" / "001.log").read_text()
    assert f"GPU 0: {SECOND.name} (UUID: {SECOND.uuid})" in log, log
    assert FIRST.uuid not in log
    manifest = manifest_of(host_tools.work / "out")
    assert [g["index"] for g in manifest["host"]["gpus"]] == [1]
    assert manifest["host"]["driver_version"] == "550.54.15"
    assert manifest["skipped_checks"] == [
        {"id": "gpu-idle", "source": "execution.skip_checks in study.yaml"}
    ]
    assert manifest["experiments"][0]["status"] == "ok"
