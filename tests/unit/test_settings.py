"""PreflightSettings: one model, its defaults and limits, and its names everywhere."""

from __future__ import annotations

import dataclasses
import re

import pytest

from pytest_llem.run.config import DockerSettings
from pytest_llem.settings import PreflightSettings, SettingError, study_fields


def test_defaults() -> None:
    settings = PreflightSettings()
    assert settings.images_to_check == ("nvidia/cuda:12.0.0-base-ubuntu22.04",)
    assert (settings.timeout_s, settings.pull_timeout_s, settings.cache_s) == (30, 600, 900)


def test_the_host_timeout_covers_a_pull_and_a_probe_unless_given() -> None:
    assert PreflightSettings().host_timeout == 600 + 30 + 60
    assert PreflightSettings(pull_timeout_s=100, timeout_s=5).host_timeout == 165
    assert PreflightSettings(wait_s=3600).host_timeout == 3660  # (a tier-1 wait, longer)
    assert PreflightSettings(host_timeout_s=8).host_timeout == 8
    given = PreflightSettings.from_options({"llem_host_timeout": "2.5"})
    assert given.host_timeout == 2.5
    with pytest.raises(SettingError, match=r"^--host-timeout: should be greater than 0, got 0"):
        PreflightSettings.from_options({"llem_host_timeout": "0"}, named_by="cli")


def test_images_are_deduplicated_in_order() -> None:
    settings = PreflightSettings(images=("b/x:1", "a/y:2", "b/x:1"))
    assert settings.images == ("b/x:1", "a/y:2")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"timeout_s": 0}, "--llem-timeout: should be greater than 0, got 0"),
        ({"timeout_s": float("nan")}, "--llem-timeout: should be a finite number, got nan"),
        ({"cache_s": -1}, "--llem-cache-s: should be greater than or equal to 0, got -1"),
        ({"pull_timeout_s": 10**400}, "--llem-pull-timeout: should be a finite number"),
        ({"timeout_s": True}, "--llem-timeout: expected a number of seconds, got True"),
        ({"images": ("ok/img:1", "-rf")}, "--llem-image: invalid image reference '-rf'"),
        ({"images": "a/b:1"}, "--llem-image: expected a list of strings"),
        ({"probe_image": "nvidia/CUDA:12"}, "--llem-probe-image: invalid image reference"),
        ({"json_path": ""}, "--llem-json: expected a path"),
    ],
)
def test_every_value_is_checked_when_built(changes: dict[str, object], message: str) -> None:
    with pytest.raises(SettingError, match="^" + message.replace("(", r"\(")):
        PreflightSettings(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("index", ["²", "١", "٣"])
def test_gpu_indices_are_ascii_digits(index: str) -> None:
    """`int()` takes "١" (1) and refuses "²", which str.isdigit() accepts: neither is an index."""
    message = f"--llem-gpus: expected GPU indices (0, 1, ...), got {index!r}"
    with pytest.raises(SettingError, match="^" + re.escape(message) + "$"):
        PreflightSettings(gpus=("0", index))  # type: ignore[arg-type]
    assert PreflightSettings(gpus=(" 1", "0")).gpus == (0, 1)  # type: ignore[arg-type]


def test_options_name_the_flag_the_user_typed() -> None:
    values = {"llem_timeout": "-1"}
    with pytest.raises(SettingError, match=r"^--llem-timeout: "):
        PreflightSettings.from_options(values)
    with pytest.raises(SettingError, match=r"^--timeout: "):
        PreflightSettings.from_options(values, named_by="cli")


def test_options_over_a_study_over_the_defaults() -> None:
    study = PreflightSettings().with_study({"probe_timeout_s": 7.0, "pull_timeout_s": None})
    assert (study.timeout_s, study.pull_timeout_s) == (7.0, 600.0)
    given = PreflightSettings.from_options(
        {"llem_timeout": "3", "llem_skip": ["a, b", "c"], "llem_image": []}, study
    )
    assert (given.timeout_s, given.skip) == (3.0, frozenset({"a", "b", "c"}))


def test_every_study_key_is_a_setting_with_the_same_limits() -> None:
    """The study's `docker:` keys come from the settings: one definition, two front ends."""
    keys = {key for key, _ in study_fields()}
    assert keys == {
        "probe_image", "probe_timeout_s", "pull_timeout_s", "probe_cache_s", "gpu_request"
    }  # fmt: skip
    assert keys <= set(DockerSettings.model_fields)
    with pytest.raises(ValueError, match="less than or equal to 86400"):
        DockerSettings.model_validate({"probe_timeout_s": 86401})
    with pytest.raises(SettingError, match="less than or equal to 86400"):
        PreflightSettings(timeout_s=86401)
    with pytest.raises(ValueError, match="'auto', 'gpus' or 'cdi'"):
        DockerSettings.model_validate({"gpu_request": "nvidia"})
    with pytest.raises(SettingError, match="expected one of auto, gpus, cdi, got 'nvidia'"):
        PreflightSettings(gpu_request="nvidia")


def test_no_default_is_defined_twice() -> None:
    """The study model leaves unset keys unset (None): only PreflightSettings has defaults."""
    assert all(DockerSettings.model_fields[key].default is None for key, _ in study_fields())
    assert DockerSettings().preflight_settings() == PreflightSettings()
    assert {f.name for f in dataclasses.fields(PreflightSettings)} >= {
        f.name for _, f in study_fields()
    }
