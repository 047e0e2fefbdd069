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
    "diagnose": "domain.diagnosis",
    "Diagnosis": "domain.diagnosis",
    "CAUSES": "domain.causes",
    "LLEMError": "errors",
    "ConfigError": "errors",
    "PreFlightError": "errors",
    "DockerPreFlightError": "errors",
    "DockerError": "errors",
    "Finding": "domain.report",
    "CheckResult": "domain.report",
    "Report": "domain.report",
    "HostFacts": "domain.records",
    "ImageFacts": "domain.records",
    "ProbeFacts": "domain.records",
    "ImageInfo": "domain.records",
    "Endpoint": "domain.records",
    "CommandResult": "domain.records",
    "SmiInfo": "domain.nvidia_smi",
    "PreflightSettings": "settings",
    "run_docker_preflight": "preflight",
    "evaluate_requirements": "domain.requirements",
    "RequirementVerdict": "domain.requirements",
    "min_driver_for_cuda": "domain.cuda_table",
    "cuda_for_driver": "domain.cuda_table",
    "fail": "checking",
    "warn": "checking",
    "check": "checking",
    "CheckContext": "context",
    "load_study": "run.config",
    "StudyConfig": "run.config",
    "RunnerSpec": "run.runners",
    "resolve_runners": "run.runners",
    "docker_images": "run.runners",
    "run_study_preflight": "run.study",
    "run_study": "run.study",
    "run_experiment": "run.study",
    "Manifest": "run.manifest",
}

__all__ = [
    "CAUSES",
    "CheckContext",
    "CheckResult",
    "CommandResult",
    "ConfigError",
    "Diagnosis",
    "DockerError",
    "DockerPreFlightError",
    "Endpoint",
    "Finding",
    "HostFacts",
    "ImageFacts",
    "ImageInfo",
    "LLEMError",
    "Manifest",
    "PreFlightError",
    "PreflightSettings",
    "ProbeFacts",
    "Report",
    "RequirementVerdict",
    "RunnerSpec",
    "SmiInfo",
    "StudyConfig",
    "check",
    "cuda_for_driver",
    "diagnose",
    "docker_images",
    "evaluate_requirements",
    "fail",
    "load_study",
    "min_driver_for_cuda",
    "resolve_runners",
    "run_docker_preflight",
    "run_experiment",
    "run_study",
    "run_study_preflight",
    "warn",
]

if TYPE_CHECKING:
    from .checking import check, fail, warn
    from .context import CheckContext
    from .domain.causes import CAUSES
    from .domain.cuda_table import cuda_for_driver, min_driver_for_cuda
    from .domain.diagnosis import Diagnosis, diagnose
    from .domain.nvidia_smi import SmiInfo
    from .domain.records import (
        CommandResult,
        Endpoint,
        HostFacts,
        ImageFacts,
        ImageInfo,
        ProbeFacts,
    )
    from .domain.report import CheckResult, Finding, Report
    from .domain.requirements import RequirementVerdict, evaluate_requirements
    from .errors import (
        ConfigError,
        DockerError,
        DockerPreFlightError,
        LLEMError,
        PreFlightError,
    )
    from .preflight import run_docker_preflight
    from .run.config import StudyConfig, load_study
    from .run.manifest import Manifest
    from .run.runners import RunnerSpec, docker_images, resolve_runners
    from .run.study import run_experiment, run_study, run_study_preflight
    from .settings import PreflightSettings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_llem' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
