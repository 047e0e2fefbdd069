"""Dispatch: run each experiment per the contract of DESIGN §6 and record it in the manifest."""

from __future__ import annotations

import io
import json
import os
import secrets
import time
from collections.abc import Mapping
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..domain.text import printable
from ..errors import ConfigError
from ..host import runfiles, workloads
from ..signals import Terminated, sigterm_interrupts
from .attest import open_window, record_attestation
from .config import Experiment, StudyConfig
from .manifest import MANIFEST, ExperimentRecord, Manifest
from .names import RUNS_DIR, STAMP_FORMAT, container_name, run_dir_name
from .runner_kinds import Started
from .runners import RunnerSpec, check_runnable, experiment_image, gpu_path_of

if TYPE_CHECKING:
    from ..domain.report import Report


def new_run_id() -> str:
    """A short random id that tells one run's containers from another's."""
    return secrets.token_hex(4)


# ---- the run directory ----------------------------------------------------------------------


def run_dir_for(output: str | Path | None, study: str, now: datetime | None = None) -> Path:
    """``--output``, else ``./llem-runs/<study>-<UTC timestamp>``; always absolute."""
    if output is not None:
        if not str(output).strip():  # "" would be the current directory
            raise ConfigError("--output: must not be empty")
        return Path(output).absolute()
    stamp = (now or datetime.now(timezone.utc)).strftime(STAMP_FORMAT)
    return Path.cwd() / RUNS_DIR / run_dir_name(study, stamp)


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


def refuse_earlier_run(path: Path, label: str, *, overwrite: bool) -> None:
    """A directory with a manifest.json holds a run: its results are not replaced silently."""
    if not overwrite and os.path.lexists(path / MANIFEST):
        raise ConfigError(
            f"{label} {path}: holds the {MANIFEST} of an earlier run "
            "(give --overwrite to replace it, or another directory)"
        )


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


def run_one(
    study: StudyConfig,
    experiment: Experiment,
    exp_id: str,
    spec: RunnerSpec,
    run_dir: Path,
    *,
    run_id: str | None = None,
) -> ExperimentRecord:
    """Write the experiment's config, run it, and read back what it left.

    ``run_id`` tells this run's containers from another run's (a new one when None).
    """
    check_runnable(exp_id, experiment, spec)
    image = experiment_image(experiment, spec)
    result_path = run_dir / f"{exp_id}_result.json"
    error_path = run_dir / f"{exp_id}_error.json"
    config_path = run_dir / f"{exp_id}_config.json"
    log_name = f"{exp_id}.log"
    seen_dir = spec.kind.seen_dir(run_dir)
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
    record = ExperimentRecord(
        id=exp_id, backend=experiment.backend, model=experiment.model, runner=spec.mode,
        image=image, status="ok", log=log_name,
    )  # fmt: skip
    start = time.monotonic()
    try:
        for stale in (result_path, error_path):
            runfiles.remove(stale)
        config_bytes = (json.dumps(config, indent=2, default=str) + "\n").encode()
        runfiles.write(config_path, config_bytes)
        gpus, path = study.gpus_of(experiment), gpu_path_of(study)
        launch = spec.kind.launch(exp_id, image, gpus, os.environ, path)
        name = container_name(study.name, exp_id, run_id or new_run_id())
        window = open_window(launch, study.execution, name)
        started = Started(
            run_dir=run_dir,
            name=name,
            config_bytes=config_bytes,
            config_path=config_path,
            log_path=run_dir / log_name,
            command=experiment.command,
            cwd=study.workdir,
            timeout_s=study.execution.experiment_timeout_s,
            on_start=window.on_start if window is not None else None,
        )
        with window or nullcontext():
            outcome = spec.kind.start(launch, started)
        attestation = window.attestation() if window is not None else None  # read at its end
    except runfiles.UnsafeRunFile as exc:
        record.duration_s = round(time.monotonic() - start, 3)
        _unsafe(record, exc)
        return record
    record.exit_status, record.duration_s = outcome.returncode, round(outcome.duration_s, 3)
    record.leftovers_killed = [{"pid": p.pid, "command": p.command} for p in outcome.leftovers]
    record.cleanup = outcome.cleanup
    if outcome.timed_out:
        _timed_out(record, study.execution.experiment_timeout_s, spec.kind.containers)
    else:
        _judge(record, outcome, result_path, error_path)
    if attestation is not None:
        require_clean = study.execution.require_clean
        record_attestation(record, attestation, require_clean=require_clean)
    return record


