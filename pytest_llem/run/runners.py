"""Which runner each backend uses: CLI > env LLEM_RUNNER_<BACKEND> > study > user config > default.

The pre-flight and the dispatch both ask this module, so the images checked are the images run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..domain.check_ids import DOCKER
from ..errors import ConfigError
from ..host.paths import user_config_path
from ..settings import PreflightSettings
from .config import BACKENDS, Experiment, RunnerMode, StudyConfig, known_backends, load_study
from .runner_kinds import KINDS, Launch, RunnerKind, parse_runner

DEFAULT_RUNNER = "local"
ENV_PREFIX = "LLEM_RUNNER_"


@dataclass(frozen=True)
class RunnerSpec:
    """How a backend's experiments run; ``image`` is the backend's default Docker image."""

    mode: RunnerMode
    image: str | None
    source: str  # cli | env LLEM_RUNNER_X | study runners.x | user config | default

    @property
    def kind(self) -> RunnerKind:
        return KINDS[self.mode]

    def __str__(self) -> str:
        return f"{self.mode}:{self.image}" if self.kind.containers and self.image else self.mode


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
        if KINDS[mode].containers and image is None:
            image = study.docker.images.get(backend)
        specs[backend] = RunnerSpec(mode, image, source)
    for exp_id, experiment in study.numbered():
        check_runnable(exp_id, experiment, specs[experiment.backend])
    check_one_engine(study, specs)
    return specs


def check_one_engine(study: StudyConfig, specs: Mapping[str, RunnerSpec]) -> None:
    """A study's containers run on one engine, Docker or Podman (ConfigError otherwise), and
    Podman's GPUs are reached through CDI only."""
    engines: dict[str, list[str]] = {}
    for backend, spec in specs.items():
        if spec.kind.containers:
            engines.setdefault(spec.mode, []).append(f"{backend} ({spec.source})")
    if len(engines) > 1:
        named = "; ".join(f"{mode}: {', '.join(which)}" for mode, which in sorted(engines.items()))
        raise ConfigError(
            f"{study.origin}: the experiments' containers must run on one engine, Docker or "
            f"Podman, not both ({named})"
        )
    from ..domain.engines import profile

    cdi_only = [profile(mode).title for mode in engines if profile(mode).cdi_only]
    if cdi_only and gpu_path_of(study) == "gpus":
        raise ConfigError(
            f"{study.origin}: docker.gpu_request: gpus: {cdi_only[0]} gives containers GPUs "
            "through CDI only (use cdi or auto)"
        )


def gpu_path_of(study: StudyConfig) -> str:
    """How the study's containers ask for their GPUs: `docker.gpu_request` (auto, gpus, cdi)."""
    return study.docker.preflight_settings().gpu_request


def check_runnable(exp_id: str, experiment: Experiment, spec: RunnerSpec) -> None:
    """The experiment has what its runner kind needs (ConfigError otherwise)."""
    lacks = spec.kind.needs(experiment, experiment_image(experiment, spec))
    if lacks is None:
        return
    what = f"experiment {exp_id} ({experiment.model} on {experiment.backend})"
    how = ""
    if spec.kind.containers:
        how = (
            f": set the experiment's image, docker.images.{experiment.backend}, or use "
            f"{spec.mode}:<image>"
        )
    raise ConfigError(f"{what}: the {spec.mode} runner (from {spec.source}) needs {lacks}{how}")


def experiment_image(experiment: Experiment, spec: RunnerSpec) -> str | None:
    """The image a container experiment runs (its own ``image:`` first); None for a process."""
    if not spec.kind.containers:
        return None
    return experiment.image or spec.image


def launches(
    study: StudyConfig, runners: Mapping[str, RunnerSpec], env: Mapping[str, str] | None = None
) -> list[Launch]:
    """What every experiment will start, in order: the one description the pre-flight and the
    dispatch share."""
    env = os.environ if env is None else env
    found = []
    path = gpu_path_of(study)
    for exp_id, experiment in study.numbered():
        spec = runners[experiment.backend]
        image = experiment_image(experiment, spec)
        found.append(spec.kind.launch(exp_id, image, study.gpus_of(experiment), env, path))
    return found


def docker_images(study: StudyConfig, runners: Mapping[str, RunnerSpec]) -> list[str]:
    """The images the dispatch will run, in experiment order, each once."""
    images = (experiment_image(e, runners[e.backend]) for e in study.experiments)
    return list(dict.fromkeys(i for i in images if i))


def measured_gpus(found: list[Launch]) -> tuple[int, ...]:
    """The GPUs of this machine the launches use (() for all of them): a local process's, and
    a container's on a local engine."""
    from ..domain.gpu_request import devices_of

    here = [devices_of(launch.request) for launch in found if not launch.remote]
    if not here or any(devices is None for devices in here):
        return ()
    return tuple(sorted({i for devices in here for i in devices or ()}))


def preflight_settings(
    study: StudyConfig,
    runners: Mapping[str, RunnerSpec] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    skip_checks: Sequence[str] = (),
) -> PreflightSettings:
    """What a pre-flight of ``study`` checks, derived from its launches, the same for `llem
    preflight`, `llem run` and `pytest --llem-config`: the containers' images and GPU
    requests (the Docker tiers only when some experiment runs in a container), the measurement
    tier for the GPUs of this machine the experiments use, its ``docker:`` limits, the checks
    ``execution.skip_checks`` and ``skip_checks`` name, and a study-level skip of it all;
    the engine is Podman when its containers run on Podman."""
    runners = resolve_runners(study, env) if runners is None else runners
    found = launches(study, runners, env)
    containers = [launch for launch in found if launch.image]
    setting = study.skip_preflight_setting()
    # (one engine for all of them, `check_one_engine`): the container kind's own CLI
    engine = containers[0].runner if containers else DOCKER
    return study.docker.preflight_settings().replace(
        engine=engine,
        images=tuple(dict.fromkeys(launch.image for launch in containers if launch.image)),
        requests=tuple(
            dict.fromkeys((launch.image, launch.request) for launch in containers if launch.image)
        ),
        gpus=measured_gpus(found),
        skip=frozenset(study.execution.skip_checks) | frozenset(skip_checks),
        skip_origin=_skip_origin(study, skip_checks),
        measurement_only=not containers,
        local_runs=len(containers) < len(found),
        skipped_by=setting[1] if setting and setting[0] else None,
    )


def _skip_origin(study: StudyConfig, given: Sequence[str]) -> str | None:
    """Where the skipped check ids were named: ``--skip-check``, the study, or both."""
    where = ["--skip-check"] if given else []
    if study.execution.skip_checks:
        where.append(f"execution.skip_checks in {study.origin}")
    return " and ".join(where) or None


def preflight_settings_from_study(path: str | Path) -> PreflightSettings:
    """`pytest --llem-config PATH`: the same checks and limits as `llem run PATH` uses."""
    return preflight_settings(load_study(path))
