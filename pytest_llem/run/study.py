"""What `llem run` does with a study: resolve runners, run the pre-flight, dispatch."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..errors import ConfigError, DockerError, LLEMError
from .config import Experiment, StudyConfig
from .dispatch import (
    check_run_dir,
    dispatch,
    make_run_dir,
    run_dir_for,
    run_one,
)
from .manifest import ExperimentRecord, Manifest
from .notices import preflight_notice
from .remote import refuse_remote_daemon
from .runners import RunnerSpec, experiment_image, preflight_settings, resolve_runners

if TYPE_CHECKING:
    from ..domain.report import Report
    from ..facts import Facts


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


def run_study_preflight(
    study: StudyConfig,
    skip_preflight: bool = False,
    *,
    cli_skip: bool | None = None,
    runners: Mapping[str, RunnerSpec] | None = None,
    facts: Facts | None = None,
    wait_s: float = 0.0,
) -> Report | None:
    """The Docker pre-flight for the images the study will run; None when no runner is Docker.

    A skipped pre-flight is a report that says where the skip came from (`skipped_by`).
    ``facts`` are host queries started already; ``wait_s`` is how long tier 1 may wait for a
    host still coming up (`--wait`). Raises DockerPreFlightError when the host is unfit.
    """
    runners = resolve_runners(study) if runners is None else runners
    if not any(spec.mode == "docker" for spec in runners.values()):
        return None
    from ..domain.report import Report

    source = skip_source(study, skip_preflight, cli_skip)
    if source is not None:
        return Report(skipped_by=source)
    from .. import preflight

    settings = preflight_settings(study, runners)
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
    wait_s: float = 0.0,
) -> Manifest:
    """Validate, pre-flight, then run every experiment (nothing with ``dry_run``).

    The manifest carries the pre-flight's report (`preflight`) and, for a dry run, what
    would run (`plan`); ``progress`` (e.g. stderr) receives a line per experiment. Raises
    ConfigError (bad config, unusable output directory, remote daemon) before the
    pre-flight, DockerPreFlightError when it fails; an experiment's failure is in the manifest.
    """
    env = os.environ if env is None else env
    if not study.experiments:
        raise ConfigError(f"{study.origin}: no experiments to run")
    runners = resolve_runners(study, env, runner_overrides)
    if any(spec.mode == "docker" for spec in runners.values()):
        refuse_remote_daemon(env)
    run_dir = run_dir_for(output, study.name)
    label = "--output" if output is not None else "run directory"
    if not dry_run:
        check_run_dir(run_dir, label)

    report = run_study_preflight(
        study, skip_preflight, cli_skip=cli_skip, runners=runners, facts=facts, wait_s=wait_s
    )
    notice = preflight_notice(report)
    if progress is not None and notice:
        progress.write(notice + "\n")
    if dry_run:
        plan = plan_lines(study, runners)
        if progress is not None:
            progress.writelines(line + "\n" for line in plan)
        return Manifest(study.name, preflight=report, plan=plan)
    run_dir = make_run_dir(run_dir, label, exclusive=output is None)
    manifest = dispatch(study, runners, run_dir, progress=progress)
    manifest.preflight = report
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
    if record.runner == "docker":
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
