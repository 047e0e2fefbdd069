"""The study file: what loads, and the one-line message (exit 2) for each kind of bad input."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pytest_llem.cli import main
from pytest_llem.errors import ConfigError
from pytest_llem.run.config import (
    StudyConfig,
    load_study,
    load_user_config,
    user_config_path,
)

DESIGN_EXAMPLE = """\
name: llama-energy
execution:
  skip_preflight: false
runners:                 # per backend: local | docker | docker:<image>
  pytorch: local
  vllm: docker:vllm/vllm-openai:v0.6.3
docker:
  probe_timeout_s: 30
experiments:
  - {model: meta-llama/Llama-3.1-8B, backend: vllm}
  - {model: gpt2, backend: pytorch, command: [python, bench.py]}
"""

KNOWN = "(known backends: pytorch, tensorrt, vllm)"
OK_EXPERIMENT = "experiments: [{model: gpt2, backend: pytorch, command: [python, b.py]}]\n"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user config, no LLEM_RUNNER_* of the machine; relative paths under tmp_path."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in list(os.environ):
        if name.startswith("LLEM_RUNNER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(text: str, name: str = "study.yaml") -> Path:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def llem_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run `llem ARGS`; assert exit 2 with exactly one `llem: error:` line; return its text."""
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("llem: error: ")
    assert "Traceback" not in err
    return lines[0].removeprefix("llem: error: ")


def study_error(capsys: pytest.CaptureFixture[str], text: str) -> str:
    write(text)
    return llem_error(capsys, "run", "study.yaml", "--dry-run")


# -- what loads --------------------------------------------------------------------------------


def test_design_example_loads() -> None:
    study = load_study(write(DESIGN_EXAMPLE))
    assert study.name == "llama-energy"
    assert study.runners == {"pytorch": "local", "vllm": "docker:vllm/vllm-openai:v0.6.3"}
    settings = study.docker.preflight_settings()
    assert settings.timeout_s == 30
    assert settings.probe_image == "nvidia/cuda:12.0.0-base-ubuntu22.04"
    assert (settings.pull_timeout_s, settings.cache_s) == (600, 900)
    assert [e.model for e in study.experiments] == ["meta-llama/Llama-3.1-8B", "gpt2"]
    assert study.experiments[1].command == ["python", "bench.py"]
    assert [i for i, _ in study.numbered()] == ["001", "002"]
    assert study.path == Path("study.yaml")
    assert study.skip_preflight_setting() == (False, "execution.skip_preflight in study.yaml")


def test_name_defaults_to_the_file_stem() -> None:
    assert load_study(write(OK_EXPERIMENT, "my-study.yml")).name == "my-study"


def test_ids_params_and_images() -> None:
    study = load_study(
        write(
            "experiments:\n"
            "  - {model: m, backend: vllm, id: 7, image: 'localhost:5000/a/b:tag',\n"
            "     params: {batch: [1, 2], when: 2024-01-01, nested: {a: null}}}\n"
            "  - {model: m, backend: vllm, id: second}\n"
            "  - {model: m, backend: vllm}\n"
        )
    )
    assert [i for i, _ in study.numbered()] == ["7", "second", "003"]
    assert study.experiments[0].image == "localhost:5000/a/b:tag"
    assert study.experiments[0].params["batch"] == [1, 2]


def test_yaml_merge_keys_are_not_duplicates() -> None:
    study = load_study(
        write(
            "experiments:\n"
            "  - &base {backend: pytorch, command: [python, b.py], model: gpt2}\n"
            "  - {<<: *base, model: opt, id: x}\n"
        )
    )
    assert [(e.model, e.backend) for e in study.experiments] == [
        ("gpt2", "pytorch"),
        ("opt", "pytorch"),
    ]


def test_user_config_sits_below_the_study(tmp_path: Path) -> None:
    user = tmp_path / "xdg" / "llenergymeasure" / "config.yaml"
    user.parent.mkdir(parents=True)
    user.write_text(
        "runners: {vllm: docker}\n"
        "docker: {probe_timeout_s: 99, pull_timeout_s: 5,\n"
        "         images: {vllm: 'u/vllm:1', pytorch: 'u/pt:1'}}\n"
    )
    study = load_study(
        write("docker: {probe_timeout_s: 12, images: {vllm: 's/vllm:2'}}\n" + OK_EXPERIMENT)
    )
    assert study.docker.probe_timeout_s == 12  # the study wins
    assert study.docker.pull_timeout_s == 5  # the user's default where the study says nothing
    assert study.docker.images == {"vllm": "s/vllm:2", "pytorch": "u/pt:1"}
    assert study.runners == {}
    assert study.user.runners == {"vllm": "docker"}  # kept apart: its source is reported


