"""Remembered dry-run plans: same inputs, same plan without re-validation; any change, a miss."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llem import cli, head_start
from pytest_llem.run.plans import Plan, load_plan, plan_key, store_plan

STUDY = """\
name: s
runners: {pytorch: local}
experiments:
  - {model: gpt2, backend: pytorch, command: [python, bench.py]}
"""


@pytest.fixture(autouse=True)
def _homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith("LLEM_RUNNER_")]:
        monkeypatch.delenv(name)


def _key(**env: str) -> str:
    return plan_key("study.yaml", env, [], None)


def test_key_follows_every_input(tmp_path: Path) -> None:
    Path("study.yaml").write_text(STUDY)
    base = _key()
    assert _key() == base
    assert _key(LLEM_RUNNER_VLLM="local") != base
    assert plan_key("study.yaml", {}, ["pytorch=local"], None) != base
    assert plan_key("study.yaml", {}, [], True) != base
    Path("study.yaml").write_text(STUDY.replace("gpt2", "gpt2-xl"))
    assert _key() != base
    Path("study.yaml").write_text(STUDY)
    user = tmp_path / "config" / "llenergymeasure" / "config.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("runners: {pytorch: local}\n")
    assert _key(XDG_CONFIG_HOME=str(tmp_path / "config")) != _key()


def test_store_load_and_damage() -> None:
    plan = Plan(True, ("a/b:1",), 30.0, 600.0, 900.0, None, ("llem: dry run: 001 ...",))
    store_plan("k", plan)
    assert load_plan("k") == plan
    assert load_plan("other") is None
    path = next(Path("cache").rglob("k.json"))
    path.write_bytes(b"\xff not json")
    assert load_plan("k") is None


@pytest.mark.parametrize(
    "damage",
    [
        {"images": [1]},
        {"images": "a/b:1"},
        {"images": ["$(touch /tmp/x)"]},
        {"lines": [None]},
        {"docker": "yes"},
        {"timeout_s": "30"},
        {"cache_s": True},
        {"skip_warning": 3},
        {"extra": 1},
    ],
)
def test_a_plan_of_the_wrong_shape_is_not_used(damage: dict[str, object]) -> None:
    """A hand-edited or foreign plan file is a miss (the study is validated), never a crash."""
    import json

    store_plan("k", Plan(True, ("a/b:1",), 30.0, 600.0, 900.0, None, ("llem: dry run",)))
    path = next(Path("cache").rglob("k.json"))
    path.write_text(json.dumps({**json.loads(path.read_text()), **damage}))
    assert load_plan("k") is None


def test_second_dry_run_uses_the_plan_and_a_change_revalidates(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    Path("study.yaml").write_text(STUDY)
    assert cli.main(["run", "study.yaml", "--dry-run"]) == 0
    first = capsys.readouterr().err
    assert "llem: dry run: 001 gpt2 (pytorch, local from study runners.pytorch)" in first

    def no_validation(*args: object, **kwargs: object) -> None:
        raise AssertionError("validated again")

    monkeypatch.setattr("pytest_llem.run.config.load_study", no_validation)
    assert cli.main(["run", "study.yaml", "--dry-run"]) == 0
    assert capsys.readouterr().err == first
    Path("study.yaml").write_text(STUDY.replace("gpt2", "opt-125m"))
    with pytest.raises(AssertionError, match="validated again"):
        cli.main(["run", "study.yaml", "--dry-run"])


DOCKER_STUDY = """\
name: s
runners: {vllm: "docker:org/img:1"}
docker: {probe_timeout_s: 7}
experiments:
  - {model: gpt2, backend: vllm}
"""


def test_a_remembered_plan_starts_the_very_preflight_it_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The early work a remembered plan starts is what its pre-flight adopts: same settings."""
    from pytest_llem import facts, preflight
    from pytest_llem.domain.report import Report
    from pytest_llem.host import prefetch
    from pytest_llem.settings import Settings

    monkeypatch.setenv("DOCKER_HOST", "unix:///nowhere/docker.sock")
    monkeypatch.setattr(prefetch, "start", lambda *args, **kwargs: None)
    started: list[Settings] = []
    ran: list[dict[str, object]] = []
    monkeypatch.setattr(facts, "start_early", started.append)
    monkeypatch.setattr(preflight, "run_docker_preflight", lambda **kw: ran.append(kw) or Report())
    Path("study.yaml").write_text(DOCKER_STUDY)

    assert cli.main(["run", "study.yaml", "--dry-run"]) == 0  # validated: the hint starts it
    assert cli.main(["run", "study.yaml", "--dry-run"]) == 0  # remembered: the plan starts it
    assert capsys.readouterr().err.count("llem: dry run: 001 gpt2 (vllm, docker") == 2
    assert len(started) == len(ran) == 2
    for early, kwargs in zip(started, ran, strict=True):
        assert kwargs["images"] == ("org/img:1",) and kwargs["timeout_s"] == 7
        limits = {k: v for k, v in kwargs.items() if k != "images"}
        assert early.same_facts(Settings.of(kwargs["images"], **limits))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "queried"),
    [
        (["run", "study.yaml"], True),
        (["preflight"], True),
        (["run", "study.yaml", "--skip-preflight"], False),
        (["run", "study.yaml", "--skip"], False),
        (["preflight", "--help"], False),
        (["--version"], False),
    ],
)
def test_host_queries_start_before_parsing_only_for_a_preflight(
    argv: list[str], queried: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_llem.host import prefetch

    calls: list[float] = []
    monkeypatch.setattr(prefetch, "start_host", calls.append)
    head_start.start_host_queries(argv)
    assert bool(calls) == queried
