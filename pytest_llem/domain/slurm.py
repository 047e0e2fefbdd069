"""Slurm, as text: the drain reason of a failed pre-flight, and what the job clients print
(sbatch, squeue, scontrol, sacct) read into job states. Pure: the commands run in
`host/slurm.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .text import ascii_int, printable

if TYPE_CHECKING:
    from .report import Report

# What Slurm keeps of a node's reason: slurmctld holds the whole string, but slurmdbd stores
# node events in a ``reason tinytext`` column, 255 bytes
# (src/plugins/accounting_storage/mysql/accounting_storage_mysql.c, event_table_fields).
REASON_MAX_BYTES = 255
REASON_PREFIX = "llem: "

Phase = Literal["queued", "running", "done"]

# Job states (squeue %T, scontrol JobState, sacct State), by what they mean for a waiting run.
QUEUED_STATES = frozenset(
    {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD"}
)
RUNNING_STATES = frozenset(
    {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "SUSPENDED", "STOPPED", "RESIZING"}
)
DONE_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
        "SPECIAL_EXIT",
        "REVOKED",
    }
)
# Why a job that left no record of its own ended, in words.
_ENDINGS = {
    "COMPLETED": "ended without writing its record",
    "FAILED": "failed",
    "CANCELLED": "was cancelled",
    "TIMEOUT": "reached its time limit",
    "NODE_FAIL": "lost its node",
    "PREEMPTED": "was preempted",
    "BOOT_FAIL": "could not boot its node",
    "DEADLINE": "passed its deadline",
    "OUT_OF_MEMORY": "ran out of memory",
}


# --- the drain reason ------------------------------------------------------------------------


def cut_bytes(text: str, limit: int, tail: str = "...") -> str:
    """``text`` in at most ``limit`` bytes of UTF-8, ending in ``tail`` when it was cut (never
    in the middle of a character)."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    room = max(limit - len(tail.encode("utf-8")), 0)
    return data[:room].decode("utf-8", errors="ignore") + tail


def drain_reason(check_id: str, message: str, more: int = 0) -> str:
    """``llem: [check-id] message`` on one line, cut to what Slurm keeps of a reason; ``more``
    other failures are counted at the end, which stays when the message is cut."""
    head = f"{REASON_PREFIX}[{check_id}] "
    suffix = f" (+{more} more)" if more else ""
    one_line = printable(" ".join(message.split()))
    room = REASON_MAX_BYTES - len(head.encode()) - len(suffix.encode())
    if room < 16:  # an absurd id: the line as a whole is cut
        return cut_bytes(head + one_line + suffix, REASON_MAX_BYTES)
    return head + cut_bytes(one_line, room) + suffix


def reason_of(report: Report) -> str:
    """The drain reason of a pre-flight that did not pass; "" when it passed (warnings
    allowed) or was skipped."""
    failures = report.failures
    if failures:
        first = failures[0]
        return drain_reason(first.id, first.message, len(failures) - 1)
    if report.ok:  # passed (warnings allowed) or skipped
        return ""
    return drain_reason("preflight", f"pre-flight {report.status}: nothing was proved")


# --- job states ------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobState:
    """One job as a Slurm client showed it."""

    job_id: str
    state: str  # e.g. PENDING, RUNNING, COMPLETED ("CANCELLED by 0" is read as CANCELLED)
    reason: str = ""  # why it waits (squeue %r, scontrol Reason)
    node: str = ""  # where it runs or ran
    exit_code: str = ""  # "0:0" (status:signal), when known
    restarts: int = 0

    @property
    def phase(self) -> Phase:
        return phase_of(self.state)

    def ending(self) -> str:
        """How a job that ended without its record ended, in words."""
        words = _ENDINGS.get(self.state, f"ended {self.state}")
        code = f" (exit code {self.exit_code})" if self.exit_code not in ("", "0:0") else ""
        return words + code


