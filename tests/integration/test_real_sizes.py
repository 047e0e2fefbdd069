"""Hosts and images of real size: what llem parses is read whole (DESIGN §10).

An 8-GPU host's `nvidia-smi -q` is about 110 kB and a 16-GPU host's about 220 kB (the fake
prints each GPU in the layout of the real H200 capture); an image's `docker image inspect`
grows with its labels. Cut to a head and a tail, the first counted 5 GPUs of 8, and the
second did not parse and sent llem to pull an image that was there.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from testbed import (
    Engine,
    HostTools,
    ProductRunner,
    RecordingSocket,
    ScenarioSetter,
    server_gpus,
)
from testbed.scenario import GpuProcess

IMAGE = "llem-test/sizes:1"
LABELLED = "llem-test/labelled:1"
TIER3 = (
    "clock-events",
    "energy-counter",
    "gpu-health",
    "gpu-idle",
    "mig-mode",
    "persistence-mode",
    "power-limit",
)
TRAINER = GpuProcess(pid=4242, name="python3", used_mib=40960)
# Four labels of 30 000 characters: over 100 kB of metadata (and each under the 128 KiB that
# one argument of `docker import --change` may hold).
LABELS = {f"org.example.manifest.{n}": f"{n}" * 30_000 for n in range(4)}


@pytest.fixture(scope="module")
def images(gpu_engine: Engine) -> None:
    gpu_engine.build_image(IMAGE)
    gpu_engine.build_image(LABELLED, env={"NVIDIA_REQUIRE_CUDA": "cuda>=12.0"}, labels=LABELS)


@pytest.fixture
def recorder(gpu_engine: Engine) -> Iterator[RecordingSocket]:
    with RecordingSocket(gpu_engine.unix_socket) as recording:
        yield recording


def preflight(
    run_product: ProductRunner, host_tools: HostTools, *args: str, docker_host: str | None = None
) -> tuple[int, dict[str, Any], str]:
    """`llem preflight ARGS --json r.json`: exit status, report, and everything it printed."""
    report = host_tools.work / "r.json"
    report.unlink(missing_ok=True)
    env = host_tools.env(docker_host=docker_host) if docker_host else None
    result = run_product(["llem", "preflight", *args, "--json", "r.json"], env=env)
    assert report.is_file(), f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.returncode, json.loads(report.read_text()), result.stdout + result.stderr


def checks_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


@pytest.mark.parametrize("count", [8, 16])
def test_every_gpu_of_a_large_host_is_seen(
    run_product: ProductRunner,
    host_tools: HostTools,
    scenario: ScenarioSetter,
    images: None,
    count: int,
) -> None:
    gpus = server_gpus(count)
    scenario(gpus=gpus)
    code, report, output = preflight(run_product, host_tools, "--image", IMAGE)
    assert code == 0, output
    checks = checks_of(report)
    uuids = [g.uuid for g in gpus]
    host = checks["host-driver"]["details"]["gpus"]
    assert [(g["index"], g["uuid"]) for g in host] == list(enumerate(uuids))
    probe = checks[f"gpu-in-container[{IMAGE}]"]
    assert probe["outcome"] == "passed", probe
    assert [(g["index"], g["uuid"]) for g in probe["details"]["gpus"]] == list(enumerate(uuids))
    assert probe["reason"].startswith(f"{count} GPU(s): NVIDIA H200"), probe
    for check_id in TIER3:
        assert checks[check_id]["outcome"] == "passed", checks[check_id]
    listed = checks["gpu-idle"]["details"]["gpus"]
    assert [(g["index"], g["uuid"]) for g in listed] == list(enumerate(uuids))
    assert [g["uuid"] for g in report["host"]["gpus"]] == uuids


def busy_gpu_14(scenario: ScenarioSetter, host_tools: HostTools, runner: str) -> None:
    """16 GPUs, a training job on GPU 14, and a study that measures GPU 14 with ``runner``."""
    gpus = list(server_gpus(16))
    gpus[14] = dataclasses.replace(gpus[14], processes=(TRAINER,), utilization_pct=97)
    scenario(gpus=tuple(gpus))
    (host_tools.work / "w.py").write_text("")
    (host_tools.work / "study.yaml").write_text(
        f"name: late\nrunners: {{vllm: '{runner}'}}\ngpus: [14]\n"
        "experiments:\n  - {model: m, backend: vllm, command: [python3, w.py]}\n"
    )


def test_a_busy_gpu_late_in_a_16_gpu_host_is_busy_not_missing(
    run_product: ProductRunner,
    host_tools: HostTools,
    scenario: ScenarioSetter,
    images: None,
) -> None:
    busy_gpu_14(scenario, host_tools, f"docker:{IMAGE}")
    code, report, output = preflight(run_product, host_tools, "study.yaml")
    assert code == 1, output
    assert [(f["id"], f["cause"]) for f in report["failures"]] == [("gpu-idle", "gpu_busy")]
    [failure] = report["failures"]
    assert "GPU 14" in failure["message"] and "PID 4242 python3" in failure["message"], failure
    details = checks_of(report)["gpu-idle"]["details"]
    assert [g["index"] for g in details["gpus"]] == [14]
    assert "gpus_not_on_host" not in details
    assert "not on this host" not in output


def test_a_local_study_on_a_busy_gpu_late_in_a_16_gpu_host(
    run_product: ProductRunner, host_tools: HostTools, scenario: ScenarioSetter
) -> None:
    """The measurement checks alone (no container): the same GPU, the same finding."""
    busy_gpu_14(scenario, host_tools, "local")
    result = run_product(["llem", "run", "study.yaml", "--dry-run"])
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("Docker pre-flight failed: 1 issue(s) found\n"), result.stderr
    assert "  1. [gpu-idle] " in result.stderr and "PID 4242 python3" in result.stderr
    assert "GPU 14" in result.stderr and "not on this host" not in result.stderr


def test_an_image_with_over_100_kb_of_labels_is_found_not_pulled(
    run_product: ProductRunner,
    host_tools: HostTools,
    recorder: RecordingSocket,
    images: None,
) -> None:
    code, report, output = preflight(
        run_product, host_tools, "--image", LABELLED, docker_host=recorder.docker_host
    )
    assert code == 0, output
    checks = checks_of(report)
    compat = checks[f"cuda-compat[{LABELLED}]"]
    assert compat["outcome"] == "passed", compat
    assert compat["details"]["required_cuda"] == "12.0", compat
    assert checks[f"gpu-in-container[{LABELLED}]"]["outcome"] == "passed"
    pulls = [r for r in recorder.requests if r.startswith("POST /images/create")]
    assert pulls == [], recorder.requests
    assert any(r.startswith(f"GET /images/{LABELLED}/json") for r in recorder.requests)
