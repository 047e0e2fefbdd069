"""Podman studies end to end: a real Podman (private storage and CDI spec directory), GPUs
given through a real CDI spec of fake devices, the product as a subprocess with no Docker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from testbed import GpuScenario, HostTools, run
from testbed.podman import PODMAN, PodmanBed, podman_unavailable_reason
from testbed.workload import WORKLOAD_PATH, WORKLOAD_SCRIPT

if podman_unavailable_reason() is not None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{podman_unavailable_reason()} (CI=true)", pytrace=False)
    pytest.skip(podman_unavailable_reason() or "", allow_module_level=True)

IMAGE = "localhost/llem-test/podman-workload:1"
CUDA_ENV = {"CUDA_VERSION": "12.2.0", "NVIDIA_REQUIRE_CUDA": "cuda>=12.2"}
SCENARIO = GpuScenario()  # driver 550.54.15 (CUDA 12.4), two H100s: the host tools' default


@pytest.fixture(scope="module")
def bed() -> Iterator[PodmanBed]:
    with PodmanBed(SCENARIO) as podman:
        podman.build_image(
            IMAGE, env=CUDA_ENV, cmd=[WORKLOAD_PATH], files={WORKLOAD_PATH: WORKLOAD_SCRIPT}
        )
        yield podman


@pytest.fixture
def podman_host(bed: PodmanBed, host_tools: HostTools) -> Iterator[HostTools]:
    """A healthy Podman host: podman, nvidia-smi and the toolkit on PATH, no docker; a spec
    for both GPUs in /etc/cdi. After the test, no container is left."""
    host_tools.use_docker(None)
    (host_tools.bin / "podman").symlink_to(PODMAN)
    bed.use_spec(bed.cdi_spec())
    yield host_tools
    assert bed.containers() == [], "a container was left behind"


def product(
    bed: PodmanBed,
    host_tools: HostTools,
    args: Sequence[str],
    extra: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`llem ...` or `pytest ...` in the bed's CDI namespace, with the host's tools alone."""
    program, *rest = args
    entry = {
        "llem": [sys.executable, "-m", "pytest_llem"],
        "pytest": [sys.executable, "-m", "pytest"],
    }
    env = host_tools.env(extra={**bed.env, **(extra or {})})
    return run(bed.wrap([*entry[program], *rest]), env, timeout=timeout, cwd=host_tools.work)


def study(host_tools: HostTools, extra: str = "", runner: str = f"podman:{IMAGE}") -> None:
    (host_tools.work / "study.yaml").write_text(
        f"name: pm\nrunners: {{vllm: '{runner}'}}\n{extra}"
        "experiments:\n  - {model: m, backend: vllm}\n"
    )


