"""`llem run --slurm`: each experiment of a study as one Slurm job, its results in RUN_DIR.

RUN_DIR must be on a filesystem the nodes share. Under ``RUN_DIR/slurm/`` llem keeps:

- ``submission.json``: the study as validated, the runner of each backend, the skips, and
  each experiment's job id (what `--resume` reads);
- ``job.sh``: the job script, which runs `python -m pytest_llem.run.slurm_job RUN_DIR ID`
  with this very Python (`run/slurm_job.py`): the node's pre-flight for the job's GPUs, then
  the experiment;
- ``<id>.out``: the job's output; ``<id>.record.json``: the record its job left.

`llem run` waits and shows each job's progress (queued, running, done); Ctrl-C or SIGTERM
cancels every job it submitted. Then it writes one manifest, where each experiment names its
``slurm_job_id`` and ``node``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TextIO

from ..domain.allocation import ENV_NAMES as ALLOCATION_ENV
from ..domain.slurm import JobState, sbatch_argv
from ..domain.text import printable
from ..errors import ConfigError, LLEMError
from ..host import runfiles, slurm
from ..host.jsonfile import write_json, write_text
from ..signals import shielded, sigterm_interrupts
from .config import StudyConfig, UserConfig, with_user_defaults
from .dispatch import (
    check_run_dir,
    make_run_dir,
    new_run_id,
    refuse_earlier_run,
    run_dir_for,
)
from .manifest import ExperimentRecord, Manifest
from .names import container_name
from .runners import RunnerSpec

SLURM_DIR = "slurm"
SUBMISSION = "submission.json"
SCHEMA = 1
RECORD_CAP = 4 * 1024 * 1024
POLL_S = (1.0, 15.0)  # the first and the longest wait between two looks at the queue
GONE_S = 15.0  # how long cancelled jobs may take to leave the queue
QUERY_TRIES = 5  # squeue failing this many times in a row ends the waiting
RECORD_GRACE_S = 30.0  # how long a job's record may take to show on a shared filesystem


@dataclass
class Job:
    exp_id: str
    job_id: str


@dataclass
class Submission:
    """What `llem run --slurm` submitted, as ``RUN_DIR/slurm/submission.json`` keeps it."""

    study: dict[str, Any]  # the validated study (with the user's defaults merged in)
    study_path: str | None  # its file: local commands run in its directory
    runners: dict[str, str]  # backend -> runner (`mode` or `mode:image`), as resolved here
    cli_skip: bool | None = None  # --skip-preflight / --no-skip-preflight
    skip_checks: list[str] = field(default_factory=list)  # --skip-check
    run_id: str = ""
    jobs: list[Job] = field(default_factory=list)
    # Where its local commands run (the study's `workdir` when submitted); None: its file's
    # directory.
    workdir: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["jobs"] = [{"id": j.exp_id, "job_id": j.job_id} for j in self.jobs]
        return {"schema": SCHEMA, **data}

    @classmethod
    def load(cls, run_dir: Path) -> Submission:
        """RUN_DIR's submission; ConfigError when there is none, or not a readable one."""
        path = run_dir / SLURM_DIR / SUBMISSION
        try:
            data = runfiles.read(path, RECORD_CAP)
        except runfiles.UnsafeRunFile as exc:
            raise ConfigError(str(exc)) from None
        if data is None:
            raise ConfigError(f"{run_dir}: no Slurm submission in it ({path} not found)")
        try:
            raw = json.loads(data.decode("utf-8"))
            if raw.pop("schema") != SCHEMA:
                raise ValueError("another version's submission")
            raw["jobs"] = [Job(j["id"], str(j["job_id"])) for j in raw["jobs"]]
            return cls(**raw)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path}: not a submission of this llem ({exc})") from None

    def save(self, run_dir: Path) -> None:
        write_json(run_dir / SLURM_DIR / SUBMISSION, self.to_json())

    def study_config(self) -> StudyConfig:
        """The study as it was validated at submission."""
        from .config import _validate

        origin = self.study_path or "the submitted study"
        study = _validate(StudyConfig, self.study, origin)
        path = Path(self.study_path) if self.study_path else None
        study = with_user_defaults(study, UserConfig(), path)
        if self.workdir is not None:
            study._workdir = Path(self.workdir)
        elif path is not None:
            study._workdir = path.parent
        return study


# ---- submitting -----------------------------------------------------------------------------


