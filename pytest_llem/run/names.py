"""The names a run gives things: its directory, its containers (DESIGN §6, §9).

Pure rules, so that a study is validated against them before anything runs: a study name or an
experiment id that could not become a file or container name is a config error, not a failure
half-way through a run.
"""

from __future__ import annotations

import hashlib
import re

RUNS_DIR = "llem-runs"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"  # UTC; always 16 characters
NAME_MAX = 255  # bytes in one path component (Linux NAME_MAX)
# `make_run_dir` appends `-2`, `-3`... to a run directory that exists: room for that.
_COUNTER_ROOM = len("-99999")
# The longest study name (as `safe_name` makes it) that `<study>-<stamp>[-N]` allows.
STUDY_NAME_MAX = NAME_MAX - len("-") - len("20240101T000000Z") - _COUNTER_ROOM
# An experiment's id: `<id>_config.json` (and a container name) must stay far below NAME_MAX.
EXPERIMENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
EXPERIMENT_ID_MAX = 64

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_STUDY_CHARS = 40  # of the study's name in a container name


def safe_name(text: str) -> str:
    """``text`` with every run of characters outside ``[A-Za-z0-9_.-]`` replaced by ``-``."""
    return _UNSAFE.sub("-", text).strip("-") or "x"


def study_part(study: str) -> str:
    """The study's name as a container name allows it, with a short hash of the full name
    when it had to be changed: ``my study/ü`` and ``my study/é`` stay apart."""
    safe = safe_name(study)[:_STUDY_CHARS].rstrip("-.")
    if safe == study:
        return safe
    digest = hashlib.sha256(study.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{safe}-{digest[:8]}"


def container_name(study: str, exp_id: str, run_id: str) -> str:
    """``llem-<study>-<run id>-<id>``: unique per run, so that runs of one study never clash."""
    return f"llem-{study_part(study)}-{run_id}-{safe_name(exp_id)}"


def run_dir_name(study: str, stamp: str) -> str:
    """``<study>-<UTC timestamp>``: the default run directory's name under `RUNS_DIR`."""
    return f"{safe_name(study)}-{stamp}"


def study_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a run directory (it is too long), or None."""
    length = len(safe_name(name))
    if length <= STUDY_NAME_MAX:
        return None
    return (
        f"too long to name a run directory ({length} characters after unsafe ones are "
        f"replaced; at most {STUDY_NAME_MAX})"
    )
