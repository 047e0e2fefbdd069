"""Which runner each backend uses: CLI > env LLEM_RUNNER_<BACKEND> > study > user config > default.

The pre-flight and the dispatch both ask this module, so the images checked are the images run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..host.paths import user_config_path
from ..settings import PreflightSettings
from .config import (
    BACKENDS,
    Experiment,
    RunnerMode,
    StudyConfig,
    known_backends,
    load_study,
    parse_runner,
)

DEFAULT_RUNNER = "local"
ENV_PREFIX = "LLEM_RUNNER_"


@dataclass(frozen=True)
class RunnerSpec:
    """How a backend's experiments run; ``image`` is the backend's default Docker image."""

    mode: RunnerMode
    image: str | None
    source: str  # cli | env LLEM_RUNNER_X | study runners.x | user config | default

    def __str__(self) -> str:
        return f"docker:{self.image}" if self.mode == "docker" and self.image else self.mode


def parse_runner_option(text: str) -> tuple[str, str]:
    """``BACKEND=RUNNER`` from ``--runner``; the runner itself is checked on resolution."""
    backend, sep, runner = text.partition("=")
    if not sep:
        raise ConfigError(f"--runner {text}: expected BACKEND=RUNNER, e.g. vllm=docker:IMAGE")
    if backend not in BACKENDS:
        raise ConfigError(
            f"--runner {text}: unknown backend {backend!r} (known backends: {known_backends()})"
        )
    return backend, runner


def env_runners(env: Mapping[str, str]) -> dict[str, str]:
    """Each ``LLEM_RUNNER_<BACKEND>`` in ``env``, by backend; an unknown backend is an error."""
    found: dict[str, str] = {}
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        backend = name.removeprefix(ENV_PREFIX).lower()
        if backend not in BACKENDS:
            raise ConfigError(
                f"{name}: unknown backend {backend!r} (known backends: {known_backends()})"
            )
        found[backend] = env[name]
    return found


def resolve_runners(
    study: StudyConfig,
    env: Mapping[str, str] | None = None,
    cli_overrides: Mapping[str, str] | None = None,
) -> dict[str, RunnerSpec]:
    """The runner of every backend the study's experiments use, in order of first use.

    Raises ConfigError for an invalid runner value, a Docker experiment with no image, or a
    local experiment with no command.
    """
    env = os.environ if env is None else env
    from_env = env_runners(env)
    cli = cli_overrides or {}
    specs: dict[str, RunnerSpec] = {}
    for backend in dict.fromkeys(e.backend for e in study.experiments):
        var = f"{ENV_PREFIX}{backend.upper()}"
        candidates = (  # (value, source, the field named in an error)
            (cli.get(backend), "cli", f"--runner {backend}"),
            (from_env.get(backend), f"env {var}", var),
            (
                study.runners.get(backend),
                f"study runners.{backend}",
                f"{study.origin}: runners.{backend}",
            ),
            (
                study.user.runners.get(backend),
                "user config",
                f"{user_config_path(env)}: runners.{backend}",
            ),
            (DEFAULT_RUNNER, "default", "default runner"),
        )
        value, source, field = next((v, s, f) for v, s, f in candidates if v is not None)
        try:
            mode, image = parse_runner(value)
        except ValueError as exc:
            raise ConfigError(f"{field}: {exc}") from None
        if mode == "docker" and image is None:
            image = study.docker.images.get(backend)
        specs[backend] = RunnerSpec(mode, image, source)
    for exp_id, experiment in study.numbered():
        check_runnable(exp_id, experiment, specs[experiment.backend])
    return specs


def check_runnable(exp_id: str, experiment: Experiment, spec: RunnerSpec) -> None:
    """A Docker experiment needs an image, a local one a command (ConfigError otherwise)."""
    what = f"experiment {exp_id} ({experiment.model} on {experiment.backend})"
    if spec.mode == "docker" and not (experiment.image or spec.image):
        raise ConfigError(
            f"{what}: the docker runner (from {spec.source}) needs an image: set the "
            f"experiment's image, docker.images.{experiment.backend}, or use docker:<image>"
        )
    if spec.mode == "local" and not experiment.command:
        raise ConfigError(f"{what}: the local runner (from {spec.source}) needs a command")


def experiment_image(experiment: Experiment, spec: RunnerSpec) -> str | None:
    """The image a Docker experiment runs (its own ``image:`` first); None when run locally."""
    if spec.mode != "docker":
        return None
    return experiment.image or spec.image


def docker_images(study: StudyConfig, runners: Mapping[str, RunnerSpec]) -> list[str]:
    """The images the dispatch will run, in experiment order, each once."""
    images = (experiment_image(e, runners[e.backend]) for e in study.experiments)
    return list(dict.fromkeys(i for i in images if i))


def preflight_settings(
    study: StudyConfig, runners: Mapping[str, RunnerSpec] | None = None
) -> PreflightSettings:
    """The study's Docker images (else its probe image), its ``docker:`` limits, the GPUs its
    experiments use and the checks ``execution.skip_checks`` names."""
    runners = resolve_runners(study) if runners is None else runners
    return study.docker.preflight_settings().replace(
        images=tuple(docker_images(study, runners)),
        gpus=study.used_gpus(),
        skip=frozenset(study.execution.skip_checks),
    )


def preflight_settings_from_study(path: str | Path) -> PreflightSettings:
    """`pytest --llem-config PATH`: the same images and limits as `llem run PATH` uses."""
    return preflight_settings(load_study(path))