def _timed_out(record: ExperimentRecord, limit: float | None, container: bool) -> None:
    """An experiment stopped at its limit: failed, whatever it left."""
    from ..domain.remedies import remedy

    what = "its processes were killed"
    if container:
        removed = record.cleanup is None
        what = "its container was removed" if removed else "its container may be left (cleanup)"
    record.status, record.cause, record.exit_status = "failed", "experiment_timeout", None
    record.message = (
        f"still running after execution.experiment_timeout_s ({limit:g} s): stopped, {what}"
    )
    record.fix, record.url = remedy("experiment_timeout")


def _unsafe(record: ExperimentRecord, exc: runfiles.UnsafeRunFile) -> None:
    from ..domain.remedies import remedy

    record.status, record.cause, record.message = "failed", "unsafe_run_file", str(exc)
    record.fix, record.url = remedy("unsafe_run_file")
    record.result = None


def _judge(
    record: ExperimentRecord,
    outcome: workloads.WorkloadResult,
    result_path: Path,
    error_path: Path,
) -> None:
    """Fill in the record's result, or its status, cause and message when it failed."""
    try:
        result_data = runfiles.read(result_path, runfiles.RESULT_CAP)
        error_note = _error_message(error_path)
    except runfiles.UnsafeRunFile as exc:
        _unsafe(record, exc)
        return
    problem = None
    if result_data is not None:
        try:
            record.result = json.loads(result_data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            problem = f"{result_path.name} is not valid JSON ({_short(str(exc))})"
    if outcome.returncode == 0 and result_data is not None and not (problem or error_note):
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
    """What ``<id>_error.json`` says (its ``message`` or ``error``), if the workload wrote one.

    Raises UnsafeRunFile when the name is not a regular file or the file is too large.
    """
    data = runfiles.read(path, runfiles.ERROR_CAP)
    if data is None:
        return None
    try:
        error: Any = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return f"wrote {path.name}"
    if isinstance(error, dict):
        for key in ("message", "error"):
            if error.get(key):
                return f"{path.name}: {_short(str(error[key]))}"
    return f"wrote {path.name}"


def _short(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    preflight: Report | None = None,
    skipped_checks: Mapping[str, str] | None = None,
) -> Manifest:
    """Run every experiment in order, going on after a failure; the manifest after each.

    ``progress`` (if given) receives a line per experiment. On Ctrl-C or SIGTERM the running
    experiment is stopped and recorded as interrupted, the manifest written, and the
    KeyboardInterrupt (``Terminated`` for SIGTERM) re-raised. ``preflight`` and
    ``skipped_checks`` go into the manifest (its ``host`` block and ``skipped_checks``).
    """
    out = progress or io.StringIO()
    manifest = Manifest(
        study.name, run_dir, preflight=preflight, skipped_checks=dict(skipped_checks or {})
    )
    manifest.write()
    experiments = study.numbered()
    run_id = new_run_id()
    with sigterm_interrupts():
        for n, (exp_id, experiment) in enumerate(experiments, 1):
            spec = runners[experiment.backend]
            where = experiment_image(experiment, spec) or "local"
            out.write(
                printable(
                    f"llem: [{n}/{len(experiments)}] {exp_id} {experiment.model} "
                    f"({experiment.backend}, {where}) ... "
                )
            )
            out.flush()
            start = time.monotonic()
            try:
                record = run_one(study, experiment, exp_id, spec, run_dir, run_id=run_id)
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
            out.write(printable(_outcome_text(record)) + "\n")
            out.flush()
    return manifest


def _outcome_text(record: ExperimentRecord) -> str:
    if record.status == "ok":
        text = f"ok ({record.duration_s:.1f}s)"
    else:
        text = f"failed ({record.duration_s:.1f}s): [{record.cause}] {record.message}"
        text += f" (log: {record.log})" if record.log else ""
    if record.leftovers_killed:
        text += f"; killed {len(record.leftovers_killed)} process(es) it left running"
    if record.cleanup:
        text += f"; its container may be left behind: {record.cleanup}"
    return text
