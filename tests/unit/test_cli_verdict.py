"""`llem preflight` and `llem run` hold to the verdict (DESIGN §10): `incomplete` shuts the gate
as `failed` does, `skipped` says by what and lets it open."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from pytest_llem.cli import main
from pytest_llem.settings import PreflightSettings

LOCAL_STUDY = "name: s\nexperiments: [{model: gpt2, backend: pytorch, command: [python, w.py]}]\n"
SKIPPED_STUDY = (
    "name: s\nexecution: {skip_preflight: true}\nrunners: {vllm: 'docker:v/img:1'}\n"
    "experiments: [{model: m, backend: vllm}]\n"
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No docker, no nvidia-smi; the user's settings and caches out of the way."""
    for name in list(os.environ):
        if name.startswith(("LLEM_RUNNER_", "DOCKER_")):
            monkeypatch.delenv(name)
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.path.dirname(sys.executable)}")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)


def llem(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def one_check_not_collected(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings require a check that the session does not collect (docker-cli, for a
    study whose experiments all run locally: the session runs the measurement tier alone)."""
    required = PreflightSettings.required_ids
    monkeypatch.setattr(
        PreflightSettings, "required_ids", lambda self: [*required(self), "docker-cli"]
    )


HEADER = "Docker pre-flight incomplete: 1 required check(s) did not run"


@pytest.mark.usefixtures("one_check_not_collected")
def test_llem_preflight_fails_an_incomplete_preflight(capsys: pytest.CaptureFixture[str]) -> None:
    Path("study.yaml").write_text(LOCAL_STUDY)
    code, out, err = llem(capsys, "preflight", "study.yaml", "--json", "r.json")
    assert code == 1, out + err
    lines = out.splitlines()
    assert lines[lines.index(HEADER) + 1] == "  - [docker-cli] not collected"
    data = json.loads(Path("r.json").read_text())
    assert data["status"] == "incomplete"
    assert data["missing"] == [{"id": "docker-cli", "tier": 1, "reason": "not collected"}]


@pytest.mark.usefixtures("one_check_not_collected")
@pytest.mark.parametrize("dry_run", [True, False])
def test_llem_run_stops_at_an_incomplete_preflight(
    capsys: pytest.CaptureFixture[str], dry_run: bool
) -> None:
    Path("study.yaml").write_text(LOCAL_STUDY)
    Path("w.py").write_text("raise SystemExit('the experiment must not start')\n")
    args = ["run", "study.yaml", "--output", "out", *(["--dry-run"] if dry_run else [])]
    code, out, err = llem(capsys, *args)
    assert (code, out) == (1, "")
    assert HEADER in err.splitlines()
    assert "llem: dry run" not in err
    assert not Path("out").exists()  # nothing started


def test_llem_preflight_of_a_skipped_study_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    Path("study.yaml").write_text(SKIPPED_STUDY)
    code, out, _ = llem(capsys, "preflight", "study.yaml", "--json", "r.json", "--junit", "r.xml")
    assert (code, out) == (0, "Docker pre-flight skipped: execution.skip_preflight in study.yaml\n")
    data = json.loads(Path("r.json").read_text())
    assert (data["status"], data["skipped_by"]) == (
        "skipped",
        "execution.skip_preflight in study.yaml",
    )
    assert '<property name="llem_status" value="skipped" />' in Path("r.xml").read_text()


def test_llem_preflight_with_every_check_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = llem(capsys, "preflight", "--skip-check", "all", "--json", "r.json")
    assert code == 0
    assert out.splitlines()[-1] == "Docker pre-flight skipped: --skip-check all"
    assert "- docker-cli: skipped by --skip-check all" in out.splitlines()
    assert json.loads(Path("r.json").read_text())["status"] == "skipped"


def test_a_skipped_dry_run_renders_the_same_header(capsys: pytest.CaptureFixture[str]) -> None:
    """llem's own skipped reports (no pytest session) are `skipped` reports too."""
    from pytest_llem.domain.report import Report
    from pytest_llem.preflight import run_docker_preflight

    Path("study.yaml").write_text(SKIPPED_STUDY)
    report = run_docker_preflight(config="study.yaml")
    assert report.status == "skipped"
    assert report.render() == "Docker pre-flight skipped: execution.skip_preflight in study.yaml"
    assert Report(skipped_by="--skip-preflight").render().startswith("Docker pre-flight skipped")
    for _ in range(2):  # validated, then remembered (a plan: no pydantic)
        code, _, err = llem(capsys, "run", "study.yaml", "--dry-run")
        assert code == 0
        assert err.splitlines()[0] == (
            "llem: warning: Docker pre-flight skipped (execution.skip_preflight in study.yaml)"
        )


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ("docker-clii", "--skip-check: unknown check id 'docker-clii' (valid ids: all, docker-"),
        (
            "cuda-compat[other/image:1]",  # (no such image is checked: the session refuses it)
            "--skip-check: unknown check id 'cuda-compat[other/image:1]'; valid ids: all,",
        ),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], check: str, message: str
) -> None:
    code, out, err = llem(capsys, "preflight", "--skip-check", check, "--json", "r.json")
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith(f"llem: error: {message}"), err
    assert not Path("r.json").exists()
