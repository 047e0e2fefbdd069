"""Remembered dry-run plans: same inputs, same plan without re-validation; any change, a miss."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llem import cli
from pytest_llem.run.plans import Plan, load_plan, plan_key, store_plan
from pytest_llem.settings import PreflightSettings

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
    return plan_key("study.yaml", Path("study.yaml").read_bytes(), env, [], None)


def test_key_follows_every_input(tmp_path: Path) -> None:
    Path("study.yaml").write_text(STUDY)
    data = STUDY.encode()
    base = _key()
    assert _key() == base
    assert _key(LLEM_RUNNER_VLLM="local") != base
    assert plan_key("study.yaml", data, {}, ["pytorch=local"], None) != base
    assert plan_key("study.yaml", data, {}, [], True) != base
    assert plan_key("study.yaml", data, {}, [], None, skip_checks=["gpu-idle"]) != base
    assert plan_key("other.yaml", data, {}, [], None) != base  # its name is the study's name
    Path("study.yaml").write_text(STUDY.replace("gpt2", "gpt2-xl"))
    assert _key() != base
    # The key is of the bytes given (those validated), not of what the file holds now.
    assert plan_key("study.yaml", data, {}, [], None) == base
    Path("study.yaml").write_text(STUDY)
    user = tmp_path / "config" / "llenergymeasure" / "config.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("runners: {pytorch: local}\n")
    assert _key(XDG_CONFIG_HOME=str(tmp_path / "config")) != _key()


PLAN = Plan(
    PreflightSettings(images=("a/b:1",), timeout_s=7, skip=frozenset({"docker-cli"})),
    None,
    ("llem: dry run: 001 ...",),
)


def test_store_load_and_damage() -> None:
    plan = PLAN
    store_plan("k", plan)
    assert load_plan("k") == plan
    assert load_plan("other") is None
    path = next(Path("cache").rglob("k.json"))
    path.write_bytes(b"\xff not json")
    assert load_plan("k") is None


@pytest.mark.parametrize(
    ("settings", "damage"),
    [
        ({"images": [1]}, {}),
        ({"images": "a/b:1"}, {}),
        ({"images": ["$(touch /tmp/x)"]}, {}),
        ({"timeout_s": "30"}, {}),
        ({"timeout_s": -5}, {}),
        ({"timeout_s": 1e300}, {}),
        ({"timeout_s": 10**400}, {}),
        ({"cache_s": True}, {}),
        ({"skip": "docker-cli"}, {}),
        ({"unknown": 1}, {}),
        ({}, {"lines": [None]}),
        ({}, {"docker": True}),  # (a field of schema 4)
        ({}, {"settings": []}),
        ({}, {"skipped_by": 3}),
        ({}, {"extra": 1}),
        ({}, {"schema": 1}),
    ],
)
def test_a_plan_of_the_wrong_shape_or_out_of_range_is_not_used(
    settings: dict[str, object], damage: dict[str, object]
) -> None:
    """A hand-edited or foreign plan file is a miss (the study is validated), never a crash."""
    import json
    import sys

    store_plan("k", PLAN)
    path = next(Path("cache").rglob("k.json"))
    data = json.loads(path.read_text())
    data["settings"].update(settings)
    data.update(damage)
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        path.write_text(json.dumps(data))
    finally:
        sys.set_int_max_str_digits(old)
    assert load_plan("k") is None


def test_a_plan_file_only_its_owner_can_write_is_used() -> None:
    import os

    store_plan("k", PLAN)
    path = next(Path("cache").rglob("k.json"))
    assert path.stat().st_mode & 0o777 == 0o600
    for mode in (0o620, 0o602, 0o666):
        path.chmod(mode)
        assert load_plan("k") is None, oct(mode)
    path.chmod(0o644)
    assert load_plan("k") == PLAN
    os.chown(path, 4242, 4242)  # another user's file (the tests run as root)
    assert load_plan("k") is None


def test_a_plan_behind_a_link_or_not_a_file_is_not_used(tmp_path: Path) -> None:
    import os

    store_plan("k", PLAN)
    path = next(Path("cache").rglob("k.json"))
    real = tmp_path / "elsewhere.json"
    path.rename(real)
    path.symlink_to(real)
    assert load_plan("k") is None
    path.unlink()
    os.mkfifo(path)
    assert load_plan("k") is None  # and it does not hang


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


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[PreflightSettings]:
    """The settings of each pre-flight `llem` runs (a stand-in that passes)."""
    from pytest_llem import preflight
    from pytest_llem.domain.report import Report

    monkeypatch.setenv("DOCKER_HOST", "unix:///nowhere/docker.sock")
    calls: list[PreflightSettings] = []
    monkeypatch.setattr(
        preflight, "run_docker_preflight", lambda **kw: calls.append(kw["settings"]) or Report()
    )
    return calls


def test_a_remembered_plan_runs_the_very_preflight_the_study_asked_for(
    capsys: pytest.CaptureFixture[str], ran: list[PreflightSettings]
) -> None:
    """The pre-flight of a remembered plan has the settings the validated study gave."""
    Path("study.yaml").write_text(DOCKER_STUDY)

    assert cli.main(["run", "study.yaml", "--dry-run"]) == 0  # validated
    assert cli.main(["run", "study.yaml", "--dry-run"]) == 0  # remembered
    assert capsys.readouterr().err.count("llem: dry run: 001 gpt2 (vllm, docker") == 2
    expected = PreflightSettings(
        images=("org/img:1",), requests=(("org/img:1", "all"),), timeout_s=7
    )
    assert ran == [expected, expected]


def test_a_remembered_plan_of_a_local_study_keeps_its_gpus_and_skips(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local-only study's plan still runs the measurement tier, for its GPUs, minus the
    checks skipped (by the study and by --skip-check), and says so each time."""
    from pytest_llem import preflight
    from pytest_llem.domain.report import Report

    ran: list[PreflightSettings] = []
    monkeypatch.setattr(
        preflight, "run_docker_preflight", lambda **kw: ran.append(kw["settings"]) or Report()
    )
    Path("study.yaml").write_text(
        "gpus: [1]\nexecution: {skip_checks: [mig-mode]}\n"
        "experiments: [{model: gpt2, backend: pytorch, command: [python, b.py]}]\n"
    )
    args = ["run", "study.yaml", "--dry-run", "--skip-check", "gpu-idle"]
    assert cli.main(args) == 0  # validated
    assert cli.main(args) == 0  # remembered
    expected = PreflightSettings(
        gpus=(1,),
        skip=frozenset({"mig-mode", "gpu-idle"}),
        skip_origin="--skip-check and execution.skip_checks in study.yaml",
        measurement_only=True,
        local_runs=True,
    )
    assert ran == [expected, expected]
    err = capsys.readouterr().err
    assert err.count("llem: warning: check gpu-idle skipped (--skip-check)\n") == 2
    assert err.count("check mig-mode skipped (execution.skip_checks in study.yaml)") == 2


