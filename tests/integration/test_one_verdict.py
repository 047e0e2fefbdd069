"""One question, one verdict: `llem preflight STUDY`, `llem run --dry-run STUDY` and `pytest
--llem-preflight --llem-config STUDY` run the same checks, with the same outcomes and exit
status, for every shape of study; and the GPU probe makes the experiment's own GPU request."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from testbed import Engine, GpuScenario, HostTools, ProductRunner, ScenarioSetter
from testbed.scenario import GpuProcess

IMAGE = "llem-test/verdict:1"
TIER1 = ["docker-cli", "docker-daemon", "host-driver", "nvidia-toolkit"]
TIER3 = [
    "clock-events",
    "energy-counter",
    "gpu-health",
    "gpu-idle",
    "mig-mode",
    "persistence-mode",
    "power-limit",
]
LOCAL = "{model: gpt2, backend: pytorch, command: [python3, -c, 'pass']}"
DOCKER = "{model: m, backend: vllm}"


@pytest.fixture(scope="module")
def images(gpu_engine: Engine) -> None:
    gpu_engine.build_image(IMAGE)


@pytest.fixture(autouse=True)
def _healthy_engine(gpu_engine: Engine) -> Iterator[None]:
    gpu_engine.set_scenario(GpuScenario())
    yield
    gpu_engine.set_scenario(GpuScenario())


def study(*experiments: str, extra: str = "") -> str:
    lines = "".join(f"  - {e}\n" for e in experiments)
    return (
        f"name: verdict\nrunners: {{vllm: 'docker:{IMAGE}', pytorch: local}}\n"
        f"docker: {{probe_cache_s: 0}}\n{extra}experiments:\n{lines}"
    )


def three_ways(
    run_product: ProductRunner,
    host_tools: HostTools,
    body: str,
    env: Mapping[str, str] | None = None,
) -> dict[str, tuple[int, dict[str, Any] | None, str]]:
    """(exit status, JSON report, stderr) of each way of asking about the study."""
    path = host_tools.work / "study.yaml"
    path.write_text(body)
    found: dict[str, tuple[int, dict[str, Any] | None, str]] = {}
    for way, args, json_path in (
        ("llem preflight", ["llem", "preflight", str(path), "--json", "pre.json"], "pre.json"),
        ("llem run --dry-run", ["llem", "run", "--dry-run", str(path)], None),
        (
            "pytest",
            ["pytest", "--llem-preflight", "--llem-config", str(path), "--llem-json", "py.json"],
            "py.json",
        ),
    ):
        if json_path:
            (host_tools.work / json_path).unlink(missing_ok=True)
        proc = run_product(args, env)
        report = None
        if json_path:
            report = json.loads((host_tools.work / json_path).read_text())
        found[way] = (proc.returncode, report, proc.stdout + proc.stderr)
    return found


def outcomes(report: dict[str, Any] | None) -> dict[str, str]:
    assert report is not None
    return {c["id"]: c["outcome"] for c in report["checks"]}


def agree(found: dict[str, tuple[int, dict[str, Any] | None, str]]) -> dict[str, Any]:
    """The three agree on the exit status; the two JSON reports on every check's outcome and
    the status; the dry run's numbered report is the same text. Returns llem preflight's."""
    codes = {way: code for way, (code, _, _) in found.items()}
    assert len(set(codes.values())) == 1, (codes, {w: t[-3000:] for w, (_, _, t) in found.items()})
    pre, py = found["llem preflight"][1], found["pytest"][1]
    assert pre is not None and py is not None
    assert outcomes(pre) == outcomes(py)
    assert pre["status"] == py["status"]
    assert [f["id"] for f in pre["failures"]] == [f["id"] for f in py["failures"]]
    for failure in pre["failures"]:
        assert f"[{failure['id']}] {failure['message']}" in found["llem run --dry-run"][2]
    return pre


def test_a_local_only_study_gets_the_measurement_tier_alone(
    run_product: ProductRunner, host_tools: HostTools, images: None
) -> None:
    report = agree(three_ways(run_product, host_tools, study(LOCAL)))
    assert outcomes(report) == {cid: "passed" for cid in TIER3}
    assert report["status"] == "passed"


def test_a_docker_study_gets_every_tier_and_probes_its_own_request(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    report = agree(three_ways(run_product, host_tools, study(DOCKER, extra="gpus: [1]\n")))
    tier2 = [f"cuda-compat[{IMAGE}]", f"gpu-in-container[{IMAGE}]"]
    assert outcomes(report) == {cid: "passed" for cid in [*TIER1, *tier2, *TIER3]}
    probe = next(c for c in report["checks"] if c["id"] == f"gpu-in-container[{IMAGE}]")
    assert probe["details"]["gpu_request"] == "--gpus device=1"
    [seen] = probe["details"]["gpus"]  # GPU 1 alone, by its UUID
    assert seen["uuid"] == GpuScenario().gpus[1].uuid


def test_a_mixed_study_gets_both_tiers(
    run_product: ProductRunner, host_tools: HostTools, images: None
) -> None:
    report = agree(three_ways(run_product, host_tools, study(DOCKER, LOCAL)))
    assert set(outcomes(report)) == {
        *TIER1,
        f"cuda-compat[{IMAGE}]",
        f"gpu-in-container[{IMAGE}]",
    } | set(TIER3)


def test_a_study_that_skips_the_preflight_says_so_everywhere(
    run_product: ProductRunner, host_tools: HostTools, images: None
) -> None:
    found = three_ways(
        run_product, host_tools, study(DOCKER, extra="execution: {skip_preflight: true}\n")
    )
    report = agree(found)
    assert report["status"] == "skipped" and report["checks"] == []
    assert {code for code, _, _ in found.values()} == {0}


@pytest.mark.parametrize("experiment", [DOCKER, LOCAL], ids=["docker", "local"])
def test_gpus_the_host_lacks_fail_every_way(
    run_product: ProductRunner, host_tools: HostTools, images: None, experiment: str
) -> None:
    found = three_ways(run_product, host_tools, study(experiment, extra="gpus: [7]\n"))
    report = agree(found)
    assert found["llem preflight"][0] == 1
    [failure] = report["failures"]
    assert failure["cause"] == "no_devices"
    assert failure["message"] == "GPU 7 is not on this host (it has GPU 0, 1)"
    assert failure["id"] == (f"gpu-in-container[{IMAGE}]" if experiment == DOCKER else "gpu-idle")


def test_each_gpu_request_of_an_image_is_probed_once(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    """Two experiments of one image on GPU 0 and GPU 1: two probes, each its own request."""
    body = study(
        "{model: a, backend: vllm, gpus: [0]}",
        "{model: b, backend: vllm, gpus: [1]}",
        "{model: c, backend: vllm, gpus: [1]}",
    )
    since = __import__("time").time()
    found = three_ways(run_product, host_tools, body)
    report = agree(found)
    probes = {
        c["id"]: c["details"]["gpu_request"]
        for c in report["checks"]
        if c["id"].startswith("gpu-in-container")
    }
    assert probes == {
        f"gpu-in-container[{IMAGE} device=0]": "--gpus device=0",
        f"gpu-in-container[{IMAGE} device=1]": "--gpus device=1",
    }
    asked = sorted(
        call["env"].get("NVIDIA_VISIBLE_DEVICES", "") for call in gpu_engine.hook_calls(since)
    )
    assert asked == ["0", "0", "0", "1", "1", "1"]  # two probes for each of the three ways


def test_llem_preflight_takes_skip_check_and_gpus(
    run_product: ProductRunner, host_tools: HostTools, images: None
) -> None:
    args = ["llem", "preflight", "--image", IMAGE, "--gpus", "1", "--skip-check", "mig-mode"]
    proc = run_product([*args, "--json", "r.json", "--no-cache"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(Path(host_tools.work / "r.json").read_text())
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["mig-mode"]["outcome"] == "skipped"
    assert checks[f"gpu-in-container[{IMAGE}]"]["details"]["gpu_request"] == "--gpus device=1"
    assert [g["index"] for g in checks["gpu-idle"]["details"]["gpus"]] == [1]


def test_a_mixed_study_on_a_remote_daemon_measures_its_local_gpus(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    scenario: ScenarioSetter,
    images: None,
) -> None:
    """The containers go to a tcp:// daemon, the local experiment runs on this machine's GPU
    1, which is busy: the measurement tier judges this machine's GPU 1 and fails."""
    healthy = GpuScenario()
    busy = dataclasses.replace(
        healthy.gpus[1], processes=(GpuProcess(4242, "python3 train.py"),), utilization_pct=97
    )
    scenario(gpus=(healthy.gpus[0], busy))
    env = host_tools.env(docker_host=gpu_engine.enable_tcp())
    local_on_1 = "{model: gpt2, backend: pytorch, command: [python3, -c, 'pass'], gpus: [1]}"
    report = agree(three_ways(run_product, host_tools, study(DOCKER, local_on_1), env))
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["host-driver"]["outcome"] == "skipped"  # the remote daemon's host is far
    assert checks[f"gpu-in-container[{IMAGE}]"]["outcome"] == "passed"
    [failure] = report["failures"]
    assert (failure["id"], failure["cause"]) == ("gpu-idle", "gpu_busy")
    assert "PID 4242" in failure["message"]
    assert [g["index"] for g in checks["gpu-idle"]["details"]["gpus"]] == [1]
