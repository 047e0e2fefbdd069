"""What a check raises to say how it ended, and the decorator that makes a function a check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from .domain.report import CheckResult, Finding

F = TypeVar("F", bound=Callable[..., Any])


class CheckEnded(Exception):
    """A check ended with a finding; ``result`` is what it reports."""

    def __init__(self, result: CheckResult) -> None:
        self.result = result
        super().__init__(result.finding.message if result.finding else result.reason)


class CheckFailed(CheckEnded):
    """A hard failure: the host cannot run the experiments until it is fixed."""


class CheckWarned(CheckEnded):
    """The check ended with a warning: reported, never fails the run."""


class NotRun(pytest.skip.Exception):  # type: ignore[name-defined,misc]
    """The check could not run because something it needs failed first."""


def fail(
    message: str,
    *,
    cause: str = "check_error",
    fix: str = "",
    url: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """End the current check with a hard failure."""
    finding = Finding.of(cause, message, fix, url, details)
    raise CheckFailed(CheckResult(outcome="failed", finding=finding, details=finding.details))


def warn(
    message: str,
    *,
    cause: str = "check_error",
    fix: str = "",
    url: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """End the current check with a warning."""
    finding = Finding.of(cause, message, fix, url, details, "warning")
    raise CheckWarned(CheckResult(outcome="warning", finding=finding, details=finding.details))


def check(*, tier: int, id: str) -> Callable[[F], F]:
    """Mark a function as a pre-flight check, collected whatever `python_functions` says."""

    def decorate(func: F) -> F:
        func.__test__ = True  # type: ignore[attr-defined]
        return pytest.mark.preflight(tier=tier, id=id)(func)  # type: ignore[no-any-return]

    return decorate