def test_a_study_swapped_after_it_was_read_is_never_answered_from_the_other_plan(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ran: list[PreflightSettings],
) -> None:
    """The plan is keyed by the bytes read, and those bytes are what is validated."""
    from pytest_llem.run import config

    other = DOCKER_STUDY.replace("org/img:1", "org/other:2")
    Path("study.yaml").write_text(other)
    assert cli.main(["run", "study.yaml", "--dry-run"]) == 0  # the other study's plan, stored
    Path("study.yaml").write_text(DOCKER_STUDY)
    real_load = config.load_study

    def swap_then_load(*args: object, **kwargs: object) -> object:
        Path("study.yaml").write_text(other)  # swapped while this one is validated
        return real_load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(config, "load_study", swap_then_load)
    assert cli.main(["run", "study.yaml", "--dry-run"]) == 0
    monkeypatch.setattr(config, "load_study", real_load)
    Path("study.yaml").write_text(DOCKER_STUDY)
    assert cli.main(["run", "study.yaml", "--dry-run"]) == 0  # remembered: the validated bytes
    assert [s.images for s in ran] == [("org/other:2",), ("org/img:1",), ("org/img:1",)]
    assert capsys.readouterr().err.count("(vllm, docker from study runners.vllm): org/img:1") == 2


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
    argv: list[str], queried: bool
) -> None:
    facts = cli._host_queries(argv)
    assert (facts is not None) == queried
    if facts is not None:
        facts.close()
