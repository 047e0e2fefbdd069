"""Runner resolution (CLI > env > study > user config > default), images, and the skip rule."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_llem.domain.report import Report
from pytest_llem.errors import ConfigError
from pytest_llem.run.config import StudyConfig, UserConfig, load_study, with_user_defaults
from pytest_llem.run.notices import preflight_notice
from pytest_llem.run.runners import (
    RunnerSpec,
    docker_images,
    env_runners,
    parse_runner_option,
    preflight_settings,
    resolve_runners,
)
from pytest_llem.run.study import run_study, run_study_preflight, skip_source
from pytest_llem.settings import PreflightSettings

NO_ENV: dict[str, str] = {"XDG_CONFIG_HOME": "/nonexistent"}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The process environment without the machine's runners, user config or docker context."""
    for name in list(os.environ):
        if name.startswith("LLEM_RUNNER_") or name.startswith("DOCKER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path))


def make_study(
    *,
    runners: dict[str, str] | None = None,
    user_runners: dict[str, str] | None = None,
    experiments: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> StudyConfig:
    data: dict[str, Any] = {
        "runners": runners or {},
        "experiments": experiments
        if experiments is not None
        else [{"model": "m", "backend": "vllm", "command": ["run"]}],
        **fields,
    }
    study = StudyConfig.model_validate(data)
    return with_user_defaults(study, UserConfig(runners=user_runners or {}), Path("study.yaml"))


# -- precedence --------------------------------------------------------------------------------

LAYERS = {
    "cli": "docker:cli/img:1",
    "env": "docker:env/img:1",
    "study": "docker:study/img:1",
    "user": "docker:user/img:1",
}
SOURCES = {
    "cli": "cli",
    "env": "env LLEM_RUNNER_VLLM",
    "study": "study runners.vllm",
    "user": "user config",
}


@pytest.mark.parametrize("present", [["cli", "env", "study", "user"], ["env", "study", "user"],
                                     ["study", "user"], ["user"], []])  # fmt: skip
def test_precedence(present: list[str]) -> None:
    given = {layer: LAYERS[layer] for layer in present}
    study = make_study(
        runners={"vllm": given["study"]} if "study" in given else None,
        user_runners={"vllm": given["user"]} if "user" in given else None,
    )
    env = {**NO_ENV, **({"LLEM_RUNNER_VLLM": given["env"]} if "env" in given else {})}
    cli = {"vllm": given["cli"]} if "cli" in given else None
    spec = resolve_runners(study, env, cli)["vllm"]
    if present:
        winner = present[0]
        assert spec == RunnerSpec("docker", LAYERS[winner].removeprefix("docker:"), SOURCES[winner])
    else:
        assert spec == RunnerSpec("local", None, "default")


def test_each_backend_resolves_on_its_own() -> None:
    study = make_study(
        runners={"pytorch": "local"},
        experiments=[
            {"model": "a", "backend": "pytorch", "command": ["x"]},
            {"model": "b", "backend": "vllm", "image": "v/img:1"},
            {"model": "c", "backend": "tensorrt", "command": ["y"]},
        ],
    )
    specs = resolve_runners(study, {**NO_ENV, "LLEM_RUNNER_VLLM": "docker"})
    assert list(specs) == ["pytorch", "vllm", "tensorrt"]
    assert specs["pytorch"] == RunnerSpec("local", None, "study runners.pytorch")
    assert specs["vllm"] == RunnerSpec("docker", None, "env LLEM_RUNNER_VLLM")
    assert specs["tensorrt"] == RunnerSpec("local", None, "default")
    assert str(specs["vllm"]) == "docker"
    assert str(RunnerSpec("docker", "a/b:1", "cli")) == "docker:a/b:1"


def test_bare_docker_takes_the_backend_image() -> None:
    study = make_study(runners={"vllm": "docker"}, docker={"images": {"vllm": "v/img:2"}})
    assert resolve_runners(study, NO_ENV)["vllm"] == RunnerSpec(
        "docker", "v/img:2", "study runners.vllm"
    )


def test_bare_docker_without_any_image_is_a_config_error() -> None:
    study = make_study(runners={"vllm": "docker"})
    with pytest.raises(ConfigError, match=r"the docker runner \(from study runners.vllm\) needs"):
        resolve_runners(study, NO_ENV)


def test_a_local_runner_needs_a_command() -> None:
    study = make_study(experiments=[{"model": "m", "backend": "vllm"}])
    with pytest.raises(ConfigError, match=r"the local runner \(from default\) needs a command"):
        resolve_runners(study, NO_ENV)


@pytest.mark.parametrize(
    ("env", "cli", "message"),
    [
        ({"LLEM_RUNNER_VLLM": "singularity"}, None,
         "LLEM_RUNNER_VLLM: invalid runner 'singularity' (expected local, docker, podman, "
         "docker:<image> or podman:<image>)"),
        ({"LLEM_RUNNER_VLLM": "docker:$(touch /tmp/x)"}, None,
         "LLEM_RUNNER_VLLM: invalid image reference '$(touch /tmp/x)' ("),
        ({"LLEM_RUNNER_JAX": "local"}, None,
         "LLEM_RUNNER_JAX: unknown backend 'jax' (known backends: pytorch, tensorrt, vllm)"),
        ({}, {"vllm": "Docker"},
         "--runner vllm: invalid runner 'Docker' (expected local, docker, podman, "
         "docker:<image> or podman:<image>)"),
    ],
)  # fmt: skip
def test_invalid_override_values(
    env: dict[str, str], cli: dict[str, str] | None, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_runners(make_study(), {**NO_ENV, **env}, cli)
    assert str(info.value).startswith(message)


def test_env_runners_reads_only_its_prefix() -> None:
    assert env_runners({"LLEM_RUNNER_PYTORCH": "local", "PATH": "/bin"}) == {"pytorch": "local"}


@pytest.mark.parametrize(
    ("text", "result"),
    [("vllm=docker:a/b:1", ("vllm", "docker:a/b:1")), ("pytorch=local", ("pytorch", "local"))],
)
def test_runner_option(text: str, result: tuple[str, str]) -> None:
    assert parse_runner_option(text) == result


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vllm", "--runner vllm: expected BACKEND=RUNNER"),
        ("jax=local", "--runner jax=local: unknown backend 'jax'"),
    ],
)
def test_runner_option_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_runner_option(text)


# -- images ------------------------------------------------------------------------------------


def test_docker_images_are_the_dispatched_ones_in_order_once() -> None:
    study = make_study(
        runners={"vllm": "docker:v/default:1", "tensorrt": "docker", "pytorch": "local"},
        docker={"images": {"tensorrt": "t/img:1"}},
        experiments=[
            {"model": "a", "backend": "vllm"},
            {"model": "b", "backend": "pytorch", "command": ["x"], "image": "ignored/local:1"},
            {"model": "c", "backend": "vllm", "image": "v/special:2"},
            {"model": "d", "backend": "tensorrt"},
            {"model": "e", "backend": "vllm"},
        ],
    )
    runners = resolve_runners(study, NO_ENV)
    assert docker_images(study, runners) == ["v/default:1", "v/special:2", "t/img:1"]
    settings = preflight_settings(study, runners)
    assert settings.images == ("v/default:1", "v/special:2", "t/img:1")
    assert (settings.timeout_s, settings.pull_timeout_s, settings.cache_s) == (30, 600, 900)


def test_preflight_settings_fall_back_to_the_probe_image() -> None:
    study = make_study(
        experiments=[{"model": "a", "backend": "pytorch", "command": ["x"]}],
        docker={"probe_image": "p/probe:1", "probe_timeout_s": 5, "probe_cache_s": 0},
    )
    settings = preflight_settings(study, resolve_runners(study, NO_ENV))
    assert settings.images_to_check == ("p/probe:1",)
    assert (settings.timeout_s, settings.cache_s) == (5, 0)


# -- the pre-flight of a study, and its skip rule ----------------------------------------------


@pytest.fixture
def preflight_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def fake(**kwargs: Any) -> Report:
        calls.append(kwargs)
        return Report()

    monkeypatch.setattr("pytest_llem.preflight.run_docker_preflight", fake)
    return calls


DOCKER_STUDY: dict[str, Any] = {"runners": {"vllm": "docker:v/img:1"}}


@pytest.mark.parametrize(
    ("yaml_skip", "api_skip", "cli_skip", "source"),
    [
        (None, False, None, None),
        (True, False, None, "execution.skip_preflight in study.yaml"),
        (False, False, None, None),
        (None, True, None, "skip_preflight=True"),
        (True, False, False, None),  # --no-skip-preflight wins over the YAML
        (False, False, True, "--skip-preflight"),  # --skip-preflight wins over the YAML
        (None, True, False, None),  # and over the API argument
    ],
)
def test_skip_precedence(
    yaml_skip: bool | None, api_skip: bool, cli_skip: bool | None, source: str | None
) -> None:
    study = make_study(execution={"skip_preflight": yaml_skip}, **DOCKER_STUDY)
    assert skip_source(study, api_skip, cli_skip) == source


def test_docker_skip_alias() -> None:
    study = make_study(docker={"skip_preflight": True}, **DOCKER_STUDY)
    assert skip_source(study) == "docker.skip_preflight in study.yaml"


def test_preflight_runs_with_the_study_images_and_limits(
    preflight_calls: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    study = make_study(docker={"probe_timeout_s": 7, "probe_cache_s": 0}, **DOCKER_STUDY)
    assert isinstance(run_study_preflight(study), Report)
    assert preflight_calls == [
        {
            "settings": PreflightSettings(
                images=("v/img:1",), requests=(("v/img:1", "all"),), timeout_s=7, cache_s=0
            ),
            "facts": None,
        }
    ]
    assert capsys.readouterr().err == ""


def test_local_runners_only_run_the_measurement_tier(
    preflight_calls: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    study = make_study(
        runners={"vllm": "local"}, gpus=[1, 0], execution={"skip_checks": ["mig-mode"]}
    )
    assert isinstance(run_study_preflight(study, skip_checks=["gpu-idle"]), Report)
    [call] = preflight_calls
    settings = call["settings"]
    assert settings.measurement_only and settings.images_to_check == (settings.probe_image,)
    assert (settings.gpus, settings.skip) == ((0, 1), frozenset({"mig-mode", "gpu-idle"}))
    assert capsys.readouterr().err == ""


def test_a_local_study_skips_its_preflight_as_asked(
    preflight_calls: list[dict[str, Any]],
) -> None:
    study = make_study(runners={"vllm": "local"}, execution={"skip_preflight": True})
    report = run_study_preflight(study)
    assert report is not None and report.skipped_by == "execution.skip_preflight in study.yaml"
    assert preflight_calls == []


def test_docker_studies_judge_the_gpus_their_experiments_use(
    preflight_calls: list[dict[str, Any]],
) -> None:
    study = make_study(
        gpus=[2],
        experiments=[
            {"model": "m", "backend": "vllm", "gpus": [0]},
            {"model": "m", "backend": "vllm"},  # the study's: 2
        ],
        **DOCKER_STUDY,
    )
    run_study_preflight(study)
    [call] = preflight_calls
    assert (call["settings"].gpus, call["settings"].measurement_only) == ((0, 2), False)


@pytest.mark.parametrize(
    ("kwargs", "where"),
    [
        ({"cli_skip": True}, "--skip-preflight"),
        ({}, "execution.skip_preflight in study.yaml"),
    ],
)
def test_skip_warns_once_naming_its_source(
    preflight_calls: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    kwargs: dict[str, Any],
    where: str,
) -> None:
    study = make_study(execution={"skip_preflight": True}, **DOCKER_STUDY)
    report = run_study_preflight(study, **kwargs)
    assert report is not None and report.skipped_by == where and report.status == "skipped"
    assert preflight_calls == []
    assert capsys.readouterr().err == ""  # a library function returns, it does not print
    assert preflight_notice(report) == f"llem: warning: Docker pre-flight skipped ({where})"


def test_no_skip_flag_runs_it_despite_the_yaml(preflight_calls: list[dict[str, Any]]) -> None:
    study = make_study(execution={"skip_preflight": True}, **DOCKER_STUDY)
    run_study_preflight(study, cli_skip=False)
    assert len(preflight_calls) == 1


def test_env_override_reaches_the_preflight(
    preflight_calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LLEM_RUNNER_VLLM", "docker:env/img:3")
    path = tmp_path / "s.yaml"
    path.write_text("experiments: [{model: m, backend: vllm, command: [x]}]\n")
    run_study(load_study(path), dry_run=True)
    assert preflight_calls[0]["settings"].images == ("env/img:3",)


# -- what a resolved runner turns into ---------------------------------------------------------


def test_docker_run_argv_is_the_contract(tmp_path: Path) -> None:
    argv = _container_argv(tmp_path, None, ["serve", "--fast"])
    assert argv == [
        "docker", "run", "--rm", "--gpus", "all", "--name", "llem-s-001",
        "-v", f"{tmp_path}:/run/llem", "-e", "LLEM_CONFIG_PATH=/run/llem/001_config.json",
        "v/img:1", "serve", "--fast",
    ]  # fmt: skip


def _container_argv(run_dir: Path, devices: list[int] | None, command: list[str]) -> list[str]:
    """The argv the Docker runner kind starts for a launch on a local engine."""
    from pytest_llem.run.runner_kinds import DockerRunner, Started

    kind = DockerRunner()
    launch = kind.launch("001", "v/img:1", devices, {"DOCKER_HOST": "unix:///x.sock"})
    assert not launch.remote
    started = Started(run_dir, "llem-s-001", b"{}", run_dir / "c", run_dir / "l", command, run_dir)
    return kind.argv(launch, started)


def test_run_ids_differ() -> None:
    from pytest_llem.run.dispatch import new_run_id

    ids = {new_run_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 8 for i in ids)


def test_output_must_not_be_empty() -> None:
    from pytest_llem.errors import ConfigError
    from pytest_llem.run.dispatch import run_dir_for

    for empty in ("", "  "):
        with pytest.raises(ConfigError, match=r"^--output: must not be empty$"):
            run_dir_for(empty, "s")


def test_run_dir_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime, timezone

    from pytest_llem.run.dispatch import make_run_dir, run_dir_for

    monkeypatch.chdir(tmp_path)
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    default = run_dir_for(None, "my study", when)
    assert default == tmp_path / "llem-runs" / "my-study-20260102T030405Z"
    assert run_dir_for("out", "s") == tmp_path / "out"
    assert make_run_dir(default, "run directory", exclusive=True) == default
    again = make_run_dir(default, "run directory", exclusive=True)
    assert again == default.with_name(default.name + "-2")  # two runs in one second
    assert make_run_dir(tmp_path / "out", "--output", exclusive=False).is_dir()
    assert make_run_dir(tmp_path / "out", "--output", exclusive=False) == tmp_path / "out"


def test_gpus_reach_the_container_and_local_runs(tmp_path: Path) -> None:
    from pytest_llem.domain.gpu_request import docker_args, label_of

    assert docker_args(label_of(None)) == ["--gpus", "all"]
    assert docker_args(label_of([0, 1])) == ["--gpus", '"device=0,1"']  # the CLI reads CSV
    argv = _container_argv(tmp_path, [1], [])
    assert argv[argv.index("--gpus") + 1] == '"device=1"'


def test_a_local_run_sees_only_its_gpus(tmp_path: Path) -> None:
    from pytest_llem.run.dispatch import run_one

    script = tmp_path / "w.py"
    script.write_text(
        "import json, os\n"
        "c = json.load(open(os.environ['LLEM_CONFIG_PATH']))\n"
        "env = {k: os.environ.get(k) for k in ('CUDA_VISIBLE_DEVICES', 'CUDA_DEVICE_ORDER')}\n"
        "json.dump(env, open(c['result_path'], 'w'))\n"
    )
    study = make_study(
        gpus=[2, 0],
        experiments=[
            {"model": "m", "backend": "pytorch", "command": [sys.executable, str(script)]},
            {"model": "m", "backend": "pytorch", "command": [sys.executable, str(script)],
             "gpus": [1]},
        ],
    )  # fmt: skip
    spec = resolve_runners(study, NO_ENV)["pytorch"]
    results = [
        run_one(study, experiment, exp_id, spec, tmp_path).result
        for exp_id, experiment in study.numbered()
    ]
    assert results == [
        {"CUDA_VISIBLE_DEVICES": "2,0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
        {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
    ]


# -- Podman, and CDI requests ------------------------------------------------------------------


def test_a_podman_study_is_checked_on_podman_through_cdi() -> None:
    study = make_study(runners={"vllm": "podman:p/img:1"}, gpus=[1])
    settings = preflight_settings(study, env=NO_ENV)
    assert settings.engine == "podman"
    assert settings.runner_kinds == frozenset({"podman", "cdi"})
    assert settings.requests == (("p/img:1", "device=1"),)
    assert "podman-cli" in settings.required_ids() and "cdi-spec" in settings.required_ids()
    assert not {"docker-cli", "docker-daemon", "nvidia-toolkit"} & set(settings.required_ids())


def test_a_bare_podman_runner_takes_the_backend_image() -> None:
    study = make_study(runners={"vllm": "podman"}, docker={"images": {"vllm": "p/img:2"}})
    spec = resolve_runners(study, NO_ENV)["vllm"]
    assert (spec.mode, spec.image, str(spec)) == ("podman", "p/img:2", "podman:p/img:2")


def test_docker_and_podman_in_one_study_is_a_config_error() -> None:
    study = make_study(
        runners={"vllm": "docker:d/img:1", "pytorch": "podman:p/img:1"},
        experiments=[{"model": "m", "backend": "vllm"}, {"model": "m", "backend": "pytorch"}],
    )
    with pytest.raises(ConfigError, match="must run on one engine, Docker or Podman, not both"):
        resolve_runners(study, NO_ENV)


def test_podman_with_gpu_request_gpus_is_a_config_error() -> None:
    study = make_study(runners={"vllm": "podman:p/img:1"}, docker={"gpu_request": "gpus"})
    with pytest.raises(ConfigError, match="Podman gives containers GPUs through CDI only"):
        resolve_runners(study, NO_ENV)


def test_gpu_request_cdi_makes_the_docker_checks_include_the_spec() -> None:
    study = make_study(docker={"gpu_request": "cdi"}, **DOCKER_STUDY)
    settings = preflight_settings(study, env=NO_ENV)
    assert (settings.engine, settings.gpu_request) == ("docker", "cdi")
    assert "cdi-spec" in settings.required_ids() and "docker-cli" in settings.required_ids()
    default = preflight_settings(make_study(**DOCKER_STUDY), env=NO_ENV)
    assert "cdi-spec" not in default.required_ids()  # (auto: the engine decides)


def test_the_cdi_and_podman_run_argv(tmp_path: Path) -> None:
    from pytest_llem.run.runner_kinds import DockerRunner, PodmanRunner, Started

    started = Started(tmp_path, "llem-s-001", b"{}", tmp_path / "c", tmp_path / "l", None, tmp_path)
    docker = DockerRunner()
    launch = docker.launch("001", "v/img:1", [1, 3], {"DOCKER_HOST": "unix:///x.sock"}, "cdi")
    argv = docker.argv(launch, started)
    assert argv[:7] == [
        "docker", "run", "--rm", "--device", "nvidia.com/gpu=1", "--device", "nvidia.com/gpu=3",
    ]  # fmt: skip
    podman = PodmanRunner()
    launch = podman.launch("001", "p/img:1", None, {})
    assert podman.argv(launch, started) == [
        "podman", "run", "--rm", "--device", "nvidia.com/gpu=all", "--name", "llem-s-001",
        "-v", f"{tmp_path}:/run/llem", "-e", "LLEM_CONFIG_PATH=/run/llem/001_config.json",
        "p/img:1",
    ]  # fmt: skip


def test_auto_is_decided_when_the_experiment_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_llem.run import runner_kinds

    launch = runner_kinds.DockerRunner().launch("001", "v/img:1", [0], {}, "auto")
    with pytest.raises(ValueError, match="decided when it starts"):
        _ = launch.gpu_args
    monkeypatch.setattr("pytest_llem.host.gpu_path.docker_gpu_path", lambda env: "cdi")
    assert runner_kinds.decided(launch).gpu_args == ["--device", "nvidia.com/gpu=0"]
