"""What `llem run` says of a pre-flight that lets it go on (light: no pydantic)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..domain.report import Report


def skip_warning(source: str) -> str:
    return f"llem: warning: Docker pre-flight skipped ({source})"


def preflight_notice(report: Report | None) -> str:
    """The pre-flight's skip line, or its warnings; empty when there is nothing to say."""
    if report is None:
        return ""
    if report.skipped_by:
        return skip_warning(report.skipped_by)
    return report.render() if report.warnings else ""