def job_env(env: Mapping[str, str]) -> dict[str, str]:
    """sbatch's environment (which a job inherits): without the allocation of a job that
    llem itself may run in, which would pass for the new job's."""
    return {k: v for k, v in env.items() if k not in ALLOCATION_ENV}


def _job_script(run_dir: Path, study: str) -> str:
    python = shlex.quote(sys.executable)
    return (
        "#!/bin/sh\n"
        f"# One experiment of the llem study {printable(study)!r} as a Slurm job "
        "(written by `llem run --slurm`).\n"
        f'exec {python} -m pytest_llem.run.slurm_job {shlex.quote(str(run_dir))} "$1"\n'
    )


def _argv(study: StudyConfig, run_dir: Path, exp_id: str, run_id: str) -> list[str]:
    options = study.execution.slurm
    base = run_dir / SLURM_DIR
    return sbatch_argv(
        name=container_name(study.name, exp_id, run_id),
        output=str(base / f"{exp_id}.out"),
        script=str(base / "job.sh"),
        args=[exp_id],
        partition=options.partition,
        gpus=options.gpus_per_experiment,
        time_limit=options.time_limit,
        extra_args=options.extra_args,
    )


def plan_lines(study: StudyConfig, run_dir: Path) -> list[str]:
    """What `llem run --slurm --dry-run` says it would submit: one sbatch line a job."""
    return [
        "llem: dry run: " + shlex.join(_argv(study, run_dir, exp_id, "RUNID"))
        for exp_id, _ in study.numbered()
    ]


def new_submission(
    study: StudyConfig,
    runners: Mapping[str, RunnerSpec],
    run_dir: Path,
    *,
    cli_skip: bool | None,
    skip_checks: Sequence[str],
) -> Submission:
    """The submission of ``study`` into ``run_dir``, its job script written; no job yet."""
    (run_dir / SLURM_DIR).mkdir(exist_ok=True)
    submission = Submission(
        study=study.model_dump(mode="json"),
        study_path=str(study.path.absolute()) if study.path else None,
        runners={backend: str(spec) for backend, spec in runners.items()},
        cli_skip=cli_skip,
        skip_checks=list(skip_checks),
        run_id=new_run_id(),
        workdir=str(study.workdir.absolute()),
    )
    write_text(run_dir / SLURM_DIR / "job.sh", _job_script(run_dir, study.name), mode=0o755)
    submission.save(run_dir)
    return submission


def submit(
    submission: Submission, study: StudyConfig, run_dir: Path, env: Mapping[str, str]
) -> None:
    """One job per experiment, each added to the submission (saved) as soon as it exists."""
    environment = job_env(env)
    for exp_id, _ in study.numbered():
        argv = _argv(study, run_dir, exp_id, submission.run_id)
        try:
            job_id = slurm.submit(argv, environment)
        except slurm.SlurmError as exc:
            raise LLEMError(f"cannot submit experiment {exp_id} to Slurm: {exc}") from None
        submission.jobs.append(Job(exp_id, job_id))
        submission.save(run_dir)


def _cancel(submission: Submission, env: Mapping[str, str], out: TextIO) -> None:
    """scancel every job of the submission, then wait (a little) until the queue lets go."""
    ids = [j.job_id for j in submission.jobs]
    if not ids:
        return
    try:
        slurm.cancel(ids, env)
        deadline = time.monotonic() + GONE_S
        while time.monotonic() < deadline:
            states = slurm.job_states(ids, env)
            if all(s.phase == "done" for s in states.values()):
                break
            time.sleep(0.5)
    except slurm.SlurmError as exc:
        out.write(printable(f"llem: slurm: could not cancel job(s) {', '.join(ids)}: {exc}") + "\n")
        return
    out.write(f"llem: slurm: cancelled job(s) {', '.join(ids)}\n")


# ---- waiting --------------------------------------------------------------------------------


def _record_path(run_dir: Path, exp_id: str) -> Path:
    return run_dir / SLURM_DIR / f"{exp_id}.record.json"


def read_record(run_dir: Path, exp_id: str) -> ExperimentRecord | None:
    """The record a job left, or None (absent, or not a record: a planted file is refused)."""
    try:
        data = runfiles.read(_record_path(run_dir, exp_id), RECORD_CAP)
        if data is None:
            return None
        raw = json.loads(data.decode("utf-8"))
        known = {f.name for f in fields(ExperimentRecord)}
        return ExperimentRecord(**{k: v for k, v in raw.items() if k in known})
    except (runfiles.UnsafeRunFile, ValueError, TypeError, RecursionError):
        return None


