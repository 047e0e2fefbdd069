"""Remembered dry-run plans: `llem run --dry-run` of an unchanged study skips re-validation.

A plan is what a validated study means for a dry run: whether a runner is Docker, the
pre-flight's images and limits, the skip warning, the plan lines. It is stored under a key
made of everything that went into it (the study file's path and bytes, the user config's,
every LLEM_RUNNER_* variable, the command-line options, llem's and pydantic's installs), so
an unchanged study gives the same plan without importing pydantic. The pre-flight itself is
never remembered here: it runs every time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..host.paths import cache_dir, user_config_path

SCHEMA = 1


@dataclass(frozen=True)
class Plan:
    docker: bool
    images: tuple[str, ...]
    timeout_s: float
    pull_timeout_s: float
    cache_s: float
    skip_warning: str | None  # the line a skipped pre-flight prints, None when it runs
    lines: tuple[str, ...]  # what the dry run says it would run


def _file_part(path: Path) -> bytes:
    try:
        return str(path.resolve()).encode() + b"\0" + path.read_bytes()
    except OSError:
        return str(path).encode() + b"\0<absent>"


def _install_part(module: str) -> bytes:
    spec = importlib.util.find_spec(module)
    origin = spec.origin if spec and spec.origin else ""
    with contextlib.suppress(OSError):
        return f"{origin}:{os.stat(origin).st_mtime_ns}".encode()
    return origin.encode()


def plan_key(
    study: str,
    env: Mapping[str, str],
    runner_options: Sequence[str],
    cli_skip: bool | None,
) -> str:
    from .. import __version__

    digest = hashlib.sha256()
    for part in (
        f"{SCHEMA}:{__version__}".encode(),
        _install_part("pytest_llem.run.config"),
        _install_part("pydantic"),
        _file_part(Path(study)),
        _file_part(user_config_path(env)),
        json.dumps(sorted((k, v) for k, v in env.items() if k.startswith("LLEM_RUNNER_"))).encode(),
        json.dumps([list(runner_options), cli_skip]).encode(),
    ):
        digest.update(part + b"\0\0")
    return digest.hexdigest()


def _path(key: str) -> Path:
    return cache_dir() / "plans" / f"{key}.json"


def load_plan(key: str) -> Plan | None:
    """The plan stored under ``key``; None when absent, unreadable or not a plan's shape."""
    try:
        data: Any = json.loads(_path(key).read_text())
        if data.pop("schema") != SCHEMA or not all(
            isinstance(data[name], list) for name in ("images", "lines")
        ):
            return None
        data["images"], data["lines"] = tuple(data["images"]), tuple(data["lines"])
        plan = Plan(**data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return plan if _well_formed(plan) else None


def _well_formed(plan: Plan) -> bool:
    from ..domain.imageref import is_image_ref

    limits = (plan.timeout_s, plan.pull_timeout_s, plan.cache_s)
    return (
        isinstance(plan.docker, bool)
        and all(isinstance(text, str) for text in (*plan.images, *plan.lines))
        and all(is_image_ref(image) for image in plan.images)
        and all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in limits)
        and isinstance(plan.skip_warning, (str, type(None)))
    )


def store_plan(key: str, plan: Plan) -> None:
    """Remember ``plan`` (atomically; a cache that cannot be written is left alone)."""
    path = _path(key)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".plan.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump({"schema": SCHEMA, **asdict(plan)}, handle)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
