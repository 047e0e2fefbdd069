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
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .causes import CAUSES
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_llem' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
