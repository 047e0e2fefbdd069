"""run_docker_preflight(): the pre-flight through pytest.main, isolated from the caller."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .report import Report


def run_docker_preflight(
    skip: bool = False,
    images: Sequence[str] | None = None,
    config: str | Path | None = None,
    *,
    timeout_s: float | None = None,
    cache_s: float | None = None,
    no_cache: bool = False,
    json_path: str | Path | None = None,
) -> Report:
    """Run the Docker pre-flight; return the report, raise DockerPreFlightError on failure.

    (stub: implemented by the core plugin work)
    """
    raise NotImplementedError
