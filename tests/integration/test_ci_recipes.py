"""The `llem` lines of examples/ci/ run against the test bed as the CI jobs would run them: a
renamed option, a report not written, or a gate that opens on a failed host breaks a test."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ci_recipes import GITHUB, GITLAB, llem_commands
from testbed import Engine, HostTools, ProductRunner, build_workload_image

WORKLOAD = "llem-test/ci-workload:1"
STUDY = (
    "name: ci\n"
    f"runners: {{vllm: 'docker:{WORKLOAD}'}}\n"
    "experiments:\n"
    "  - {model: m, backend: vllm}\n"
)
RECIPES = pytest.mark.parametrize("recipe", [GITHUB, GITLAB], ids=["github", "gitlab"])


@pytest.fixture(scope="module")
def workload(gpu_engine: Engine) -> str:
    build_workload_image(gpu_engine, WORKLOAD)
    return WORKLOAD


@pytest.fixture
def checkout(host_tools: HostTools, workload: str) -> Path:
    """The repository the CI job checked out: a study at its root."""
    (host_tools.work / "study.yaml").write_text(STUDY)
    return host_tools.work


def reports(checkout: Path) -> tuple[dict[str, object], ET.Element]:
    data = json.loads((checkout / "preflight.json").read_text())
    return data, ET.parse(checkout / "preflight.xml").getroot()


@RECIPES
def test_the_gate_opens_on_a_healthy_host_and_the_gpu_job_runs(
    run_product: ProductRunner, checkout: Path, recipe: Path
) -> None:
    [preflight] = llem_commands(recipe, "preflight")
    result = run_product(preflight)
    assert result.returncode == 0, result.stdout + result.stderr
    data, junit = reports(checkout)
    assert data["status"] == "passed"
    checks = [c["id"] for c in data["checks"]]  # type: ignore[attr-defined]
    assert f"gpu-in-container[{WORKLOAD}]" in checks  # the study's image was probed
    assert checks[-7:] == [  # and the measurement tier ran last
        "clock-events",
        "energy-counter",
        "gpu-health",
        "gpu-idle",
        "mig-mode",
        "persistence-mode",
        "power-limit",
    ]
    assert [case.get("name") for case in junit.iter("testcase")] == checks
    assert junit.find("testsuite").get("failures") == "0"  # type: ignore[union-attr]
    [experiments] = llem_commands(recipe, "experiments")
    ran = run_product(experiments)
    assert ran.returncode == 0, ran.stderr
    manifest = json.loads((checkout / "llem-runs" / "study" / "manifest.json").read_text())
    assert [e["status"] for e in manifest["experiments"]] == ["ok"]


@RECIPES
def test_the_gate_stays_shut_on_a_host_without_the_toolkit_and_keeps_its_reports(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    checkout: Path,
    recipe: Path,
) -> None:
    env, _ = host_tools.prepare("toolkit_missing", gpu_engine)
    [preflight] = llem_commands(recipe, "preflight")
    result = run_product(preflight, env=env)
    assert result.returncode == 1  # the job fails: `needs:` keeps the GPU job from starting
    data, junit = reports(checkout)  # written all the same, for `if: always()` / `when: always`
    assert [(f["id"], f["cause"]) for f in data["failures"]] == [  # type: ignore[attr-defined]
        ("nvidia-toolkit", "toolkit_missing")
    ]
    [failure] = junit.iter("failure")
    assert failure.get("type") == "toolkit_missing"
    assert "Docker pre-flight failed: 1 issue(s) found" in result.stdout