def preflight(
    bed: PodmanBed, host_tools: HostTools, *args: str, extra: Mapping[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    args = ("llem", "preflight", "study.yaml", "--json", "r.json", *args)
    result = product(bed, host_tools, args, extra)
    report: dict[str, Any] = json.loads((host_tools.work / "r.json").read_text())
    return result, report


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["outcome"] for c in report["checks"]}


def check(report: dict[str, Any], check_id: str) -> dict[str, Any]:
    [found] = [c for c in report["checks"] if c["id"] == check_id]
    return found


def failure(report: dict[str, Any], check_id: str) -> dict[str, Any]:
    [found] = [f for f in report["failures"] if f["id"] == check_id]
    return found


# -- healthy ---------------------------------------------------------------------------------


def test_a_podman_study_passes_and_runs_without_docker(
    bed: PodmanBed, podman_host: HostTools
) -> None:
    assert "docker" not in podman_host.tools()
    study(podman_host)
    result, report = preflight(bed, podman_host)
    assert result.returncode == 0, result.stdout + result.stderr
    seen = outcomes(report)
    assert {k: seen[k] for k in ("podman-cli", "cdi-spec", f"cuda-compat[{IMAGE}]",
                                 f"gpu-in-container[{IMAGE}]")} == dict.fromkeys(
        ("podman-cli", "cdi-spec", f"cuda-compat[{IMAGE}]", f"gpu-in-container[{IMAGE}]"),
        "passed",
    )  # fmt: skip
    assert not {"docker-cli", "docker-daemon", "nvidia-toolkit"} & set(seen)
    probe = check(report, f"gpu-in-container[{IMAGE}]")["details"]
    assert probe["gpu_request"] == "--device nvidia.com/gpu=all"
    assert [g["uuid"] for g in probe["gpus"]] == [g.uuid for g in SCENARIO.gpus]
    spec = check(report, "cdi-spec")["details"]
    assert spec["spec_files"] == ["/etc/cdi/nvidia.yaml"]
    assert spec["spec_driver_versions"] == [SCENARIO.driver_version]

    ran = product(bed, podman_host, ["llem", "run", "study.yaml", "--output", "out"])
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == ""
    manifest = json.loads((podman_host.work / "out" / "manifest.json").read_text())
    [experiment] = manifest["experiments"]
    assert (experiment["status"], experiment["runner"], experiment["image"]) == (
        "ok", "podman", IMAGE,
    )  # fmt: skip
    assert experiment["result"]["energy_j"] == 12.5
    assert experiment["attestation"]["status"] == "clean", experiment["attestation"]
    assert experiment["result"]["config"]["result_path"] == "/run/llem/001_result.json"


def test_gpus_1_probes_that_cdi_device_and_sees_gpu_1_alone(
    bed: PodmanBed, podman_host: HostTools
) -> None:
    study(podman_host, "gpus: [1]\n")
    result, report = preflight(bed, podman_host)
    assert result.returncode == 0, result.stdout + result.stderr
    probe = check(report, f"gpu-in-container[{IMAGE}]")
    assert probe["outcome"] == "passed"
    assert probe["details"]["gpu_request"] == "--device nvidia.com/gpu=1"
    assert [g["uuid"] for g in probe["details"]["gpus"]] == [SCENARIO.gpus[1].uuid]
    assert check(report, "cdi-spec")["details"]["wanted"] == ["nvidia.com/gpu=1"]


def test_the_pytest_front_end_agrees(bed: PodmanBed, podman_host: HostTools) -> None:
    study(podman_host)
    result = product(
        bed, podman_host,
        ["pytest", "--llem-preflight", "-p", "no:cacheprovider", "--llem-config", "study.yaml",
         "--llem-json", "p.json"],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((podman_host.work / "p.json").read_text())
    assert outcomes(report)["cdi-spec"] == "passed"
    assert "podman-cli" in outcomes(report) and "docker-cli" not in outcomes(report)


# -- failures ----------------------------------------------------------------------------------


def test_no_spec_is_cdi_spec_missing_with_the_fix(bed: PodmanBed, podman_host: HostTools) -> None:
    bed.use_spec(None)
    study(podman_host)
    result, report = preflight(bed, podman_host)
    assert result.returncode == 1
    assert [(f["id"], f["cause"]) for f in report["failures"]] == [("cdi-spec", "cdi_spec_missing")]
    found = failure(report, "cdi-spec")
    assert "no CDI spec for nvidia.com/gpu in /etc/cdi, /var/run/cdi" in found["message"]
    assert "sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml" in found["fix"]
    assert "nvidia-ctk cdi list" in found["fix"]
    assert outcomes(report)[f"gpu-in-container[{IMAGE}]"] == "not-run"


def test_a_spec_of_another_driver_is_stale_before_any_experiment_starts(
    bed: PodmanBed, podman_host: HostTools
) -> None:
    bed.use_spec(bed.cdi_spec(library_version="535.104.05"))
    study(podman_host)
    events = bed.dir / "events.log"
    before = events.read_text() if events.exists() else ""
    ran = product(bed, podman_host, ["llem", "run", "study.yaml", "--output", "out"])
    assert ran.returncode == 1
    assert "[cdi-spec]" in ran.stderr and "cdi_spec" not in ran.stdout
    line = next(line for line in ran.stderr.splitlines() if "[cdi-spec]" in line)
    assert "535.104.05" in line and SCENARIO.driver_version in line, ran.stderr
    assert not (podman_host.work / "out" / "manifest.json").exists()
    after = events.read_text() if events.exists() else ""
    assert '"create"' not in after[len(before) :], "a container was created"
    _, report = preflight(bed, podman_host)
    stale = failure(report, "cdi-spec")
    assert stale["cause"] == "cdi_spec_stale"
    assert (stale["details"]["spec_driver_version"], stale["details"]["driver_version"]) == (
        "535.104.05", SCENARIO.driver_version,
    )  # fmt: skip


def test_podman_missing_is_podman_cli_missing(bed: PodmanBed, podman_host: HostTools) -> None:
    podman_host.remove("podman")
    study(podman_host)
    result, report = preflight(bed, podman_host)
    assert result.returncode == 1
    assert [(f["id"], f["cause"]) for f in report["failures"]] == [
        ("podman-cli", "podman_cli_missing")
    ]
    assert failure(report, "podman-cli")["message"] == "Podman not found on PATH"
    assert outcomes(report)["cdi-spec"] == "not-run"


def test_a_remote_podman_is_refused(bed: PodmanBed, podman_host: HostTools) -> None:
    study(podman_host)
    remote = "ssh://core@gpu1:22/run/podman/podman.sock"
    result, report = preflight(bed, podman_host, extra={"CONTAINER_HOST": remote})
    assert result.returncode == 1
    found = failure(report, "podman-cli")
    assert found["cause"] == "podman_cli_missing"
    assert f"CONTAINER_HOST={remote}" in found["message"]
    assert "local Podman only" in found["message"]
