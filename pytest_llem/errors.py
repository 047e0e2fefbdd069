"""Exception hierarchy: LLEMError > PreFlightError > DockerPreFlightError."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .domain.diagnosis import Diagnosis
    from .domain.report import Report


class LLEMError(Exception):
    """Base of every error llem raises on purpose."""


class ConfigError(LLEMError):
    """A user error in a study file or on the command line (exit status 2)."""


class PreFlightError(LLEMError):
    """A pre-flight found the host unfit."""


class DockerPreFlightError(PreFlightError):
    """The Docker pre-flight failed, or was incomplete; ``str()`` is the numbered report."""

    def __init__(self, report: Report) -> None:
        self.report = report
        super().__init__(report.render())


class DockerError(LLEMError):
    """A Docker experiment failed; carries the diagnosis of its output."""

    def __init__(self, diagnosis: Diagnosis) -> None:
        self.diagnosis = diagnosis
        super().__init__(diagnosis.message)