def write_record(run_dir: Path, record: ExperimentRecord) -> None:
    write_json(_record_path(run_dir, record.id), record.to_json())


def _shown(state: JobState | None, record: ExperimentRecord | None) -> str:
    if record is not None:
        how: str = record.status
        if record.status != "ok":
            how += f": [{record.cause}] {record.message}"
        return f"done on {record.node or '?'}: {how}"
    if state is None:
        return "no longer known to Slurm"
    if state.phase == "queued":
        reason = f" ({state.reason})" if state.reason else ""
        return f"queued{reason}" + (f", restarted {state.restarts}x" if state.restarts else "")
    if state.phase == "running":
        return f"running on {state.node or '?'}"
    return f"done: {state.ending()}"


def wait(
    submission: Submission,
    run_dir: Path,
    *,
    env: Mapping[str, str],
    out: TextIO,
    poll_s: tuple[float, float] = POLL_S,
) -> dict[str, JobState | None]:
    """Wait until every job is over, a line on each change; the last state of each job.

    A job that ended by itself (completed or failed) is over once its record is here, or
    `RECORD_GRACE_S` after it ended: a shared filesystem may show a file written on a node
    a little later.
    """
    states: dict[str, JobState | None] = {}
    shown: dict[str, str] = {}
    ended: dict[str, float] = {}  # when Slurm first said the job was over
    pause, failed = poll_s[0], 0
    while True:
        try:
            looked = slurm.job_states([j.job_id for j in submission.jobs], env)
            failed = 0
        except slurm.SlurmError as exc:  # slurmctld busy or restarting: look again later
            failed += 1
            if failed >= QUERY_TRIES:
                raise
            out.write(printable(f"llem: slurm: {exc} (trying again)") + "\n")
            time.sleep(pause)
            continue
        changed, finished = False, 0
        for job in submission.jobs:
            state = states[job.exp_id] = looked.get(job.job_id)
            record = None
            if _over(state):
                record = read_record(run_dir, job.exp_id)
                since = ended.setdefault(job.exp_id, time.monotonic())
                late = time.monotonic() - since >= RECORD_GRACE_S
                finished += record is not None or late or not _leaves_record(state)
            line = _shown(state, record)
            if shown.get(job.exp_id) != line:
                shown[job.exp_id] = line
                changed = True
                out.write(printable(f"llem: slurm: {job.exp_id} (job {job.job_id}): {line}") + "\n")
        if changed:
            out.flush()
            pause = poll_s[0]
        if finished == len(submission.jobs):
            return states
        time.sleep(pause)
        pause = min(pause * 1.5, poll_s[1])


def _over(state: JobState | None) -> bool:
    """Whether a job is over: Slurm says so, or no longer knows it."""
    return state is None or state.phase == "done"


def _leaves_record(state: JobState | None) -> bool:
    """Whether a job that is over should have left a record: it ran to its own end."""
    return state is not None and state.state in ("COMPLETED", "FAILED")


# ---- the manifest ---------------------------------------------------------------------------


def collect(
    submission: Submission,
    run_dir: Path,
    states: Mapping[str, JobState | None],
    *,
    interrupted: bool = False,
) -> Manifest:
    """The manifest of the submission: each job's record, or what Slurm says of a job that
    left none."""
    study = submission.study_config()
    experiments = dict(study.numbered())
    manifest = Manifest(study.name, run_dir)
    for job in submission.jobs:
        experiment = experiments[job.exp_id]
        state = states.get(job.exp_id)
        record = read_record(run_dir, job.exp_id)
        if record is None:
            record = _without_record(submission, job, experiment.model, experiment.backend,
                                     state, interrupted)  # fmt: skip
        record.slurm_job_id = job.job_id
        record.node = record.node or (state.node if state else None) or None
        manifest.experiments.append(record)
    for exp_id, experiment in study.numbered()[len(submission.jobs) :]:  # never submitted
        runner = submission.runners.get(experiment.backend, "local")
        manifest.experiments.append(ExperimentRecord(
            id=exp_id, backend=experiment.backend, model=experiment.model,
            runner=runner.partition(":")[0], image=experiment.image, status="interrupted",
            message="not submitted: the run was interrupted first",
        ))  # fmt: skip
    return manifest