def phase_of(state: str) -> Phase:
    """``queued``, ``running`` or ``done`` of a job state; a state this version does not
    know counts as running (the job is not over until Slurm says so)."""
    base = _base_state(state)
    if base in QUEUED_STATES:
        return "queued"
    if base in DONE_STATES:
        return "done"
    return "running"


def _base_state(state: str) -> str:
    words = state.strip().split()
    return words[0].upper().rstrip("+") if words else ""


def parse_sbatch(stdout: str) -> str | None:
    """The job id that ``sbatch --parsable`` printed (``id`` or ``id;cluster``)."""
    for line in stdout.splitlines():
        job_id = line.strip().split(";")[0]
        if job_id.isascii() and job_id.isdigit():
            return job_id
    return None


def parse_squeue(stdout: str) -> dict[str, JobState]:
    """Lines of ``squeue -h -o %i|%T|%r|%N`` by job id."""
    found: dict[str, JobState] = {}
    for line in stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4 or not parts[0]:
            continue
        job_id, state, reason, node = (p.strip() for p in parts)
        found[job_id] = JobState(
            job_id, _base_state(state), "" if reason == "None" else reason, _node(node)
        )
    return found


_SCONTROL_KEYS = ("JobId", "JobState", "Reason", "NodeList", "BatchHost", "ExitCode", "Restarts")
_SCONTROL_FIELD = re.compile(r"(?:^|\s)(" + "|".join(_SCONTROL_KEYS) + r")=(\S*)")


def parse_scontrol_jobs(stdout: str) -> dict[str, JobState]:
    """Lines of ``scontrol show job -o`` (one job a line) by job id."""
    found: dict[str, JobState] = {}
    for line in stdout.splitlines():
        fields = dict(_SCONTROL_FIELD.findall(line))
        job_id = fields.get("JobId", "")
        if not job_id:
            continue
        restarts = fields.get("Restarts", "0")
        found[job_id] = JobState(
            job_id,
            _base_state(fields.get("JobState", "")),
            "" if fields.get("Reason") in (None, "None") else fields["Reason"],
            _node(fields.get("BatchHost") or fields.get("NodeList", "")),
            fields.get("ExitCode", ""),
            ascii_int(restarts) or 0,
        )
    return found


def parse_sacct(stdout: str) -> dict[str, JobState]:
    """Lines of ``sacct -n -P -X -o JobID,State,NodeList,ExitCode`` by job id."""
    found: dict[str, JobState] = {}
    for line in stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4 or not parts[0]:
            continue
        job_id, state, node, code = (p.strip() for p in parts)
        found[job_id] = JobState(job_id, _base_state(state), "", _node(node), code)
    return found


def _node(text: str) -> str:
    return "" if text in ("", "(null)", "None", "None assigned") else text


def merged(*views: Mapping[str, JobState]) -> dict[str, JobState]:
    """The first view's state of each job (squeue's, then scontrol's, then sacct's)."""
    found: dict[str, JobState] = {}
    for view in views:
        for job_id, state in view.items():
            found.setdefault(job_id, state)
    return found


# --- submission ------------------------------------------------------------------------------


def sbatch_argv(
    *,
    name: str,
    output: str,
    script: str,
    args: Sequence[str] = (),
    partition: str | None = None,
    gpus: int = 1,
    time_limit: str | None = None,
    extra_args: Iterable[str] = (),
) -> list[str]:
    """``sbatch`` of one job: its name, output file, GPUs, partition and time limit, the site's
    own arguments, then the script and its arguments."""
    argv = ["sbatch", "--parsable", f"--job-name={name}", f"--output={output}"]
    if gpus:
        argv.append(f"--gres=gpu:{gpus}")
    if partition:
        argv.append(f"--partition={partition}")
    if time_limit:
        argv.append(f"--time={time_limit}")
    return [*argv, *extra_args, script, *args]


# Slurm's time formats: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds; or no limit.
TIME_LIMIT = re.compile(
    r"^(?:\d+(?::\d+){0,2}|\d+-\d+(?::\d+){0,2}|UNLIMITED|INFINITE|unlimited|infinite)$"
)
