"""pytest-llem: Docker / NVIDIA GPU pre-flight checks for LLM energy-measurement experiments.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> module that defines it. Loaded on first use, so that the pytest plugin
# (which imports this package) stays cheap for a test suite that never enables it.
_EXPORTS: dict[str, str] = {
    "diagnose": "diagnosis",
    "Diagnosis": "diagnosis",
    "CAUSES": "causes",
    "LLEMError": "errors",
    "ConfigError": "errors",
    "PreFlightError": "errors",
    "DockerPreFlightError": "errors",
    "DockerError": "errors",
    "Finding": "report",
    "CheckResult": "report",
    "Report": "report",
    "run_docker_preflight": "preflight",
    "evaluate_requirements": "requirements",
    "RequirementVerdict": "requirements",
    "min_driver_for_cuda": "cuda_table",
    "cuda_for_driver": "cuda_table",
    "fail": "checking",
    "warn": "checking",
    "check": "checking",
    "CheckContext": "context",
}

__all__ = [
    "CAUSES",
    "CheckContext",
    "CheckResult",
    "ConfigError",
    "Diagnosis",
    "DockerError",
    "DockerPreFlightError",
    "Finding",
    "LLEMError",
    "PreFlightError",
    "Report",
    "RequirementVerdict",
    "check",
    "cuda_for_driver",
    "diagnose",
    "evaluate_requirements",
    "fail",
    "min_driver_for_cuda",
    "run_docker_preflight",
    "warn",
]

if TYPE_CHECKING:
    from .causes import CAUSES
    from .checking import check, fail, warn
    from .context import CheckContext
    from .cuda_table import cuda_for_driver, min_driver_for_cuda
    from .diagnosis import Diagnosis, diagnose
    from .errors import (
        ConfigError,
        DockerError,
        DockerPreFlightError,
        LLEMError,
        PreFlightError,
    )
    from .preflight import run_docker_preflight
    from .report import CheckResult, Finding, Report
    from .requirements import RequirementVerdict, evaluate_requirements


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_llem' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
