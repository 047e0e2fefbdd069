"""State of one pre-flight session: check outcomes as they arrive, and the report they make."""

from __future__ import annotations

from typing import Any

from .domain.report import CheckResult, Finding, Report

BUILTIN_IDS = (
    "docker-cli",
    "docker-daemon",
    "host-driver",
    "nvidia-toolkit",
    "cuda-compat",
    "gpu-in-container",
)


class Outcomes:
    """Check results keyed by check id, in collection order."""

    def __init__(self) -> None:
        self._results: dict[str, CheckResult] = {}
        self._order: dict[str, int] = {}
        self._durations: dict[str, float] = {}

    def add_duration(self, check_id: str, seconds: float) -> None:
        self._durations[check_id] = self._durations.get(check_id, 0.0) + seconds
        if check_id in self._results:
            self._results[check_id].duration_s = self._durations[check_id]

    def record(self, data: dict[str, Any], order: int) -> None:
        finding = data.get("finding")
        result = CheckResult(
            id=data["id"],
            tier=data["tier"],
            outcome=data["outcome"],
            duration_s=self._durations.get(data["id"], 0.0),
            reason=data.get("reason", ""),
            details=data.get("details", {}),
            cached=bool(data.get("cached")),
            finding=Finding(**finding) if finding else None,
        )
        self._results[result.id] = result
        self._order[result.id] = order

    def outcome(self, check_id: str) -> str | None:
        result = self._results.get(check_id)
        return result.outcome if result else None

    def hard_failures_before(self, tier: int) -> list[str]:
        return [r.id for r in self._results.values() if r.tier < tier and r.outcome == "failed"]

    def report(self, interrupted: bool = False) -> Report:
        checks = sorted(self._results.values(), key=lambda r: self._order[r.id])
        return Report(checks=checks, host=host_summary(checks), interrupted=interrupted)


def host_summary(checks: list[CheckResult]) -> dict[str, Any]:
    by_id = {c.id: c.details for c in checks}
    daemon, driver = by_id.get("docker-daemon", {}), by_id.get("host-driver", {})
    host: dict[str, Any] = {
        "docker_server_version": daemon.get("server_version", ""),
        "driver_version": driver.get("driver_version", ""),
        "cuda_version": driver.get("cuda_version", ""),
        "gpus": [{k: g.get(k) for k in ("index", "name", "uuid")} for g in driver.get("gpus", [])],
        "remote_daemon": bool(daemon.get("remote_daemon", False)),
    }
    return host
