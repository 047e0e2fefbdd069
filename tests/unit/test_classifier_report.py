"""The corpus report (bench/classifier_report.py): no cause below 95%, confusions listed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "classifier_report.py"


@pytest.fixture(scope="module")
def report_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("classifier_report", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["classifier_report"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_no_cause_is_below_95_percent(report_module: ModuleType) -> None:
    cases = report_module.corpus()
    report = report_module.classify(cases)
    assert len(cases) >= 240
    low = {c: report.accuracy(c) for c in report.total if report.accuracy(c) < 0.95}
    assert not low, report_module.render(report)
    assert report.overall >= 0.97


def test_every_failure_cause_that_text_can_show_is_in_the_corpus(
    report_module: ModuleType,
) -> None:
    from pytest_llem.domain.causes import CAUSES

    never_from_text = {
        "probe_timeout",
        "gpu_count_mismatch",
        "check_error",
        "host_unreachable",
        "host_driver_unavailable",
        "toolkit_missing",
        "unsafe_run_file",
        "experiment_timeout",
        "unknown",
        # the measurement tier's, judged from nvidia-smi -q fields, never from an error text
        "gpu_busy",
        "persistence_mode_off",
        "mig_enabled",
        "gpu_throttled",
        "energy_counter_unsupported",
        "power_limit_changed",
        "gpu_hardware_fault",
        "driver_reloaded",  # an attestation's, from snapshots of nvidia-smi -q
        # judged from the host's files and the engine's answers, never from an error text
        "podman_cli_missing",
        "cdi_spec_missing",
        "cdi_spec_stale",
    }
    report = report_module.classify(report_module.corpus())
    assert set(CAUSES) - never_from_text <= set(report.total)


def test_the_report_lists_confusion_pairs(report_module: ModuleType) -> None:
    cases = [
        report_module.Case("a-miss", "Cannot connect to the Docker daemon", 1, "no_devices"),
        report_module.Case("a-hit", "No devices were found", 6, "no_devices"),
    ]
    text = report_module.render(report_module.classify(cases))
    assert "no_devices                           1 / 2       50.0%" in text
    assert "confusion no_devices -> daemon_unreachable (1): a-miss" in text


def test_the_script_prints_the_figures(
    report_module: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert report_module.main(["--no-speed"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "confusion" in out and "\nall " in out


def test_the_held_back_messages_are_scored_apart_at_98_percent_or_more(
    report_module: ModuleType,
) -> None:
    held = report_module.heldback()
    corpus_ids = {c.id for c in report_module.corpus()}
    assert len(held) >= 9
    assert not {c.id for c in held} & corpus_ids  # never part of the corpus in view
    report = report_module.classify(held)
    low = {c: report.accuracy(c) for c in report.total if report.accuracy(c) < 0.98}
    assert not low, report_module.render(report)
    assert "ok" not in report.total  # failures only: none may read as ok


def test_the_held_back_messages_cover_each_new_setup(report_module: ModuleType) -> None:
    import json

    setups = {
        json.loads(line)["setup"]
        for line in (report_module.HELDBACK / "docker-gpu-messages.heldback.jsonl")
        .read_text()
        .splitlines()
        if line.strip()
    }
    assert setups == {
        "desktop-wsl-integration-off",
        "podman-cdi-unresolvable",
        "ssh-remote-dial-stdio",
        "hook-driver-rpc-failed",
    }
