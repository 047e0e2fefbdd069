"""The attestation of each experiment's measurement window, end to end: the host's GPUs change
while the experiment runs (`testbed.live`: the fake `nvidia-smi -q`, in the real driver 580
layout, reads its scenario from a file that the experiment's own command rewrites), and
`llem run` judges the window from its samples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from testbed import Engine, HostTools, ProductRunner, build_workload_image
from testbed.live import GPU_ENV, LiveGpus, experiment_script

INTERVAL = "execution: {attest_interval_s: 0.2}\n"
WORKLOAD = "llem-test/attest-workload:1"
# The experiment's own process holds a context on GPU 0 for its whole life.
ON_GPU_0 = ["/usr/bin/env", f"{GPU_ENV}=0", sys.executable]


@pytest.fixture
def live(host_tools: HostTools) -> LiveGpus:
    """A host without Docker (local experiments only), its nvidia-smi live."""
    host_tools.use_docker(None)
    return host_tools.go_live()


def write_study(host_tools: HostTools, live: LiveGpus, *steps: str, extra: str = INTERVAL) -> None:
    """One local experiment per ``steps`` (Python run by the experiment, see
    `experiment_script`), ids e1, e2..."""
    lines = []
    for n, body in enumerate(steps, 1):
        (host_tools.work / f"e{n}.py").write_text(experiment_script(live, body))
        command = json.dumps([*ON_GPU_0, f"e{n}.py"])
        lines.append(f"  - {{id: e{n}, model: gpt2, backend: pytorch, command: {command}}}\n")
    (host_tools.work / "study.yaml").write_text(
        f"name: attest\n{extra}experiments:\n{''.join(lines)}"
    )


def llem_run(
    run_product: ProductRunner, host_tools: HostTools, *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    result = run_product(
        ["llem", "run", "study.yaml", "--output", "out", *args], env=host_tools.env()
    )
    manifest: dict[str, Any] = json.loads((host_tools.work / "out" / "manifest.json").read_text())
    return result, manifest


def attestation_of(manifest: dict[str, Any], n: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = manifest["experiments"][n]["attestation"]
    return found


def causes(attestation: dict[str, Any]) -> list[tuple[str, int | None]]:
    return [(r["cause"], r["gpu"]) for r in attestation["reasons"]]


# A sample or two while nothing changes, then the change, seen by two samples at least.
WAIT = "gpus.wait_queries(2)\n"


def test_an_undisturbed_experiment_is_clean(
    run_product: ProductRunner, host_tools: HostTools, live: LiveGpus
) -> None:
    """Its own process on GPU 0, listed by every sample while it ran, is not foreign."""
    write_study(
        host_tools, live,
        WAIT + "result['listed'] = [p.pid for p in marked_processes().get(0, [])]\n" + WAIT,
    )  # fmt: skip
    result, manifest = llem_run(run_product, host_tools)
    assert result.returncode == 0, result.stderr
    [record] = manifest["experiments"]
    assert record["result"]["pid"] in record["result"]["listed"]
    attestation = attestation_of(manifest)
    assert attestation["status"] == "clean", attestation
    assert attestation["reasons"] == []
    assert attestation["interval_s"] == 0.2
    assert attestation["samples"] >= 6  # before, four samples at least, after
    assert attestation["throttle_us"]["0"]["hw_thermal_slowdown"] == 0
    assert set(attestation["throttle_us"]) == {"0", "1"}  # all GPUs: the study names none
    assert "suspect" not in result.stderr
    # The host block: each GPU's power limit, clocks policy and temperature at the start.
    gpu = manifest["host"]["gpus"][0]
    assert (gpu["power_limit"], gpu["temperature"]) == ("700.00 W", "34 C")
    assert gpu["clocks"]["applications"] == {"Graphics": "1980 MHz", "Memory": "3201 MHz"}


def test_the_hw_thermal_counter_advances(
    run_product: ProductRunner, host_tools: HostTools, live: LiveGpus
) -> None:
    write_study(
        host_tools, live, WAIT + "gpus.change(0, hw_thermal_us=120000, temperature_c=88)\n" + WAIT
    )
    result, manifest = llem_run(run_product, host_tools)
    assert result.returncode == 0, result.stderr  # suspect, not failed: require_clean is off
    attestation = attestation_of(manifest)
    assert attestation["status"] == "suspect"
    assert causes(attestation) == [("gpu_throttled", 0)]
    message = attestation["reasons"][0]["message"]
    assert message.startswith("GPU 0: HW Thermal Slowdown held the clocks down for 0.120 s (")
    assert "first between " in message
    assert attestation["throttle_us"]["0"]["hw_thermal_slowdown"] == 120000
    assert attestation["throttle_us"]["1"]["hw_thermal_slowdown"] == 0
    line = f"llem: suspect measurement: e1: [gpu_throttled] {message}"
    assert line in result.stderr.splitlines(), result.stderr
    assert result.stderr.splitlines()[-1].startswith("llem: 1 of 1 experiment(s) ok; ")


def test_a_foreign_process_that_comes_and_goes(
    run_product: ProductRunner, host_tools: HostTools, live: LiveGpus
) -> None:
    """Neither the snapshot before nor the one after shows it: the samples between do."""
    write_study(
        host_tools, live,
        WAIT
        + "gpus.add_process(1, GpuProcess(31337, 'intruder', used_mib=2048))\n"
        + WAIT
        + "gpus.remove_process(1, 31337)\n"
        + WAIT,
    )  # fmt: skip
    result, manifest = llem_run(run_product, host_tools)
    assert result.returncode == 0, result.stderr
    attestation = attestation_of(manifest)
    assert causes(attestation) == [("gpu_busy", 1)]
    message = attestation["reasons"][0]["message"]
    assert message.startswith("GPU 1: PID 31337 intruder (2048 MiB), not the experiment's, seen ")
    own = manifest["experiments"][0]["result"]["pid"]
    assert str(own) not in json.dumps(attestation["reasons"])
    assert f"llem: suspect measurement: e1: [gpu_busy] {message}" in result.stderr
    # The README shows such an entry: the same keys, the same shape of a reason.
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    sample = json.loads(readme.split('```json\n{"attestation": ', 1)[1].split("}\n```", 1)[0])
    assert sample.keys() == attestation.keys()
    assert sample["reasons"][0].keys() == attestation["reasons"][0].keys()
    assert sample["throttle_us"]["0"].keys() == attestation["throttle_us"]["0"].keys()


def test_the_power_limit_changes(
    run_product: ProductRunner, host_tools: HostTools, live: LiveGpus
) -> None:
    change = WAIT + "gpus.change(0, power_limit_w=450.0)\n" + WAIT
    write_study(host_tools, live, change, extra=INTERVAL + "gpus: [0]\n")
    result, manifest = llem_run(run_product, host_tools)
    assert result.returncode == 0, result.stderr
    attestation = attestation_of(manifest)
    assert causes(attestation) == [("power_limit_changed", 0)]
    assert attestation["reasons"][0]["message"].startswith(
        "GPU 0: power limit 700.00 W at the start, 450.00 W at "
    )
    assert set(attestation["throttle_us"]) == {"0"}  # its GPU alone


def test_require_clean_fails_the_suspect_experiment_and_runs_the_rest(
    run_product: ProductRunner, host_tools: HostTools, live: LiveGpus
) -> None:
    write_study(
        host_tools, live,
        WAIT,
        WAIT + "gpus.change(1, hw_power_brake_us=5000)\n" + WAIT,
        WAIT,
        extra="execution: {attest_interval_s: 0.2, require_clean: true}\n",
    )  # fmt: skip
    result, manifest = llem_run(run_product, host_tools)
    assert result.returncode == 1, result.stderr
    records = manifest["experiments"]
    assert [(r["id"], r["status"], r["attestation"]["status"]) for r in records] == [
        ("e1", "ok", "clean"),
        ("e2", "failed", "suspect"),
        ("e3", "ok", "clean"),
    ]
    failed = records[1]
    assert (failed["exit_status"], failed["cause"]) == (0, "gpu_throttled")
    assert failed["message"].startswith(
        "suspect measurement (execution.require_clean): [gpu_throttled] GPU 1: HW Power Braking "
    )
    assert failed["result"] == {"energy_j": 1.0, "pid": failed["result"]["pid"]}  # kept
    lines = result.stderr.splitlines()
    assert any(
        line.startswith("llem: suspect measurement: e2 (failed: execution.require_clean): ")
        for line in lines
    ), result.stderr
    assert lines[-1].startswith("llem: 2 of 3 experiment(s) ok; ")


def test_attest_false_reads_nothing_and_interval_0_only_before_and_after(
    run_product: ProductRunner, host_tools: HostTools, live: LiveGpus
) -> None:
    body = "time.sleep(0.5)\n"
    write_study(host_tools, live, body, extra="execution: {attest: false}\n")
    result, manifest = llem_run(run_product, host_tools, "--skip-preflight")
    assert result.returncode == 0, result.stderr
    assert attestation_of(manifest) is None
    assert live.queries() == []
    write_study(host_tools, live, body, extra="execution: {attest_interval_s: 0}\n")
    result, manifest = llem_run(run_product, host_tools, "--skip-preflight", "--overwrite")
    assert result.returncode == 0, result.stderr
    assert (attestation_of(manifest)["status"], attestation_of(manifest)["samples"]) == (
        "clean",
        2,
    )
    assert len(live.queries()) == 2


def test_without_nvidia_smi_it_is_unverified(
    run_product: ProductRunner, host_tools: HostTools, live: LiveGpus
) -> None:
    write_study(host_tools, live, "time.sleep(0.3)\n")
    host_tools.use_nvidia_smi("missing")
    result, manifest = llem_run(run_product, host_tools, "--skip-preflight")
    assert result.returncode == 0, result.stderr
    attestation = attestation_of(manifest)
    assert (attestation["status"], causes(attestation)) == (
        "unverified",
        [("host_driver_unavailable", None)],
    )
    assert "nvidia-smi is not on this host's PATH" in attestation["reasons"][0]["message"]
    assert "suspect" not in result.stderr


# -- Docker on a local daemon -------------------------------------------------------------------


@pytest.fixture(scope="module")
def image(gpu_engine: Engine) -> None:
    build_workload_image(gpu_engine, WORKLOAD)


def test_a_containers_own_process_is_its_own_and_another_containers_is_not(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, image: None
) -> None:
    """Its processes are those whose cgroup names its container: a process of its container
    on GPU 0 is its own; one of another container on GPU 1 is foreign, named."""
    live = host_tools.go_live()
    holds = f"{GPU_ENV}=0 sleep 1.5; exec llem-workload"
    (host_tools.work / "study.yaml").write_text(
        f"name: d\nrunners: {{vllm: 'docker:{WORKLOAD}'}}\n{INTERVAL}experiments:\n"
        f"  - {{model: m, backend: vllm, command: [sh, -c, '{holds}']}}\n"
    )
    env = host_tools.env(gpu_engine)
    result = run_product(["llem", "run", "study.yaml", "--output", "out"], env=env)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((host_tools.work / "out" / "manifest.json").read_text())
    assert attestation_of(manifest)["status"] == "clean", attestation_of(manifest)
    assert attestation_of(manifest)["samples"] >= 5
    assert len(live.queries()) >= 5
    # Another container holds GPU 1 meanwhile.
    other = gpu_engine.docker(
        "run", "-d", "--rm", "--name", "llem-test-other", "-e", f"{GPU_ENV}=1", WORKLOAD,
        "sleep", "30",
    ).stdout.strip()  # fmt: skip
    try:
        # (the pre-flight's gpu-idle would refuse the busy host: skipped)
        args = ["llem", "run", "study.yaml", "--output", "out2", "--skip-check", "gpu-idle"]
        result = run_product(args, env=env)
    finally:
        gpu_engine.docker("rm", "-f", other)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((host_tools.work / "out2" / "manifest.json").read_text())
    attestation = attestation_of(manifest)
    assert causes(attestation) == [("gpu_busy", 1)], attestation
    assert (
        " sleep (512 MiB), not the experiment's, seen from "
        in (attestation["reasons"][0]["message"])
    )
