"""The CI recipes of examples/ci/: the shape a gate needs (the gate and the experiments in one
job, so on one machine), options llem knows, what they install, and the README showing the
GitHub one as it is. (tests/integration/test_ci_recipes.py runs their lines.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from ci_recipes import (
    GITHUB,
    GITLAB,
    JOB,
    RECIPES,
    job_lines,
    jobs,
    llem_commands,
    load,
    pinned,
    pip_installs,
)

from pytest_llem.cli import _parser

README = (Path(__file__).parents[2] / "README.md").read_text()
PREFLIGHT = ["llem", "preflight", "study.yaml", "--wait", "120",
             "--json", "preflight.json", "--junit", "preflight.xml"]  # fmt: skip
RUN = ["llem", "run", "study.yaml", "--output", "llem-runs/study"]
EACH = pytest.mark.parametrize("path", RECIPES, ids=["github", "gitlab"])


@EACH
def test_the_gate_and_the_experiments_are_one_job_on_one_machine(path: Path) -> None:
    """Two jobs may each get another runner of the same label: the gate would prove one host
    and the experiments run on another."""
    assert list(jobs(path)) == [JOB]
    assert llem_commands(path) == [PREFLIGHT, RUN]  # the gate first, then the experiments
    lines = job_lines(path)
    assert lines.index(" ".join(PREFLIGHT)) == len(lines) - 2  # nothing between them
    assert "needs" not in jobs(path)[JOB]


def test_github_runs_the_study_only_after_the_preflight_passed_and_keeps_the_reports() -> None:
    job = load(GITHUB)["jobs"][JOB]
    assert "self-hosted" in job["runs-on"] and "gpu" in job["runs-on"]
    steps = {step.get("name"): step for step in job["steps"]}
    names = list(steps)
    assert names.index("Install llem") < names.index("Pre-flight") < names.index("Run the study")
    # A failed pre-flight skips the study: nothing lets a step after it run anyway.
    for name in ("Install llem", "Pre-flight"):
        assert "continue-on-error" not in steps[name] and "if" not in steps[name]
    assert "if" not in steps["Run the study"]
    reports = steps["Keep the pre-flight reports"]
    assert reports["uses"].startswith("actions/upload-artifact@") and reports["if"] == "always()"
    assert reports["with"]["path"].split() == ["preflight.json", "preflight.xml"]
    assert names.index("Pre-flight") < names.index("Keep the pre-flight reports")
    assert steps["Keep the results"]["if"] == "always()"


def test_gitlab_has_the_same_shape() -> None:
    data = load(GITLAB)
    job = data[JOB]
    assert "gpu" in job["tags"] and "allow_failure" not in job
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["paths"] == ["preflight.json", "preflight.xml", "llem-runs/"]
    assert job["artifacts"]["reports"]["junit"] == "preflight.xml"


@EACH
def test_every_llem_line_parses(path: Path) -> None:
    for argv in llem_commands(path):
        _parser().parse_args(argv[1:])  # a renamed option exits 2 here


@EACH
def test_llem_is_installed_in_a_virtual_environment(path: Path) -> None:
    """As on a stock Debian or Ubuntu runner, whose python3 is externally managed."""
    lines = job_lines(path)
    assert any(line.startswith("python3 -m venv ") for line in lines)
    assert not any("--break-system-packages" in line or "sudo" in line for line in lines)


@EACH
def test_every_pip_install_names_a_path_or_a_pinned_git_url(path: Path) -> None:
    """Not a package name: pytest-llem is not published, and whoever registered the name would
    run their code on the GPU runner. A path (`.`: the checkout), or a git URL pinned to a
    full commit; the comment says how to pin."""
    installs = pip_installs(path)
    assert installs == [["."]]
    for targets in installs:
        assert targets and all(pinned(target) for target in targets), targets
    text = path.read_text()
    assert "git+https://" in text and "full 40-character commit sha" in text


@pytest.mark.parametrize(
    ("target", "ok"),
    [
        (".", True),
        ("./pytest-llem", True),
        (".[dev]", True),
        ("/opt/src/pytest-llem", True),
        ("git+https://github.com/o/pytest-llem@" + "0123456789abcdef" * 2 + "01234567", True),
        ("git+ssh://git@github.com/o/pytest-llem@" + "a" * 40, True),
        ("pytest-llem", False),
        ("pytest-llem==0.1.0", False),
        ("$LLEM_PACKAGE", False),
        ("git+https://github.com/o/pytest-llem", False),
        ("git+https://github.com/o/pytest-llem@main", False),
        ("git+https://github.com/o/pytest-llem@v0.1.0", False),
        ("git+https://github.com/o/pytest-llem@0123abc", False),
        ("https://example.com/pytest_llem-0.1.0.tar.gz", False),
    ],
)
def test_what_counts_as_pinned(target: str, ok: bool) -> None:
    assert pinned(target) is ok


def test_the_readme_shows_the_github_recipe_as_it_is() -> None:
    section = README.split("\n## CI\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("\n```\n", 1)[0] + "\n"
    assert block == GITHUB.read_text()
    for code in ("0", "1", "2", "130", "143"):
        assert f"`{code}`" in section
