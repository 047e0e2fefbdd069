"""diagnose(): the pure classifier of Docker / NVIDIA output (DESIGN §3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Diagnosis:
    cause: str
    message: str
    fix: str = ""
    url: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def diagnose(output: str, returncode: int | None = None) -> Diagnosis:
    """Classify ``output`` (stdout and stderr together) into one cause of the vocabulary."""
    if returncode in (0, None):
        return Diagnosis("ok", "no failure recognised")
    return Diagnosis("unknown", "unrecognised failure", details={"output": output})
