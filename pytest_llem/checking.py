"""What a check raises to say how it ended, and the decorator that makes a function a check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from .report import Finding

F = TypeVar("F", bound=Callable[..., Any])


class CheckFailed(Exception):
    """A hard failure: the host cannot run the experiments until it is fixed."""

    def __init__(self, finding: Finding) -> None:
        self.finding = finding
        super().__init__(finding.message)


class CheckWarned(Exception):
    """The check ended with a warning: reported, never fails the run."""

    def __init__(self, finding: Finding) -> None:
        self.finding = finding
        super().__init__(finding.message)


class NotRun(pytest.skip.Exception):  # type: ignore[name-defined,misc]
    """The check could not run because something it needs failed first."""


def _finding(
    message: str, cause: str, fix: str, url: str, details: dict[str, Any] | None, severity: str
) -> Finding:
    if not fix and not url:
        from .remedies import remedy

        fix, url = remedy(cause)
    # id and tier are filled in from the item's marker when the report is made.
    return Finding(
        id="",
        tier=0,
        cause=cause,
        message=message,
        fix=fix,
        url=url,
        details=dict(details or {}),
        severity="warning" if severity == "warning" else "error",
    )


def fail(
    message: str,
    *,
    cause: str = "check_error",
    fix: str = "",
    url: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """End the current check with a hard failure."""
    raise CheckFailed(_finding(message, cause, fix, url, details, "error"))


def warn(
    message: str,
    *,
    cause: str = "check_error",
    fix: str = "",
    url: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """End the current check with a warning."""
    raise CheckWarned(_finding(message, cause, fix, url, details, "warning"))


def not_run(reason: str) -> None:
    raise NotRun(reason)


def check(*, tier: int, id: str) -> Callable[[F], F]:
    """Mark a function as a pre-flight check, collected whatever `python_functions` says."""

    def decorate(func: F) -> F:
        func.__test__ = True  # type: ignore[attr-defined]
        return pytest.mark.preflight(tier=tier, id=id)(func)  # type: ignore[no-any-return]

    return decorate
