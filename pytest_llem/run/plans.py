"""Remembered dry-run plans: `llem run --dry-run` of an unchanged study skips re-validation.

A plan is what a validated study means for a dry run: the pre-flight's settings, where a
skip comes from, the plan lines. It is stored under a key made
of the very bytes that were validated and everything else that went into it (the study's
path, the user config, every LLEM_RUNNER_* variable, the Slurm allocation's variables, the
command-line options, llem's and pydantic's installs), so an unchanged study gives the same
plan without importing pydantic.
A plan file is used only when it is a regular file owned by this user and writable by no
one else, and only when every value in it is valid; anything else is a miss. The pre-flight
itself is never remembered here: it runs every time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..domain.allocation import ENV_NAMES as ALLOCATION_ENV
from ..host.jsonfile import read_trusted_json
from ..host.paths import cache_dir, user_config_path
from ..settings import PreflightSettings

SCHEMA = 5  # (4 had a "docker" field that nothing read)
MAX_PLAN_BYTES = 256 * 1024


@dataclass(frozen=True)
class Plan:
    settings: PreflightSettings
    skipped_by: str | None  # where a skip of the pre-flight comes from, None when it runs
    lines: tuple[str, ...]  # what the dry run says it would run


def _install_part(module: str) -> bytes:
    spec = importlib.util.find_spec(module)
    origin = spec.origin if spec and spec.origin else ""
    with contextlib.suppress(OSError):
        return f"{origin}:{os.stat(origin).st_mtime_ns}".encode()
    return origin.encode()


def _file_part(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b"<absent>"


def plan_key(
    study_path: str,
    study_bytes: bytes,
    env: Mapping[str, str],
    runner_options: Sequence[str],
    cli_skip: bool | None,
    *,
    skip_checks: Sequence[str] = (),
) -> str:
    """The key of a plan: ``study_bytes`` are the bytes that will be (or were) validated."""
    from .. import __version__

    digest = hashlib.sha256()
    for part in (
        f"{SCHEMA}:{__version__}".encode(),
        _install_part("pytest_llem.run.config"),
        _install_part("pydantic"),
        str(Path(study_path).absolute()).encode(),
        study_bytes,
        _file_part(user_config_path(env)),
        json.dumps(sorted((k, v) for k, v in env.items() if k.startswith("LLEM_RUNNER_"))).encode(),
        json.dumps([env.get(name) for name in ALLOCATION_ENV]).encode(),  # a Slurm job's GPUs
        json.dumps([list(runner_options), cli_skip, list(skip_checks)]).encode(),
    ):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def _path(key: str) -> Path:
    return cache_dir() / "plans" / f"{key}.json"


def load_plan(key: str) -> Plan | None:
    """The plan stored under ``key``; None when absent, not trusted, or not a valid plan."""
    data = read_trusted_json(_path(key), MAX_PLAN_BYTES)
    if data is None:
        return None
    try:
        if data.pop("schema") != SCHEMA:
            return None
        settings = data.pop("settings")
        lines, skipped_by = data.pop("lines"), data.pop("skipped_by")
        if data or not isinstance(settings, dict):
            return None
        if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
            return None
        if not isinstance(skipped_by, (str, type(None))):
            return None
        names = {f.name for f in dataclasses.fields(PreflightSettings)}
        if not set(settings) <= names:
            return None
        for name in ("images", "skip", "gpus"):
            if name in settings:
                if not isinstance(settings[name], list):
                    return None
                settings[name] = tuple(settings[name])
        return Plan(PreflightSettings(**settings), skipped_by, tuple(lines))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # a value out of range (SettingError is a ValueError) is a miss too


def store_plan(key: str, plan: Plan) -> None:
    """Remember ``plan`` (atomically, private to this user; a cache that cannot be written
    is left alone)."""
    from ..host.jsonfile import write_json

    path = _path(key)
    settings = {
        f.name: sorted(value) if isinstance(value, frozenset) else value
        for f in dataclasses.fields(plan.settings)
        if (value := getattr(plan.settings, f.name)) != f.default
    }
    data = {
        "schema": SCHEMA,
        "settings": settings,
        "skipped_by": plan.skipped_by,
        "lines": list(plan.lines),
    }
    with contextlib.suppress(OSError):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json(path, data, mode=0o600)
