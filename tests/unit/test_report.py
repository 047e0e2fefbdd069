"""The numbered report (DESIGN §2) and the JSON report (§5)."""

from __future__ import annotations

import json

from pytest_llem import DockerPreFlightError
from pytest_llem.domain.report import STATUSES, CheckResult, Finding, Missing, Report


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


# --- the verdict (DESIGN §10) -----------------------------------------------------------------

WARNING = Finding("host-driver", 1, "host_driver_unavailable", "no nvidia-smi", severity="warning")
MISSING = [
    Missing("docker-cli", 1, "deselected by -k 'not cli'"),
    Missing("gpu-idle", 3, "not run: collect only (--co)"),
]


def test_the_verdict_is_one_of_four_words() -> None:
    warned = Report(checks=[CheckResult("host-driver", 1, "warning", finding=WARNING)])
    cases = {
        "passed": Report(checks=[CheckResult("docker-cli", 1, "passed")]),
        "warned": warned,
        "failed": Report(checks=[_failed("docker-cli", "m", "f")], missing=MISSING),
        "incomplete": Report(checks=warned.checks, missing=MISSING),
        "interrupted": Report(checks=[CheckResult("docker-cli", 1, "passed")], interrupted=True),
        "skipped": Report(skipped_by="--llem-skip all"),
    }
    statuses = {name: report.status for name, report in cases.items()}
    assert statuses == {
        "passed": "passed",
        "warned": "passed",  # warnings are listed, and never fail the run
        "failed": "failed",  # a failure wins over checks that did not run
        "incomplete": "incomplete",
        "interrupted": "incomplete",
        "skipped": "skipped",
    }
    assert {s for s in statuses.values()} == set(STATUSES)
    assert [name for name, r in cases.items() if r.ok] == ["passed", "warned", "skipped"]


def test_an_incomplete_report_names_each_check_that_did_not_run_and_why() -> None:
    report = Report(
        checks=[CheckResult("host-driver", 1, "warning", finding=WARNING)], missing=MISSING
    )
    assert report.render().splitlines() == [
        "Docker pre-flight incomplete: 2 required check(s) did not run",
        "  - [docker-cli] deselected by -k 'not cli'",
        "  - [gpu-idle] not run: collect only (--co)",
        "Warnings:",
        "  - [host-driver] no nvidia-smi",
    ]
    assert str(DockerPreFlightError(report)) == report.render()
    data = json.loads(json.dumps(report.to_json()))
    assert data["status"] == "incomplete"
    assert data["missing"] == [
        {"id": "docker-cli", "tier": 1, "reason": "deselected by -k 'not cli'"},
        {"id": "gpu-idle", "tier": 3, "reason": "not run: collect only (--co)"},
    ]


def test_a_failed_report_also_names_what_did_not_run() -> None:
    report = Report(checks=[_failed("nvidia-toolkit", "m", "f")], missing=MISSING[:1])
    assert report.render().splitlines() == [
        "Docker pre-flight failed: 1 issue(s) found",
        "  1. [nvidia-toolkit] m",
        "     Fix: f",
        "Docker pre-flight incomplete: 1 required check(s) did not run",
        "  - [docker-cli] deselected by -k 'not cli'",
    ]


def test_an_interrupted_report_is_incomplete_even_when_every_check_had_ended() -> None:
    report = Report(checks=[CheckResult("docker-cli", 1, "passed")], interrupted=True)
    assert report.render() == "Docker pre-flight incomplete: interrupted after 1 check(s)"
    assert report.to_json()["status"] == "incomplete"


def test_a_skipped_report_says_by_what() -> None:
    for source in ("--llem-skip all", "execution.skip_preflight in study.yaml"):
        report = Report(skipped_by=source)
        assert report.render() == f"Docker pre-flight skipped: {source}"
        data = report.to_json()
        assert (data["status"], data["skipped_by"], data["missing"]) == ("skipped", source, [])
