"""What a check raises to say how it ended, and the decorator that makes a function a check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from .domain.report import Finding

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


def fail(
    message: str,
    *,
    cause: str = "check_error",
    fix: str = "",
    url: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """End the current check with a hard failure."""
    raise CheckFailed(Finding.of(cause, message, fix, url, details))


def warn(
    message: str,
    *,
    cause: str = "check_error",
    fix: str = "",
    url: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """End the current check with a warning."""
    raise CheckWarned(Finding.of(cause, message, fix, url, details, "warning"))


def not_run(reason: str) -> None:
    raise NotRun(reason)


def check(*, tier: int, id: str) -> Callable[[F], F]:
    """Mark a function as a pre-flight check, collected whatever `python_functions` says."""

    def decorate(func: F) -> F:
        func.__test__ = True  # type: ignore[attr-defined]
        return pytest.mark.preflight(tier=tier, id=id)(func)  # type: ignore[no-any-return]

    return decorate
