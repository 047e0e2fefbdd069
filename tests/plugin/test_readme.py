"""The README's examples are run: its sample report and its user-check example must stay true."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

README = (Path(__file__).parents[2] / "README.md").read_text()
BUILTINS = (
    "docker-cli,docker-daemon,nvidia-toolkit,host-driver,cuda-compat,gpu-in-container,"
    "gpu-idle,persistence-mode,mig-mode,clock-events,energy-counter,power-limit,gpu-health"
)

pytestmark = pytest.mark.usefixtures("bare_host")


def _blocks(language: str) -> list[str]:
    """The README's fenced code blocks opened with ```language."""
    blocks, current, inside = [], [], False
    for line in README.splitlines():
        if inside and line == "```":
            blocks.append("\n".join(current) + "\n")
            inside = False
        elif inside:
            current.append(line)
        elif line == f"```{language}":
            current, inside = [], True
    return blocks


def test_the_sample_failure_report_is_what_a_bare_host_prints(pytester: pytest.Pytester) -> None:
    sample = next(b for b in _blocks("") if "[docker-cli]" in b).rstrip("\n").splitlines()
    result = pytester.runpytest("--llem-preflight")
    assert result.ret == 1
    out = result.stdout.lines
    start = out.index(sample[0])
    assert out[start : start + len(sample)] == sample


def test_the_user_check_example_runs(pytester: pytest.Pytester) -> None:
    example = next(b for b in _blocks("python") if "preflight(tier=2" in b)
    pytester.makepyfile(test_mine=example)
    result = pytester.runpytest(
        "--llem-preflight", "--llem-skip", BUILTINS, ".", "--llem-json", "r.json"
    )
    data = json.loads((pytester.path / "r.json").read_text())
    outcomes = {c["id"]: c["outcome"] for c in data["checks"] if c["outcome"] != "skipped"}
    # No /models/llama here: the tier-2 check fails; no nvidia-smi: the tier-1 check warns.
    assert outcomes == {"gpu-memory": "warning", "model-cache": "failed"}
    assert data["failures"][0]["fix"] == "mount the model volume"
    assert result.ret == 1
