"""One job of `llem run --slurm`, on its node: ``python -m pytest_llem.run.slurm_job RUN_DIR ID``.

It runs the node's pre-flight for that one experiment, whose GPUs are the job's allocation
(host indices; an experiment's own ``gpus:`` only gave their count to sbatch), then the
experiment itself into RUN_DIR, and leaves its record in ``RUN_DIR/slurm/<id>.record.json``.
A pre-flight that fails is that record's cause, with its findings: the experiment does not
start. Exit status: 0 ok, 1 failed, 2 bad usage, 130/143 interrupted (scancel sends SIGTERM).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, DockerPreFlightError, LLEMError
from ..signals import Terminated, sigterm_interrupts
from .manifest import ExperimentRecord, host_block
from .slurm_jobs import SLURM_DIR, Submission, write_record

if TYPE_CHECKING:
    from ..domain.report import Report
    from .config import StudyConfig


def preflight_summary(report: Report | None) -> dict[str, Any] | None:
    """What a job's manifest entry keeps of its node's pre-flight."""
    if report is None:
        return None
    if report.skipped_by:
        return {"status": "skipped", "skipped_by": report.skipped_by}
    data = report.to_json()
    return {
        "status": data["status"],
        "failures": data["failures"],
        "warnings": data["warnings"],
        "host": host_block(report),
    }


def _alone(study: StudyConfig, exp_id: str) -> StudyConfig:
    """The study with only that experiment, under its id, its GPUs left to the allocation."""
    experiment = dict(study.numbered())[exp_id]
    only = experiment.model_copy(update={"id": exp_id, "gpus": None})
    return study.model_copy(update={"gpus": None, "experiments": [only]})


def run_job(run_dir: Path, exp_id: str, env: Mapping[str, str] | None = None) -> int:
    """Pre-flight and run experiment ``exp_id`` of RUN_DIR's submission; its exit status."""
    from .runners import experiment_image, resolve_runners
    from .study import run_study_preflight

    env = os.environ if env is None else env
    submission = Submission.load(run_dir)
    study = submission.study_config()
    if exp_id not in dict(study.numbered()):
        raise ConfigError(f"{run_dir}: the study has no experiment {exp_id!r}")
    alone = _alone(study, exp_id)
    experiment = alone.experiments[0]
    runners = resolve_runners(alone, env, submission.runners)
    spec = runners[experiment.backend]
    job_id = env.get("SLURM_JOB_ID") or None
    node = env.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]
    record = ExperimentRecord(
        id=exp_id, backend=experiment.backend, model=experiment.model, runner=spec.mode,
        image=experiment_image(experiment, spec), status="failed",
        log=f"{SLURM_DIR}/{exp_id}.out", slurm_job_id=job_id, node=node,
    )  # fmt: skip
    with sigterm_interrupts():
        try:
            try:
                report = run_study_preflight(
                    alone, cli_skip=submission.cli_skip, runners=runners,
                    skip_checks=submission.skip_checks,
                )  # fmt: skip
            except DockerPreFlightError as exc:
                print(exc, file=sys.stderr)  # the job's output
                _preflight_failed(record, exc.report)
                write_record(run_dir, record)
                return 1
            from .dispatch import run_one

            done = run_one(alone, experiment, exp_id, spec, run_dir, run_id=submission.run_id)
        except KeyboardInterrupt as exc:
            signame = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
            record.status, record.message = "interrupted", f"interrupted by {signame} on {node}"
            write_record(run_dir, record)
            return 143 if isinstance(exc, Terminated) else 130
        except (LLEMError, OSError) as exc:  # llem itself could not go on (said in the record)
            print(f"llem: error: {exc}", file=sys.stderr)
            record.cause, record.message = "unknown", f"llem failed on {node}: {exc}"
            write_record(run_dir, record)
            return 1
    done.slurm_job_id, done.node, done.preflight = job_id, node, preflight_summary(report)
    write_record(run_dir, done)
    return 0 if done.status == "ok" else 1


def _preflight_failed(record: ExperimentRecord, report: Report) -> None:
    """The record of an experiment that its node's pre-flight kept from starting."""
    failures = report.failures
    first = failures[0] if failures else None
    more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
    said = f"[{first.id}] {first.message}{more}" if first else f"pre-flight {report.status}"
    record.status = "failed"
    record.cause = first.cause if first else "unknown"
    record.message = f"the pre-flight failed on {record.node}: {said}"
    record.fix, record.url = (first.fix or None, first.url or None) if first else (None, None)
    record.preflight = preflight_summary(report)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m pytest_llem.run.slurm_job RUN_DIR ID", file=sys.stderr)
        return 2
    try:
        return run_job(Path(args[0]).absolute(), args[1])
    except ConfigError as exc:
        print(f"llem: error: {exc}", file=sys.stderr)
        return 2
    except (LLEMError, OSError) as exc:
        print(f"llem: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    from ..host.proc import kill_all

    try:
        status = main()
    finally:
        kill_all()
    sys.exit(status)
