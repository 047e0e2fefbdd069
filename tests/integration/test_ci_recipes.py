"""The jobs of examples/ci/ run against the test bed as their runners would run them: every
shell line, the install of llem from the checkout into a fresh virtual environment included,
then the gate and the experiments from that environment. A renamed option, a report not
written, an install that does not work, or a gate that opens on a failed host breaks a test.

Offline: pip installs the checkout with no index and no build isolation; the dependencies
(and the build backend) come from this test run's own environment through PYTHONPATH, all but
pytest-llem itself, which only the install can bring."""

from __future__ import annotations

import json
import os
import sys
import sysconfig
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from ci_recipes import (
    GITHUB,
    RECIPES,
    checkout_copy,
    run_github_job,
    run_gitlab_job,
)
from testbed import Engine, HostTools, build_workload_image

WORKLOAD = "llem-test/ci-workload:1"
STUDY = (
    "name: ci\n"
    f"runners: {{vllm: 'docker:{WORKLOAD}'}}\n"
    "experiments:\n"
    "  - {model: m, backend: vllm}\n"
)
EACH = pytest.mark.parametrize("recipe", RECIPES, ids=["github", "gitlab"])


@pytest.fixture(scope="module")
def workload(gpu_engine: Engine) -> str:
    build_workload_image(gpu_engine, WORKLOAD)
    return WORKLOAD


@pytest.fixture(scope="module")
def dependencies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This environment's installed packages, pytest-llem left out: a directory of links for
    PYTHONPATH (no .pth file runs from there, so no editable install of it either)."""
    import setuptools

    if tuple(int(p) for p in setuptools.__version__.split(".")[:2]) < (70, 1):
        pytest.fail(
            f"setuptools {setuptools.__version__} here cannot build a wheel by itself offline: "
            "install the dev extra (pip install -e '.[dev]'), which brings setuptools>=70.1",
            pytrace=False,
        )
    links = tmp_path_factory.mktemp("deps")
    for site in dict.fromkeys(sysconfig.get_path(k) for k in ("purelib", "platlib")):
        for entry in Path(site).iterdir():
            name = entry.name
            skip = name.startswith(("pytest_llem", "__editable__", "_distutils_hack"))
            if skip or name.endswith(".pth") or name == "__pycache__":
                continue
            if not (links / name).exists():
                (links / name).symlink_to(entry)
    yield links


@pytest.fixture
def checkout(host_tools: HostTools, workload: str) -> Path:
    """The CI runner's checkout of this repository: a study at its root."""
    checkout_copy(host_tools.work)
    (host_tools.work / "study.yaml").write_text(STUDY)
    return host_tools.work


def job_env(host_tools: HostTools, base: dict[str, str], deps: Path) -> dict[str, str]:
    """The runner's environment around the host scenario ``base``: its `python3` (this
    Python), pip offline, and no path to this source tree."""
    tools = host_tools.root / "runner-bin"
    tools.mkdir(exist_ok=True)
    if not (tools / "python3").exists():
        (tools / "python3").symlink_to(sys.executable)
    return {
        **base,
        "PATH": f"{base['PATH']}:{tools}",
        "PYTHONPATH": str(deps),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # (pip's reading: 0 turns build isolation off)
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


def run_job(
    recipe: Path, env: dict[str, str], checkout: Path, temp: Path
) -> tuple[int, str, list[str]]:
    """The job's exit status, its output, and the steps that ran (GitHub: by name)."""
    if recipe == GITHUB:
        steps = run_github_job(env, checkout, temp)
        ran = [(s.name, s.result) for s in steps if s.result is not None]
        output = "".join(f"[{name}]\n{r.stdout}{r.stderr}" for name, r in ran)
        code = next((r.returncode for _, r in ran if r.returncode), 0)
        return code, output, [s.name for s in steps if s.ran]
    result = run_gitlab_job(env, checkout)
    return result.returncode, result.stdout + result.stderr, []


def reports(checkout: Path) -> tuple[dict[str, object], ET.Element]:
    data = json.loads((checkout / "preflight.json").read_text())
    return data, ET.parse(checkout / "preflight.xml").getroot()


def installed_llem(recipe: Path, checkout: Path, temp: Path) -> Path:
    venv = temp / "runner_temp" / "llem" if recipe == GITHUB else checkout / ".llem-venv"
    return venv / "bin" / "llem"


@EACH
def test_the_job_installs_llem_passes_the_gate_and_runs_the_study(
    host_tools: HostTools,
    gpu_engine: Engine,
    dependencies: Path,
    checkout: Path,
    recipe: Path,
    tmp_path: Path,
) -> None:
    env = job_env(host_tools, host_tools.env(gpu_engine), dependencies)
    code, output, steps = run_job(recipe, env, checkout, tmp_path)
    assert code == 0, output
    llem = installed_llem(recipe, checkout, tmp_path)
    assert llem.is_file(), output  # the install line made it, from the checkout
    site = next(llem.parent.parent.glob("lib/python*/site-packages"))
    assert (site / "pytest_llem" / "__init__.py").is_file()
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
    manifest = json.loads((checkout / "llem-runs" / "study" / "manifest.json").read_text())
    assert [e["status"] for e in manifest["experiments"]] == ["ok"]
    if recipe == GITHUB:
        assert steps == [
            "actions/checkout@v4", "Install llem", "Pre-flight", "Keep the pre-flight reports",
            "Run the study", "Keep the results",
        ]  # fmt: skip


@EACH
def test_the_gate_stays_shut_on_a_host_without_the_toolkit_and_keeps_its_reports(
    host_tools: HostTools,
    gpu_engine: Engine,
    dependencies: Path,
    checkout: Path,
    recipe: Path,
    tmp_path: Path,
) -> None:
    base, _ = host_tools.prepare("toolkit_missing", gpu_engine)
    code, output, steps = run_job(
        recipe, job_env(host_tools, base, dependencies), checkout, tmp_path
    )
    assert code == 1, output  # the job fails at the gate
    assert "Docker pre-flight failed: 1 issue(s) found" in output
    assert not (checkout / "llem-runs").exists(), output  # the experiments never started
    data, junit = reports(checkout)  # written all the same, for `if: always()` / `when: always`
    assert [(f["id"], f["cause"]) for f in data["failures"]] == [  # type: ignore[attr-defined]
        ("nvidia-toolkit", "toolkit_missing")
    ]
    [failure] = junit.iter("failure")
    assert failure.get("type") == "toolkit_missing"
    if recipe == GITHUB:
        assert "Run the study" not in steps
        assert steps[-2:] == ["Keep the pre-flight reports", "Keep the results"]
