"""The CI recipes of examples/ci/: the shape a gate needs, options llem knows, and the README
showing the GitHub one as it is. (tests/integration/test_ci_recipes.py runs their commands.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from ci_recipes import GITHUB, GITLAB, job_lines, llem_commands, load

from pytest_llem.cli import _parser

README = (Path(__file__).parents[2] / "README.md").read_text()
PREFLIGHT = ["llem", "preflight", "study.yaml", "--wait", "120",
             "--json", "preflight.json", "--junit", "preflight.xml"]  # fmt: skip


def test_github_preflight_job_keeps_its_reports_even_when_it_fails() -> None:
    jobs = load(GITHUB)["jobs"]
    preflight = jobs["preflight"]
    assert "self-hosted" in preflight["runs-on"] and "gpu" in preflight["runs-on"]
    assert llem_commands(GITHUB, "preflight") == [PREFLIGHT]
    [upload] = [
        s for s in preflight["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")
    ]
    assert upload["if"] == "always()"
    assert upload["with"]["path"].split() == ["preflight.json", "preflight.xml"]
    steps = [s.get("name") for s in preflight["steps"]]
    assert steps.index("Pre-flight") < steps.index("Keep the pre-flight reports")


def test_github_gpu_job_needs_the_preflight() -> None:
    jobs = load(GITHUB)["jobs"]
    assert jobs["experiments"]["needs"] == "preflight"
    assert jobs["experiments"]["runs-on"] == jobs["preflight"]["runs-on"]
    assert [argv[:2] for argv in llem_commands(GITHUB, "experiments")] == [["llem", "run"]]


def test_gitlab_has_the_same_shape() -> None:
    data = load(GITLAB)
    assert data["stages"] == ["preflight", "experiments"]
    preflight, experiments = data["preflight"], data["experiments"]
    assert llem_commands(GITLAB, "preflight") == [PREFLIGHT]
    assert preflight["artifacts"]["when"] == "always"
    assert preflight["artifacts"]["paths"] == ["preflight.json", "preflight.xml"]
    assert preflight["artifacts"]["reports"]["junit"] == "preflight.xml"
    assert experiments["needs"] == ["preflight"]
    assert [argv[:2] for argv in llem_commands(GITLAB, "experiments")] == [["llem", "run"]]
    assert "gpu" in data["default"]["tags"]


@pytest.mark.parametrize("job", ["preflight", "experiments"])
@pytest.mark.parametrize("path", [GITHUB, GITLAB])
def test_every_llem_line_parses(path: Path, job: str) -> None:
    for argv in llem_commands(path, job):
        _parser().parse_args(argv[1:])  # a renamed option exits 2 here


@pytest.mark.parametrize("path", [GITHUB, GITLAB])
def test_llem_is_installed_in_a_virtual_environment(path: Path) -> None:
    """As on a stock Debian or Ubuntu runner, whose python3 is externally managed."""
    for job in ("preflight", "experiments"):
        lines = job_lines(path, job)
        assert any(line.startswith("python3 -m venv ") for line in lines)
        assert not any("--break-system-packages" in line or "sudo" in line for line in lines)


def test_the_readme_shows_the_github_recipe_as_it_is() -> None:
    section = README.split("\n## CI\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("\n```\n", 1)[0] + "\n"
    assert block == GITHUB.read_text()
    for code in ("0", "1", "2", "130", "143"):
        assert f"`{code}`" in section
