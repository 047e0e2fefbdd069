"""`--wait SECONDS` on `llem preflight` and `llem run`: validated, and handed to the pre-flight."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pytest_llem.cli import main
from pytest_llem.domain.report import CheckResult, Report

DOCKER_STUDY = (
    "name: s\nrunners: {vllm: 'docker:v/img:1'}\nexperiments: [{model: m, backend: vllm}]\n"
)


@pytest.fixture
def settings_seen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Any]:
    """run_docker_preflight stands in: it records the settings and passes."""
    seen: list[Any] = []

    def fake(**kwargs: Any) -> Report:
        seen.append(kwargs["settings"])
        return Report(checks=[CheckResult("docker-cli", 1, "passed")])

    monkeypatch.setattr("pytest_llem.preflight.run_docker_preflight", fake)
    for name in list(os.environ):
        if name.startswith(("DOCKER_", "LLEM_RUNNER_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    Path("study.yaml").write_text(DOCKER_STUDY)
    return seen


def test_preflight_wait(settings_seen: list[Any]) -> None:
    assert main(["preflight", "--wait", "45"]) == 0
    assert main(["preflight", "study.yaml"]) == 0
    assert [s.wait_s for s in settings_seen] == [45, 0]


def test_run_wait_reaches_the_preflight_of_a_study_and_of_a_remembered_plan(
    settings_seen: list[Any],
) -> None:
    for _ in range(2):  # validated, then the remembered plan of the unchanged study
        assert main(["run", "study.yaml", "--dry-run", "--wait", "60"]) == 0
    assert main(["run", "study.yaml", "--dry-run"]) == 0
    assert [(s.images, s.wait_s) for s in settings_seen] == [(("v/img:1",), 60)] * 2 + [
        (("v/img:1",), 0)
    ]


@pytest.mark.parametrize("command", [["run", "study.yaml"], ["preflight"]])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "--wait: should be greater than or equal to 0, got -1"),
        ("soon", "--wait: expected a number of seconds, got 'soon'"),
        ("inf", "--wait: should be a finite number, got inf"),
        ("86401", "--wait: should be less than or equal to 86400, got 86401"),
    ],
)
def test_a_bad_wait_is_one_usage_error(
    settings_seen: list[Any],
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    value: str,
    message: str,
) -> None:
    assert main([*command, "--wait", value]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"llem: error: {message}\n")
    assert settings_seen == []
