"""The CI recipes of examples/ci/, read as their CI systems read them (for the tests)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "ci"
GITHUB = EXAMPLES / "github-actions.yml"
GITLAB = EXAMPLES / "gitlab-ci.yml"
SHELL_SYNTAX = set("$|&;<>`(){}*?")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    if True in data:  # YAML 1.1 reads GitHub's `on:` key as the boolean true
        data["on"] = data.pop(True)
    return data


def job_lines(path: Path, job: str) -> list[str]:
    """The shell lines a job runs, in order (GitLab: before_script of `default:`, then script)."""
    data = load(path)
    if path == GITHUB:
        runs = [step["run"] for step in data["jobs"][job]["steps"] if "run" in step]
    else:
        spec = data[job]
        runs = [*spec.get("before_script", data.get("default", {}).get("before_script", [])),
                *spec["script"]]  # fmt: skip
    return [line.strip() for run in runs for line in run.splitlines() if line.strip()]


def llem_commands(path: Path, job: str) -> list[list[str]]:
    """The `llem ...` command lines of a job, as argument lists (plain commands only)."""
    found = []
    for line in job_lines(path, job):
        if line.startswith("llem "):
            assert not SHELL_SYNTAX & set(line), f"{path.name}: not a plain command: {line}"
            found.append(shlex.split(line))
    return found
