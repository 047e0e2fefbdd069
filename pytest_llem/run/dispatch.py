"""Dispatch: run each experiment per the contract of DESIGN §6 and record it in the manifest."""

from __future__ import annotations

import io
import json
import os
import re
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from ..errors import ConfigError
from ..host import workloads
from ..host.docker import daemon_endpoint
from ..signals import Terminated, sigterm_interrupts
from .config import Experiment, StudyConfig
from .manifest import ExperimentRecord, Manifest
from .runners import RunnerSpec, check_runnable, experiment_image

RUN_MOUNT = "/run/llem"
RUNS_DIR = "llem-runs"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str) -> str:
    """``text`` with every run of characters outside ``[A-Za-z0-9_.-]`` replaced by ``-``."""
    return _UNSAFE.sub("-", text).strip("-") or "x"


def container_name(study: str, exp_id: str) -> str:
    return f"llem-{safe_name(study)}-{safe_name(exp_id)}"


# ---- the run directory ----------------------------------------------------------------------


def run_dir_for(output: str | Path | None, study: str, now: datetime | None = None) -> Path:
    """``--output``, else ``./llem-runs/<study>-<UTC timestamp>``; always absolute."""
    if output is not None:
        return Path(output).absolute()
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return Path.cwd() / RUNS_DIR / f"{safe_name(study)}-{stamp}"


def check_run_dir(path: Path, label: str) -> None:
    """Fail early, before any pre-flight, when ``path`` could not be created and written."""
    if ":" in str(path):
        raise ConfigError(f"{label} {path}: a path with ':' cannot be mounted into a container")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{label} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{label} {path}: {existing} is not writable")


def make_run_dir(path: Path, label: str, *, exclusive: bool) -> Path:
    """Create the run directory; ``exclusive`` picks ``path-2``, ``-3``... when it exists."""
    candidate, n = path, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=not exclusive)
            return candidate
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.name}-{n}")
        except OSError as exc:
            raise ConfigError(f"{label} {path}: cannot create ({exc.strerror or exc})") from None


# ---- one experiment -------------------------------------------------------------------------


def docker_run_argv(
    image: str, name: str, run_dir: Path, exp_id: str, command: list[str] | None
) -> list[str]:
    return [
        "docker", "run", "--rm", "--gpus", "all", "--name", name,
        "-v", f"{run_dir}:{RUN_MOUNT}",
        "-e", f"LLEM_CONFIG_PATH={RUN_MOUNT}/{exp_id}_config.json",
        image, *(command or []),
    ]  # fmt: skip


def run_one(
    study: StudyConfig, experiment: Experiment, exp_id: str, spec: RunnerSpec, run_dir: Path
) -> ExperimentRecord:
    """Write the experiment's config, run it, and read back what it left."""
    check_runnable(exp_id, experiment, spec)
    image = experiment_image(experiment, spec)
    result_path = run_dir / f"{exp_id}_result.json"
    error_path = run_dir / f"{exp_id}_error.json"
    log_name = f"{exp_id}.log"
    for stale in (result_path, error_path):
        stale.unlink(missing_ok=True)
    seen_dir = RUN_MOUNT if spec.mode == "docker" else str(run_dir)
    config = {
        "study": study.name,
        "id": exp_id,
        "model": experiment.model,
        "backend": experiment.backend,
        "runner": spec.mode,
        "image": image,
        "params": experiment.params,
        "result_path": f"{seen_dir}/{result_path.name}",
        "error_path": f"{seen_dir}/{error_path.name}",
    }
    config_path = run_dir / f"{exp_id}_config.json"
    config_path.write_text(json.dumps(config, indent=2, default=str) + "\n", encoding="utf-8")

    if image is not None and daemon_endpoint().remote:  # it cannot mount RUN_DIR
        from .remote_dispatch import run_container_remote

        outcome = run_container_remote(
            image, container_name(study.name, exp_id), exp_id, experiment.command,
            mount=RUN_MOUNT, run_dir=run_dir, log_path=run_dir / log_name,
        )  # fmt: skip
    elif image is not None:  # check_runnable(): a Docker experiment has an image, a local not
        name = container_name(study.name, exp_id)
        argv = docker_run_argv(image, name, run_dir, exp_id, experiment.command)
        outcome = workloads.run_container(argv, name=name, log_path=run_dir / log_name)
    else:
        cwd = study.path.parent.absolute() if study.path else Path.cwd()
        env = {**os.environ, "LLEM_CONFIG_PATH": str(config_path)}
        outcome = workloads.run_local(
            experiment.command or [], cwd=cwd, env=env, log_path=run_dir / log_name
        )

    record = ExperimentRecord(
        id=exp_id, backend=experiment.backend, model=experiment.model, runner=spec.mode,
        image=image, status="ok", exit_status=outcome.returncode,
        duration_s=round(outcome.duration_s, 3), log=log_name,
    )  # fmt: skip
    _judge(record, outcome, result_path, error_path)
    return record


