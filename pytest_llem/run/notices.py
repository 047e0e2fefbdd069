"""What `llem run` says of a pre-flight that lets it go on (light: no pydantic)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..domain.report import Report


def skip_warning(source: str) -> str:
    return f"llem: warning: Docker pre-flight skipped ({source})"


def check_skip_sources(skip: Iterable[str], cli: Iterable[str], origin: str) -> dict[str, str]:
    """Where each skipped check id comes from: ``--skip-check``, else the study file."""
    given = set(cli)
    return {
        cid: "--skip-check" if cid in given else f"execution.skip_checks in {origin}"
        for cid in sorted(skip)
    }


def preflight_notice(report: Report | None, skip_sources: Mapping[str, str] | None = None) -> str:
    """The pre-flight's skip line, or its warnings, and a line per check skipped as asked
    (``skip_sources``: id -> where the skip came from); empty when there is nothing to say."""
    if report is None:
        return ""
    if report.skipped_by:
        return skip_warning(report.skipped_by)
    lines = [
        f"llem: warning: check {cid} skipped ({source})"
        for cid, source in (skip_sources or {}).items()
    ]
    if report.warnings:
        lines.append(report.render())
    return "\n".join(lines)
