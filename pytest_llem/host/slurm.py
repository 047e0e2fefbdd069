"""The Slurm clients: sbatch, squeue, scontrol, sacct and scancel, each with a limit.

Job states come from squeue while a job is queued or running, then from scontrol (which
knows a finished job for MinJobAge, 300 s by default), then from sacct where the cluster
keeps accounting (without it sacct only says "Slurm accounting storage is disabled").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..domain.slurm import (
    JobState,
    merged,
    parse_sacct,
    parse_sbatch,
    parse_scontrol_jobs,
    parse_squeue,
)
from ..errors import LLEMError
from .proc import HOST_COMMAND_TIMEOUT_S, PARSED_OUTPUT_MAX, run

SUBMIT_TIMEOUT_S = 60.0  # sbatch waits for slurmctld, which may be busy


class SlurmError(LLEMError):
    """A Slurm client failed; ``str()`` says which and how."""


def _failure(what: str, result_text: str, code: int | None, timed_out: bool) -> SlurmError:
    how = "timed out" if timed_out else f"exit status {code}"
    line = next((x.strip() for x in result_text.splitlines() if x.strip()), "")
    return SlurmError(f"{what} failed ({how})" + (f": {line}" if line else ""))


def submit(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """Run ``sbatch --parsable ...`` (`domain.slurm.sbatch_argv`); the new job's id."""
    result = run(argv, timeout=SUBMIT_TIMEOUT_S, env=env)
    job_id = parse_sbatch(result.stdout) if result.ok else None
    if job_id is None:
        if result.missing:
            raise SlurmError("sbatch not found on PATH: llem run --slurm needs Slurm's clients")
        raise _failure("sbatch", result.output, result.returncode, result.timed_out)
    return job_id


def job_states(job_ids: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, JobState]:
    """What Slurm knows of each of ``job_ids`` (a job it no longer knows is left out)."""
    if not job_ids:
        return {}
    wanted = set(job_ids)
    listed = ",".join(job_ids)
    squeue = run(
        ["squeue", "-h", "-j", listed, "-o", "%i|%T|%r|%N"],
        timeout=HOST_COMMAND_TIMEOUT_S,
        env=env,
        limit=PARSED_OUTPUT_MAX,
    )
    if not squeue.ok:
        raise _failure("squeue", squeue.output, squeue.returncode, squeue.timed_out)
    views = [parse_squeue(squeue.stdout)]
    left = wanted - set(views[0])
    if left:  # finished: slurmctld still knows them for a while
        scontrol = run(
            ["scontrol", "show", "job", "-o"],
            timeout=HOST_COMMAND_TIMEOUT_S,
            env=env,
            limit=PARSED_OUTPUT_MAX,
        )
        if scontrol.ok:
            views.append(parse_scontrol_jobs(scontrol.stdout))
            left -= set(views[-1])
    if left:  # long gone: accounting, where the cluster keeps it
        sacct = run(
            ["sacct", "-n", "-P", "-X", "-j", ",".join(sorted(left)),
             "-o", "JobID,State,NodeList,ExitCode"],
            timeout=HOST_COMMAND_TIMEOUT_S, env=env, limit=PARSED_OUTPUT_MAX,
        )  # fmt: skip
        if sacct.ok:
            views.append(parse_sacct(sacct.stdout))
    return {k: v for k, v in merged(*views).items() if k in wanted}


def cancel(job_ids: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """``scancel`` the jobs (those already over are ignored by Slurm)."""
    if not job_ids:
        return
    result = run(["scancel", *job_ids], timeout=HOST_COMMAND_TIMEOUT_S, env=env)
    if not result.ok:
        raise _failure("scancel", result.output, result.returncode, result.timed_out)
