"""The numbered report (DESIGN §2) and the JSON report (§5)."""

from __future__ import annotations

import json

from pytest_llem import DockerPreFlightError
from pytest_llem.domain.report import CheckResult, Finding, Report


def _failed(cid: str, message: str, fix: str, url: str = "", tier: int = 1) -> CheckResult:
    return CheckResult(
        cid, tier, "failed", finding=Finding(cid, tier, "unknown", message, fix, url)
    )


def test_failures_are_numbered_with_fix_lines() -> None:
    report = Report(
        checks=[
            _failed(
                "docker-cli",
                "Docker not found on PATH",
                "Install Docker Engine",
                "https://docs.docker.com/engine/install/",
            ),
            CheckResult("docker-daemon", 1, "not-run", reason="needs docker-cli"),
            _failed("cuda-compat[vllm/vllm-openai:v0.6.3]", "needs CUDA 12.4", "Upgrade", tier=2),
        ]
    )
    assert report.render().splitlines() == [
        "Docker pre-flight failed: 2 issue(s) found",
        "  1. [docker-cli] Docker not found on PATH",
        "     Fix: Install Docker Engine — https://docs.docker.com/engine/install/",
        "  2. [cuda-compat[vllm/vllm-openai:v0.6.3]] needs CUDA 12.4",
        "     Fix: Upgrade",
    ]
    assert str(DockerPreFlightError(report)) == report.render()


def test_warnings_follow_and_alone_say_passed() -> None:
    warning = Finding(
        "host-driver",
        1,
        "host_driver_unavailable",
        "no nvidia-smi",
        "Install",
        "https://x",
        severity="warning",
    )
    only = Report(checks=[CheckResult("host-driver", 1, "warning", finding=warning)])
    assert only.render().splitlines() == [
        "Docker pre-flight passed with 1 warning(s)",
        "Warnings:",
        "  - [host-driver] no nvidia-smi",
        "    Fix: Install — https://x",
    ]
    both = Report(
        checks=[
            _failed("docker-cli", "m", "f"),
            CheckResult("host-driver", 1, "warning", finding=warning),
        ]
    )
    assert both.render().splitlines()[3:5] == ["Warnings:", "  - [host-driver] no nvidia-smi"]


def test_nothing_to_say_renders_nothing() -> None:
    assert Report(checks=[CheckResult("docker-cli", 1, "passed")]).render() == ""


def test_json_shape() -> None:
    report = Report(
        checks=[
            _failed("docker-cli", "m", "f", "u"),
            CheckResult("gpu-in-container[a:1]", 2, "passed", 0.3141, cached=True),
        ],
        host={"driver_version": "550.54.15"},
    )
    data = json.loads(json.dumps(report.to_json()))
    assert data["schema"] == 1 and data["status"] == "failed"
    assert data["failures"] == [
        {
            "number": 1,
            "id": "docker-cli",
            "tier": 1,
            "cause": "unknown",
            "message": "m",
            "fix": "f",
            "url": "u",
            "details": {},
        }
    ]
    assert data["checks"][1] == {
        "id": "gpu-in-container[a:1]",
        "tier": 2,
        "outcome": "passed",
        "duration_s": 0.314,
        "reason": "",
        "details": {},
        "cached": True,
    }
    assert data["host"] == {"driver_version": "550.54.15"}
