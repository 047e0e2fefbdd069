"""The manifest's record of the host and of the checks skipped (no I/O but a temp dir)."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_llem.domain.report import CheckResult, Finding, Report
from pytest_llem.run.manifest import Manifest
from pytest_llem.run.notices import check_skip_sources, preflight_notice
from pytest_llem.session import host_summary

GPU = {
    "index": 1,
    "name": "NVIDIA H200",
    "uuid": "GPU-1",
    "architecture": "Hopper",
    "persistence_mode": "Disabled",
    "mig_mode": "Disabled",
    "power_limit": "700.00 W",
    "default_power_limit": "700.00 W",
    "utilization_gpu": 0,
    "clock_events_active": ["Idle"],
    "processes": [],
    "temperature": "34 C",
    "clocks": {
        "applications": {"Graphics": "1980 MHz", "Memory": "3201 MHz"},
        "default_applications": {"Graphics": "1980 MHz", "Memory": "3201 MHz"},
        "auto_boost": None,
    },
}
DETAILS = {"gpus": [GPU], "driver_version": "580.159.04", "cuda_version": "13.0"}


def _report() -> Report:
    warning = Finding(
        "persistence-mode", 3, "persistence_mode_off", "persistence mode is off on GPU 1",
        "sudo nvidia-smi -pm 1", "https://x", DETAILS, "warning",
    )  # fmt: skip
    checks = [
        CheckResult("docker-cli", 1, "passed"),
        CheckResult("energy-counter", 3, "passed", reason="energy counter", details=DETAILS),
        CheckResult("gpu-idle", 3, "skipped", reason="skipped by --llem-skip gpu-idle"),
        CheckResult("persistence-mode", 3, "warning", details=DETAILS, finding=warning),
    ]
    # Without host-driver, the host block is what the measurement checks read.
    return Report(checks=checks, host=host_summary(checks))


def test_the_host_block(tmp_path: Path) -> None:
    manifest = Manifest("s", tmp_path, preflight=_report(), skipped_checks={"gpu-idle": "x"})
    data = json.loads(manifest.write().read_text())
    assert list(data) == ["study", "host", "skipped_checks", "experiments"]
    host = data["host"]
    assert (host["driver_version"], host["cuda_version"]) == ("580.159.04", "13.0")
    assert host["gpus"] == [
        {k: GPU[k] for k in ("index", "name", "uuid", "architecture", "persistence_mode")}
        | {"mig_mode": "Disabled", "power_limit": "700.00 W", "default_power_limit": "700.00 W"}
        | {"temperature": "34 C", "clocks": GPU["clocks"]}
    ]
    assert host["measurement"] == [
        {"id": "energy-counter", "outcome": "passed", "cause": None, "message": "energy counter"},
        {
            "id": "gpu-idle",
            "outcome": "skipped",
            "cause": None,
            "message": "skipped by --llem-skip gpu-idle",
        },
        {
            "id": "persistence-mode",
            "outcome": "warning",
            "cause": "persistence_mode_off",
            "message": "persistence mode is off on GPU 1",
        },
    ]
    assert data["skipped_checks"] == [{"id": "gpu-idle", "source": "x"}]


def test_a_skipped_preflight_records_no_host(tmp_path: Path) -> None:
    manifest = Manifest("s", tmp_path, preflight=Report(skipped_by="--skip-preflight"))
    data = manifest.to_json()
    assert data["host"] is None
    assert data["skipped_checks"] == [{"id": "all", "source": "--skip-preflight"}]
    assert Manifest("s").to_json()["host"] is None


def test_skip_lines_name_their_source() -> None:
    sources = check_skip_sources({"gpu-idle", "mig-mode"}, ["gpu-idle"], "s.yaml")
    assert sources == {"gpu-idle": "--skip-check", "mig-mode": "execution.skip_checks in s.yaml"}
    notice = preflight_notice(_report(), sources)
    assert notice.splitlines()[:3] == [
        "llem: warning: check gpu-idle skipped (--skip-check)",
        "llem: warning: check mig-mode skipped (execution.skip_checks in s.yaml)",
        "Docker pre-flight passed with 1 warning(s)",
    ]
    assert preflight_notice(Report(), {}) == ""