def test_user_config_errors_name_that_file(tmp_path: Path) -> None:
    user = tmp_path / "xdg" / "llenergymeasure" / "config.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("runners: {vllm: singularity}\n")
    with pytest.raises(ConfigError) as info:
        load_study(write(OK_EXPERIMENT))
    assert str(info.value) == (
        f"{user}: runners.vllm: invalid runner 'singularity' (expected local, docker, podman, "
        "docker:<image> or podman:<image>)"
    )


def test_user_config_path_follows_xdg(tmp_path: Path) -> None:
    assert user_config_path({"XDG_CONFIG_HOME": "/x", "HOME": "/h"}) == Path(
        "/x/llenergymeasure/config.yaml"
    )
    # A relative XDG_CONFIG_HOME is ignored, as the XDG spec says.
    assert user_config_path({"XDG_CONFIG_HOME": "rel", "HOME": "/h"}) == Path(
        "/h/.config/llenergymeasure/config.yaml"
    )
    assert load_user_config({"XDG_CONFIG_HOME": str(tmp_path / "none")}).runners == {}


def test_study_built_in_code_is_validated_too() -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        StudyConfig.model_validate({"experiments": [{"model": "m", "backend": "jax"}]})


# -- one clear line for each bad input ---------------------------------------------------------

CASES = [
    pytest.param(
        "experiments:\n  - {modle: gpt2, model: gpt2, backend: pytorch}\n",
        "study.yaml: experiments.0.modle: unknown key (did you mean 'model'?)",
        id="unknown-key-in-experiment",
    ),
    pytest.param("nmae: x\n", "study.yaml: nmae: unknown key (did you mean 'name'?)", id="top"),
    pytest.param(
        "docker: {probe_timeout: 3}\n",
        "study.yaml: docker.probe_timeout: unknown key (did you mean 'probe_timeout_s'?)",
        id="unknown-key-in-docker",
    ),
    pytest.param(
        "frobnicate: 1\n", "study.yaml: frobnicate: unknown key", id="unknown-key-no-suggestion"
    ),
    pytest.param(
        "experiments: [{model: gpt2}]\n",
        "study.yaml: experiments.0.backend: missing required key",
        id="missing-key",
    ),
    pytest.param(
        "docker: {probe_timeout_s: fast}\n",
        "study.yaml: docker.probe_timeout_s: expected a number, got a string",
        id="number",
    ),
    pytest.param(
        "experiments: {model: gpt2}\n",
        "study.yaml: experiments: expected a list, got a mapping",
        id="list",
    ),
    pytest.param(
        "execution: {skip_preflight: 'yes'}\n",
        "study.yaml: execution.skip_preflight: expected true or false, got a string",
        id="bool",
    ),
    pytest.param(
        "execution: true\n",
        "study.yaml: execution: expected a mapping, got a boolean",
        id="mapping",
    ),
    pytest.param(
        "experiments: [{model: gpt2, backend: pytorch, command: python bench.py}]\n",
        "study.yaml: experiments.0.command: expected a list, got a string",
        id="command-string",
    ),
    pytest.param("name: 5\n", "study.yaml: name: expected a string, got an integer", id="str"),
    pytest.param(
        "experiments: [{model: gpt2, backend: pytorch, params: [1]}]\n",
        "study.yaml: experiments.0.params: expected a mapping, got a list",
        id="params",
    ),
    pytest.param(
        "experiments: [{model: gpt2, backend: jax}]\n",
        f"study.yaml: experiments.0.backend: unknown backend 'jax' {KNOWN}",
        id="unknown-backend",
    ),
    pytest.param(
        "runners: {jax: local}\n",
        f"study.yaml: runners.jax: unknown backend 'jax' {KNOWN}",
        id="unknown-runner-backend",
    ),
    pytest.param(
        "docker: {images: {jax: 'a/b:1'}}\n",
        f"study.yaml: docker.images.jax: unknown backend 'jax' {KNOWN}",
        id="unknown-image-backend",
    ),
    pytest.param(
        "runners: {vllm: singularity}\n",
        "study.yaml: runners.vllm: invalid runner 'singularity' "
        "(expected local, docker, podman, docker:<image> or podman:<image>)",
        id="invalid-runner",
    ),
    pytest.param(
        "runners: {vllm: 'docker:$(touch /tmp/x)'}\n",
        "study.yaml: runners.vllm: invalid image reference '$(touch /tmp/x)' (",
        id="runner-image",
    ),
    pytest.param(
        "docker: {images: {vllm: 'Bad Image'}}\n",
        "study.yaml: docker.images.vllm: invalid image reference 'Bad Image' (",
        id="docker-images",
    ),
    pytest.param(
        "docker: {probe_image: 'nvidia/CUDA:12'}\n",
        "study.yaml: docker.probe_image: invalid image reference 'nvidia/CUDA:12' (",
        id="probe-image",
    ),
    pytest.param(
        "experiments: [{model: m, backend: vllm, image: '--privileged'}]\n",
        "study.yaml: experiments.0.image: invalid image reference '--privileged' (",
        id="experiment-image",
    ),
    pytest.param(
        "docker: {probe_timeout_s: 0}\n",
        "study.yaml: docker.probe_timeout_s: should be greater than 0, got 0",
        id="positive",
    ),
    pytest.param(
        "docker: {probe_cache_s: -1}\n",
        "study.yaml: docker.probe_cache_s: should be greater than or equal to 0, got -1",
        id="non-negative",
    ),
    pytest.param(
        "docker: {probe_timeout_s: .inf}\n",
        "study.yaml: docker.probe_timeout_s: should be a finite number, got inf",
        id="finite",
    ),
    pytest.param(
        "experiments: [{model: gpt2, backend: pytorch, command: []}]\n",
        "study.yaml: experiments.0.command: must not be empty",
        id="empty-command",
    ),
    pytest.param(
        "experiments: [{model: '', backend: pytorch}]\n",
        "study.yaml: experiments.0.model: must not be empty",
        id="empty-model",
    ),
    pytest.param(
        "experiments: [{model: m, backend: pytorch, id: 'a b'}]\n",
        "study.yaml: experiments.0.id: invalid value 'a b' ",
        id="bad-id",
    ),
    pytest.param(
        "experiments: [{model: m, backend: vllm, id: x}, {model: n, backend: vllm, id: x}]\n",
        "study.yaml: duplicate experiment id 'x': experiments.0 (m, id: x) and "
        "experiments.1 (n, id: x)",
        id="duplicate-id",
    ),
    pytest.param(
        "experiments: [{model: m, backend: vllm, id: '002'}, {model: n, backend: vllm}]\n",
        "study.yaml: duplicate experiment id '002': experiments.0 (m, id: 002) and "
        "experiments.1 (n, numbered 002 by its position)",
        id="duplicate-effective-id",
    ),
    pytest.param(
        "execution: {skip_preflight: false}\ndocker: {skip_preflight: true}\n",
        "study.yaml: execution.skip_preflight and docker.skip_preflight disagree",
        id="skip-conflict",
    ),
    pytest.param(
        "gpus: []\nexperiments: [{model: m, backend: vllm}]\n",
        "study.yaml: gpus: must not be empty",
        id="gpus-empty",
    ),
    pytest.param(
        "experiments: [{model: m, backend: vllm, gpus: [0, -1]}]\n",
        "study.yaml: experiments.0.gpus.1: should be greater than or equal to 0, got -1",
        id="gpus-negative",
    ),
    pytest.param(
        "gpus: [1, 1]\nexperiments: [{model: m, backend: vllm}]\n",
        "study.yaml: gpus: GPU 1 is listed twice",
        id="gpus-twice",
    ),
    pytest.param(
        "gpus: '0,1'\nexperiments: [{model: m, backend: vllm}]\n",
        "study.yaml: gpus: expected a list, got a string",
        id="gpus-string",
    ),
    pytest.param(
        "execution: {skip_checks: [gpu-idel]}\nexperiments: [{model: m, backend: vllm}]\n",
        "study.yaml: execution.skip_checks: unknown check id 'gpu-idel' (valid ids: all, ",
        id="skip-checks-unknown",
    ),
    pytest.param(
        "name: a\nname: b\n",
        "study.yaml:2:1: invalid YAML: duplicate key 'name'",
        id="duplicate-key",
    ),
    pytest.param(
        "- a\n- b\n", "study.yaml: expected a mapping at the top level, got a list", id="top-list"
    ),
    pytest.param(
        "just text\n",
        "study.yaml: expected a mapping at the top level, got a string",
        id="top-scalar",
    ),
    pytest.param("", "study.yaml: the file is empty", id="empty"),
    pytest.param("# only a comment\n", "study.yaml: the file is empty", id="comment-only"),
    pytest.param("1: x\n", "study.yaml: 1: keys must be strings", id="int-key"),
    pytest.param("experiments: []\n", "study.yaml: no experiments to run", id="no-experiments"),
    pytest.param(
        "experiments: [{model: gpt2, backend: pytorch}]\n",
        "experiment 001 (gpt2 on pytorch): the local runner (from default) needs a command",
        id="local-without-command",
    ),
    pytest.param(
        "runners: {vllm: docker}\nexperiments: [{model: m, backend: vllm, id: big}]\n",
        "experiment big (m on vllm): the docker runner (from study runners.vllm) needs an "
        "image: set the experiment's image, docker.images.vllm, or use docker:<image>",
        id="docker-without-image",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_one_line_for_each_bad_input(
    capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    message = study_error(capsys, text)
    if expected.endswith(("(", " ")):
        assert message.startswith(expected)
    else:
        assert message == expected


@pytest.mark.parametrize(
    "text",
    ["name: [a, b\n", "experiments:\n  - {model: m\n", "a: b: c\n", "\tname: x\n", "x: 'open\n"],
)
def test_invalid_yaml_names_file_line_and_column(
    capsys: pytest.CaptureFixture[str], text: str
) -> None:
    assert re.match(r"study\.yaml:\d+:\d+: invalid YAML: \S", study_error(capsys, text))


def test_several_problems_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    message = study_error(
        capsys,
        "experiments:\n"
        "  - {modle: a, backend: jax}\n"
        "  - {model: a, backend: vllm, image: X}\n"
        "  - {model: a, backend: vllm, id: '#'}\n"
        "  - {model: a, backend: vllm, command: 1}\n",
    )
    assert message.startswith("study.yaml: experiments.0.model: missing required key; ")
    assert message.endswith("(and 3 more)")


def test_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert llem_error(capsys, "run", "nope.yaml") == "nope.yaml: no such file"


def test_directory(capsys: pytest.CaptureFixture[str]) -> None:
    Path("adir").mkdir()
    assert llem_error(capsys, "run", "adir") == "adir: is a directory, not a study file"


def test_not_utf8(capsys: pytest.CaptureFixture[str]) -> None:
    Path("study.yaml").write_bytes(b"name: \xff\xfe\n")
    assert llem_error(capsys, "run", "study.yaml") == "study.yaml: not UTF-8 text"


def test_unreadable(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    write(OK_EXPERIMENT)

    def denied(*args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied")

    # (the tests run as root, who may read any file: the study's one read is denied here)
    monkeypatch.setattr("pytest_llem.host.study_file.open", denied, raising=False)
    assert llem_error(capsys, "run", "study.yaml") == "study.yaml: permission denied"


def test_preflight_command_reports_config_errors_too(capsys: pytest.CaptureFixture[str]) -> None:
    write("runners: {vllm: singularity}\n")
    assert llem_error(capsys, "preflight", "study.yaml").startswith(
        "study.yaml: runners.vllm: invalid runner 'singularity'"
    )


def _bomb(levels: int = 9) -> str:
    """About 700 bytes of YAML that stand for 10**levels values once expanded."""
    anchors = ", ".join(
        f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, levels + 1)
    )
    return f"{{a0: &a0 [x, x, x, x, x, x, x, x, x, x], {anchors}}}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "experiments: [{model: m, backend: pytorch, command: [x], params: " + _bomb() + "}]\n",
            "study.yaml: more than 100000 values once its aliases are expanded (an alias bomb?)",
        ),
        ("name: " + _bomb() + "\n", "study.yaml: more than 100000 values once its aliases"),
        ("x: " + "[" * 70 + "]" * 70 + "\n", "study.yaml:1: nested deeper than 64 levels"),
        ("x: &a [*a]\n", "study.yaml:"),
    ],
)
def test_hostile_yaml_is_refused_before_anything_is_built(
    capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    import time
    import tracemalloc

    write(text)
    tracemalloc.start()
    start = time.monotonic()
    try:
        assert llem_error(capsys, "run", "study.yaml", "--dry-run").startswith(message)
        assert llem_error(capsys, "preflight", "study.yaml").startswith(message)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - start < 5 and peak < 50 * 1024 * 1024


def test_a_file_larger_than_4_mib_is_refused_unread(capsys: pytest.CaptureFixture[str]) -> None:
    write("# " + "x" * (4 * 1024 * 1024) + "\n" + OK_EXPERIMENT)
    assert llem_error(capsys, "run", "study.yaml") == "study.yaml: larger than 4 MiB"


def test_a_user_config_bomb_is_refused_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    user = tmp_path / "xdg" / "llenergymeasure" / "config.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("runners: " + _bomb() + "\n")
    write(OK_EXPERIMENT)
    assert "more than 100000 values" in llem_error(capsys, "run", "study.yaml", "--dry-run")


def test_gpus_of_each_experiment() -> None:
    study = StudyConfig.model_validate(
        {
            "gpus": [2, 0],
            "execution": {"skip_checks": ["gpu-idle", "gpu-in-container[a/b:1]"]},
            "experiments": [
                {"model": "m", "backend": "vllm", "gpus": [3]},
                {"model": "m", "backend": "vllm"},
            ],
        }
    )
    first, second = study.experiments
    assert (study.gpus_of(first), study.gpus_of(second)) == ([3], [2, 0])
    assert study.used_gpus() == (0, 2, 3)
    everything = StudyConfig.model_validate(
        {
            "experiments": [
                {"model": "m", "backend": "vllm", "gpus": [1]},
                {"model": "m", "backend": "vllm"},
            ]
        }
    )
    assert everything.used_gpus() == ()  # the second experiment uses all of them