def _judge(
    record: ExperimentRecord,
    outcome: workloads.WorkloadResult,
    result_path: Path,
    error_path: Path,
) -> None:
    """Fill in the record's result, or its status, cause and message when it failed."""
    problem = None
    if result_path.exists():
        try:
            record.result = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problem = f"{result_path.name} is not valid JSON ({exc})"
    error_note = _error_message(error_path)
    if outcome.returncode == 0 and result_path.exists() and not (problem or error_note):
        return
    record.status, record.cause = "failed", "unknown"
    if outcome.missing:
        record.message = f"command not found or not executable: {outcome.output_tail.strip()}"
        return
    if outcome.returncode != 0:
        from ..domain.diagnosis import diagnose

        diagnosis = diagnose(outcome.output_tail, outcome.returncode)
        if diagnosis.cause not in ("ok", "unknown"):
            record.cause, record.message = diagnosis.cause, diagnosis.message
            record.fix, record.url = diagnosis.fix or None, diagnosis.url or None
            return
    record.message = (
        problem
        or error_note
        or (
            f"exit status {outcome.returncode}: {_last_line(outcome.output_tail)}"
            if outcome.returncode != 0
            else f"exited 0 without writing {result_path.name}"
        )
    )


def _error_message(path: Path) -> str | None:
    """What ``<id>_error.json`` says (its ``message`` or ``error``), if the workload wrote one."""
    if not path.exists():
        return None
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"wrote {path.name}"
    if isinstance(data, dict):
        for key in ("message", "error"):
            if data.get(key):
                return f"{path.name}: {data[key]}"
    return f"wrote {path.name}"


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


# ---- the whole study ------------------------------------------------------------------------


def dispatch(
    study: StudyConfig,
    runners: Mapping[str, RunnerSpec],
    run_dir: Path,
    *,
    progress: TextIO | None = None,
) -> Manifest:
    """Run every experiment in order, going on after a failure; the manifest after each.

    ``progress`` (if given) receives a line per experiment. On Ctrl-C or SIGTERM the running
    experiment is stopped and recorded as interrupted, the manifest written, and the
    KeyboardInterrupt (``Terminated`` for SIGTERM) re-raised.
    """
    out = progress or io.StringIO()
    manifest = Manifest(study.name, run_dir)
    manifest.write()
    experiments = study.numbered()
    with sigterm_interrupts():
        for n, (exp_id, experiment) in enumerate(experiments, 1):
            spec = runners[experiment.backend]
            where = experiment_image(experiment, spec) or "local"
            out.write(
                f"llem: [{n}/{len(experiments)}] {exp_id} {experiment.model} "
                f"({experiment.backend}, {where}) ... "
            )
            out.flush()
            start = time.monotonic()
            try:
                record = run_one(study, experiment, exp_id, spec, run_dir)
            except KeyboardInterrupt as exc:
                signame = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
                manifest.experiments.append(ExperimentRecord(
                    id=exp_id, backend=experiment.backend, model=experiment.model,
                    runner=spec.mode, image=experiment_image(experiment, spec),
                    status="interrupted", duration_s=round(time.monotonic() - start, 3),
                    cause=None, message=f"interrupted by {signame}",
                ))  # fmt: skip
                manifest.write()
                out.write(f"interrupted\nllem: manifest: {manifest.path}\n")
                raise
            manifest.experiments.append(record)
            manifest.write()
            out.write(_outcome_text(record) + "\n")
            out.flush()
    return manifest


def _outcome_text(record: ExperimentRecord) -> str:
    if record.status == "ok":
        return f"ok ({record.duration_s:.1f}s)"
    text = f"failed ({record.duration_s:.1f}s): [{record.cause}] {record.message}"
    return text + (f" (log: {record.log})" if record.log else "")
