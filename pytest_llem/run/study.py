"""What `llem run` does with a study: resolve runners, run the pre-flight, dispatch."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..domain.check_ids import BUILTIN_IDS, unknown_check_ids
from ..domain.text import printable
from ..errors import ConfigError, DockerError, LLEMError
from .config import Experiment, StudyConfig
from .dispatch import (
    check_run_dir,
    dispatch,
    make_run_dir,
    refuse_earlier_run,
    run_dir_for,
    run_one,
)
from .manifest import ExperimentRecord, Manifest
from .notices import check_skip_sources, preflight_notice
from .runners import RunnerSpec, experiment_image, preflight_settings, resolve_runners

if TYPE_CHECKING:
    from ..domain.report import Report
    from ..facts import Facts
    from ..settings import PreflightSettings


def skip_source(
    study: StudyConfig, skip_preflight: bool = False, cli_skip: bool | None = None
) -> str | None:
    """Where a pre-flight skip comes from, or None to run it. The CLI flag wins either way."""
    if cli_skip is not None:
        return "--skip-preflight" if cli_skip else None
    if skip_preflight:
        return "skip_preflight=True"
    setting = study.skip_preflight_setting()
    return setting[1] if setting and setting[0] else None


def study_preflight_settings(
    study: StudyConfig,
    runners: Mapping[str, RunnerSpec],
    skip_checks: Sequence[str] = (),
    *,
    skipped_by: str | None = None,
    env: Mapping[str, str] | None = None,
) -> PreflightSettings:
    """What `llem run` checks for ``study`` (`runners.preflight_settings`, which `llem
    preflight` and `pytest --llem-config` use too), with the checks ``--skip-check`` names
    (``skip_checks``) and where a skip of it all comes from (``skipped_by``, which wins over
    the study's own)."""
    settings = preflight_settings(study, runners, env, skip_checks=skip_checks)
    return settings.replace(skipped_by=skipped_by)


def run_study_preflight(
    study: StudyConfig,
    skip_preflight: bool = False,
    *,
    cli_skip: bool | None = None,
    runners: Mapping[str, RunnerSpec] | None = None,
    facts: Facts | None = None,
    skip_checks: Sequence[str] = (),
    wait_s: float = 0.0,
) -> Report | None:
    """The pre-flight of the study: the Docker tiers for the images it will run (when a runner
    is Docker) and the measurement tier for the GPUs it uses; None without experiments.

    A skipped pre-flight is a report that says where the skip came from (`skipped_by`).
    ``facts`` are host queries started already; ``wait_s`` is how long tier 1 may wait for a
    host still coming up (`--wait`). Raises DockerPreFlightError when the host is unfit.
    """
    if not study.experiments:
        return None
    runners = resolve_runners(study) if runners is None else runners
    from ..domain.report import Report

    source = skip_source(study, skip_preflight, cli_skip)
    if source is not None:
        return Report(skipped_by=source)
    from .. import preflight

    settings = study_preflight_settings(study, runners, skip_checks, skipped_by=source)
    if wait_s:
        settings = settings.replace(wait_s=wait_s)
    return preflight.run_docker_preflight(settings=settings, facts=facts)


def run_study(
    study: StudyConfig,
    skip_preflight: bool = False,
    *,
    cli_skip: bool | None = None,
    runner_overrides: Mapping[str, str] | None = None,
    output: str | Path | None = None,
    dry_run: bool = False,
    env: Mapping[str, str] | None = None,
    facts: Facts | None = None,
    progress: TextIO | None = None,
    overwrite: bool = False,
    skip_checks: Sequence[str] = (),
    wait_s: float = 0.0,
) -> Manifest:
    """Validate, pre-flight, then run every experiment (nothing with ``dry_run``).

    The manifest carries the pre-flight's report (`preflight`), the checks skipped and where
    from, and, for a dry run, what would run (`plan`); ``progress`` (e.g. stderr) receives a
    line per experiment. ``skip_checks`` are check ids not to run (`--skip-check`). Raises
    ConfigError (bad config, unusable output directory, an ``output`` holding an earlier
    run's manifest without ``overwrite``, unknown check id) before the
    pre-flight, DockerPreFlightError when it fails; an experiment's failure is in the manifest.
    """
    env = os.environ if env is None else env
    if not study.experiments:
        raise ConfigError(f"{study.origin}: no experiments to run")
    unknown = unknown_check_ids(skip_checks)
    if unknown:
        raise ConfigError(
            f"--skip-check: unknown check id {unknown[0]!r} (valid ids: all, "
            f"{', '.join(BUILTIN_IDS)})"
        )
    runners = resolve_runners(study, env, runner_overrides)
    run_dir = run_dir_for(output, study.name)
    label = "--output" if output is not None else "run directory"
    if not dry_run:
        check_run_dir(run_dir, label)
        if output is not None:
            refuse_earlier_run(run_dir, label, overwrite=overwrite)

    report = run_study_preflight(
        study,
        skip_preflight,
        cli_skip=cli_skip,
        runners=runners,
        facts=facts,
        skip_checks=skip_checks,
        wait_s=wait_s,
    )
    skipped = check_skip_sources(
        {*study.execution.skip_checks, *skip_checks}, skip_checks, study.origin
    )
    notice = preflight_notice(report, skipped)
    if progress is not None and notice:
        progress.write(notice + "\n")
    if dry_run:
        plan = plan_lines(study, runners)
        if progress is not None:
            progress.writelines(printable(line) + "\n" for line in plan)
        return Manifest(study.name, preflight=report, plan=plan, skipped_checks=skipped)
    run_dir = make_run_dir(run_dir, label, exclusive=output is None)
    if output is not None:  # again: another run may have used it during the pre-flight
        refuse_earlier_run(run_dir, label, overwrite=overwrite)
    manifest = dispatch(
        study, runners, run_dir, progress=progress, preflight=report, skipped_checks=skipped
    )
    return manifest


def plan_lines(study: StudyConfig, runners: Mapping[str, RunnerSpec]) -> list[str]:
    """What `--dry-run` says it would run: one line per experiment."""
    lines = []
    for exp_id, experiment in study.numbered():
        spec = runners[experiment.backend]
        how = experiment_image(experiment, spec) or " ".join(experiment.command or [])
        lines.append(
            f"llem: dry run: {exp_id} {experiment.model} ({experiment.backend}, "
            f"{spec.mode} from {spec.source}): {how}"
        )
    return lines


def run_experiment(
    study: StudyConfig,
    experiment: Experiment,
    run_dir: str | Path,
    *,
    exp_id: str | None = None,
    runners: Mapping[str, RunnerSpec] | None = None,
) -> ExperimentRecord:
    """Run one experiment of ``study`` into an existing ``run_dir`` (no pre-flight).

    Raises DockerError (carrying the Diagnosis) when a Docker experiment fails, LLEMError when
    a local one does.
    """
    runners = resolve_runners(study) if runners is None else runners
    if experiment.backend not in runners:
        alone = study.model_copy(update={"experiments": [experiment]})
        runners = {**runners, **resolve_runners(alone)}
    if exp_id is None:
        ids = [i for i, e in study.numbered() if e is experiment]
        exp_id = ids[0] if ids else "001"
    record = run_one(study, experiment, exp_id, runners[experiment.backend], Path(run_dir))
    if record.status == "ok":
        return record
    if runners[experiment.backend].kind.containers:
        from ..domain.diagnosis import Diagnosis

        raise DockerError(
            Diagnosis(
                record.cause or "unknown",
                record.message or "",
                record.fix or "",
                record.url or "",
                {"image": record.image, "log": record.log},
            )
        )
    raise LLEMError(f"experiment {exp_id} failed: {record.message}")