def _without_record(
    submission: Submission,
    job: Job,
    model: str,
    backend: str,
    state: JobState | None,
    interrupted: bool,
) -> ExperimentRecord:
    runner = submission.runners.get(backend, "local")
    mode, _, image = runner.partition(":")
    record = ExperimentRecord(
        id=job.exp_id, backend=backend, model=model, runner=mode, image=image or None,
        status="failed", cause="unknown", log=f"{SLURM_DIR}/{job.exp_id}.out",
    )  # fmt: skip
    if interrupted or (state is not None and state.state == "CANCELLED"):
        record.status, record.cause = "interrupted", None
        record.message = f"Slurm job {job.job_id} was cancelled before it recorded its experiment"
    elif state is None:
        record.message = (
            f"Slurm no longer knows job {job.job_id} and it left no record (see its output, "
            f"{record.log})"
        )
    else:
        where = f" on {state.node}" if state.node else ""
        record.message = f"Slurm job {job.job_id} {state.ending()}{where} before llem could " \
            f"record its experiment (see its output, {record.log})"  # fmt: skip
    return record


# ---- the whole run --------------------------------------------------------------------------


def run_study_slurm(
    study: StudyConfig,
    runners: Mapping[str, RunnerSpec],
    *,
    output: str | Path | None = None,
    overwrite: bool = False,
    cli_skip: bool | None = None,
    skip_checks: Sequence[str] = (),
    dry_run: bool = False,
    no_wait: bool = False,
    env: Mapping[str, str] | None = None,
    progress: TextIO | None = None,
) -> Manifest | None:
    """Submit every experiment as a Slurm job and (unless ``no_wait``) wait for all of them;
    the manifest (None with ``no_wait``). The pre-flight runs in each job, on its node.

    Ctrl-C or SIGTERM cancels every job submitted, writes the manifest, and re-raises.
    """
    env = os.environ if env is None else env
    out = progress or sys.stderr
    if not study.experiments:
        raise ConfigError(f"{study.origin}: no experiments to run")
    run_dir = run_dir_for(output, study.name)
    label = "--output" if output is not None else "run directory"
    if dry_run:
        manifest = Manifest(study.name, plan=plan_lines(study, run_dir))
        for line in manifest.plan:
            out.write(printable(line) + "\n")
        return manifest
    check_run_dir(run_dir, label)
    if output is not None:
        refuse_earlier_run(run_dir, label, overwrite=overwrite)
    run_dir = make_run_dir(run_dir, label, exclusive=output is None)
    submission = new_submission(study, runners, run_dir, cli_skip=cli_skip, skip_checks=skip_checks)
    again = f"llem run --resume {shlex.quote(str(run_dir))}"
    with sigterm_interrupts():
        try:
            submit(submission, study, run_dir, env)
            ids = ", ".join(f"{j.exp_id}={j.job_id}" for j in submission.jobs)
            count = len(submission.jobs)
            out.write(printable(f"llem: slurm: submitted {count} job(s): {ids}") + "\n")
            out.flush()
            if no_wait:
                out.write(printable(f"llem: slurm: not waiting; collect the results with: {again}"))
                out.write("\n")
                return None
            states = wait(submission, run_dir, env=env, out=out)
        except slurm.SlurmError:  # (squeue) the queue cannot be read: the jobs go on
            out.write(printable(f"llem: slurm: the jobs go on; {again} collects them") + "\n")
            raise
        except BaseException as exc:  # Ctrl-C, SIGTERM, or sbatch refusing a job
            with shielded():
                _cancel(submission, env, out)
                if isinstance(exc, KeyboardInterrupt):
                    manifest = collect(submission, run_dir, {}, interrupted=True)
                    manifest.write()
                    out.write(f"llem: manifest: {manifest.path}\n")
            raise
    manifest = collect(submission, run_dir, states)
    manifest.write()
    return manifest


def resume(
    run_dir: str | Path, *, env: Mapping[str, str] | None = None, progress: TextIO | None = None
) -> Manifest:
    """`llem run --resume RUN_DIR`: wait for the jobs of an earlier `--slurm --no-wait` run,
    then write its manifest. Ctrl-C stops the waiting; the jobs go on."""
    env = os.environ if env is None else env
    out = progress or sys.stderr
    path = Path(run_dir).absolute()
    submission = Submission.load(path)
    try:
        with sigterm_interrupts():
            states = wait(submission, path, env=env, out=out)
    except KeyboardInterrupt:
        out.write(
            printable(f"llem: slurm: stopped waiting; the jobs go on (llem run --resume "
                      f"{shlex.quote(str(path))} collects them)") + "\n"
        )  # fmt: skip
        raise
    manifest = collect(submission, path, states)
    manifest.write()
    return manifest
