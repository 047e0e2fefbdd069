"""The CI recipes of examples/ci/, read as their CI systems read them, and run as their
runners would run them (for the tests)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from testbed import run

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "ci"
GITHUB = EXAMPLES / "github-actions.yml"
GITLAB = EXAMPLES / "gitlab-ci.yml"
RECIPES = (GITHUB, GITLAB)
JOB = "gpu-experiments"  # each recipe's one job: the gate and the experiments, one machine
SHELL_SYNTAX = set("$|&;<>`(){}*?")
# GitLab's top-level keywords: every other top-level key is a job.
GITLAB_KEYWORDS = {
    "default", "include", "stages", "variables", "workflow", "image", "services", "cache",
    "before_script", "after_script", "spec",
}  # fmt: skip
# What `pip install` may install: this checkout or a path (optionally with extras), or a git
# URL pinned to a full commit; never a name that a package index resolves.
PINNED_SOURCE = re.compile(
    r"(\.|\.{1,2}/[\w./-]*|/[\w./-]+)(\[[\w,-]+\])?"
    r"|git\+(https|ssh)://[^\s@]+(@[^\s@]+)?@[0-9a-f]{40}(#[\w=&.-]+)?"
)


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    if True in data:  # YAML 1.1 reads GitHub's `on:` key as the boolean true
        data["on"] = data.pop(True)
    return data


def jobs(path: Path) -> dict[str, dict[str, Any]]:
    data = load(path)
    if path == GITHUB:
        return dict(data["jobs"])
    return {name: spec for name, spec in data.items() if name not in GITLAB_KEYWORDS}


def job_lines(path: Path, job: str = JOB) -> list[str]:
    """The shell lines a job runs, in order (GitLab: before_script of the job, else of
    `default:`, then script); shell comments left out."""
    data = load(path)
    if path == GITHUB:
        runs = [step["run"] for step in data["jobs"][job]["steps"] if "run" in step]
    else:
        spec = data[job]
        runs = [*spec.get("before_script", data.get("default", {}).get("before_script", [])),
                *spec["script"]]  # fmt: skip
    lines = [line.strip() for run in runs for line in run.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def llem_commands(path: Path, job: str = JOB) -> list[list[str]]:
    """The `llem ...` command lines of a job, as argument lists (plain commands only)."""
    found = []
    for line in job_lines(path, job):
        if line.startswith("llem "):
            assert not SHELL_SYNTAX & set(line), f"{path.name}: not a plain command: {line}"
            found.append(shlex.split(line))
    return found


def pip_installs(path: Path) -> list[list[str]]:
    """What every `pip install` line of every job of a recipe names to install (its
    arguments that are not options)."""
    found = []
    for job in jobs(path):
        for line in job_lines(path, job):
            words = shlex.split(line)
            for at in range(len(words) - 1):
                if words[at].endswith("pip") and words[at + 1] == "install":
                    found.append([w for w in words[at + 2 :] if not w.startswith("-")])
    return found


def pinned(target: str) -> bool:
    return PINNED_SOURCE.fullmatch(target) is not None


def checkout_copy(target: Path) -> None:
    """What a CI runner's checkout of this repository holds: its tracked and new files,
    nothing ignored (no .venv, no build output, no egg-info)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


# -- running a job as its runner would -------------------------------------------------------


@dataclass
class Step:
    name: str
    ran: bool  # whether the runner would run it (a `uses:` step is not run here)
    result: subprocess.CompletedProcess[str] | None = None


def bash(
    script: str, env: Mapping[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``script`` as a CI runner's shell runs it: bash, exiting at the first failed line."""
    return run(
        ["/bin/bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        env, cwd=cwd, timeout=timeout,
    )  # fmt: skip


def run_github_job(
    env: Mapping[str, str], cwd: Path, temp: Path, timeout: float = 300
) -> list[Step]:
    """The steps of the GitHub recipe's job, in order, as a runner runs them: each `run:` in
    a shell of its own, with the workflow's, job's and step's `env:`, `RUNNER_TEMP`, and the
    `GITHUB_PATH` lines of the steps before it first on PATH; after a failed step only the
    `if: always()` steps run."""
    github_path = temp / "github_path"
    github_path.touch()
    runner_temp = temp / "runner_temp"
    runner_temp.mkdir(exist_ok=True)
    workflow = load(GITHUB)
    job = workflow["jobs"][JOB]
    steps, failed = [], False
    for step in job["steps"]:
        name = step.get("name") or step.get("uses", "")
        condition = step.get("if", "success()")
        due = condition == "always()" or (condition == "success()" and not failed)
        if not due or "run" not in step:
            steps.append(Step(name, due))
            continue
        added = [line for line in github_path.read_text().splitlines() if line]
        step_env = {
            **env,
            **workflow.get("env", {}),
            **job.get("env", {}),
            **step.get("env", {}),
            "RUNNER_TEMP": str(runner_temp),
            "GITHUB_PATH": str(github_path),
            "PATH": ":".join([*reversed(added), env["PATH"]]),
        }
        result = bash(step["run"], step_env, cwd, timeout)
        steps.append(Step(name, True, result))
        failed = failed or (result.returncode != 0 and not step.get("continue-on-error"))
    return steps


def run_gitlab_job(
    env: Mapping[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The GitLab recipe's job as the shell executor runs it: before_script and script in
    one shell, ending at the first line that fails."""
    return bash("\n".join(job_lines(GITLAB)), {**env, "CI_PROJECT_DIR": str(cwd)}, cwd, timeout)
