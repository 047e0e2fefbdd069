"""The attestation's study keys, and what `llem run` makes of an attestation: the manifest
entry, `execution.require_clean`, the closing lines (no I/O but a temp dir)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llem.cli import main
from pytest_llem.domain.attestation import Attestation, Reason
from pytest_llem.domain.records import Endpoint
from pytest_llem.run.attest import Window, open_window, record_attestation, suspect_lines
from pytest_llem.run.config import load_study
from pytest_llem.run.manifest import ExperimentRecord
from pytest_llem.run.runner_kinds import Launch

EXPERIMENT = "experiments: [{model: m, backend: pytorch, command: [python, b.py]}]\n"
BUSY = Reason("gpu_busy", "GPU 0: PID 31337 python3 (20480 MiB), not the experiment's", 0)
SUSPECT = Attestation("suspect", (BUSY,), {}, 4, 0.2)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


def test_the_keys_and_their_defaults() -> None:
    Path("s.yaml").write_text(EXPERIMENT)
    execution = load_study("s.yaml").execution
    assert (execution.attest, execution.attest_interval_s, execution.require_clean) == (
        True,
        5.0,
        False,
    )
    Path("s.yaml").write_text(
        "execution: {attest: false, attest_interval_s: 0, require_clean: true}\n" + EXPERIMENT
    )
    execution = load_study("s.yaml").execution
    assert (execution.attest, execution.attest_interval_s, execution.require_clean) == (
        False,
        0.0,
        True,
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0.05", "must be 0 (before and after only) or from 0.1 to 3600 seconds"),
        ("-1", "must be 0 (before and after only) or from 0.1 to 3600 seconds"),
        (".inf", "must be 0 (before and after only) or from 0.1 to 3600 seconds"),
        ("true", "expected a number, got a boolean"),
    ],
)
def test_a_bad_interval_is_one_line(
    capsys: pytest.CaptureFixture[str], value: str, problem: str
) -> None:
    Path("study.yaml").write_text(f"execution: {{attest_interval_s: {value}}}\n{EXPERIMENT}")
    assert main(["run", "study.yaml", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"llem: error: study.yaml: execution.attest_interval_s: {problem}"


def test_off_means_no_window() -> None:
    Path("s.yaml").write_text("execution: {attest: false}\n" + EXPERIMENT)
    launch = Launch("001", "local", None, "all", None)
    assert open_window(launch, load_study("s.yaml").execution, "n") is None


def test_a_remote_daemons_gpus_are_unverified() -> None:
    """Nothing is run: the window knows at once that it cannot read them."""
    remote = Endpoint("tcp://gpu-box:2376")
    window = Window(Launch("001", "docker", "img", "all", remote), 5.0, "n", env={})
    with window:
        pass
    result = window.attestation()
    assert (result.status, [r.cause for r in result.reasons]) == (
        "unverified",
        ["host_driver_unavailable"],
    )
    assert "remote Docker daemon (tcp://gpu-box:2376)" in result.reasons[0].message


def test_no_nvidia_smi_is_unverified(tmp_path: Path) -> None:
    window = Window(Launch("001", "local", None, "device=1", None), 5.0, "n", {"PATH": "/nx"})
    with window:
        window.on_start(1)
    result = window.attestation()
    assert result.status == "unverified"
    assert result.reasons[0].message.startswith("nvidia-smi is not on this host's PATH")


def record(status: str = "ok") -> ExperimentRecord:
    return ExperimentRecord("001", "pytorch", "m", "local", None, status)  # type: ignore[arg-type]


def test_require_clean_fails_a_suspect_experiment() -> None:
    kept = record()
    record_attestation(kept, SUSPECT, require_clean=False)
    assert (kept.status, kept.attestation) == ("ok", SUSPECT.to_json())
    failed = record()
    record_attestation(failed, SUSPECT, require_clean=True)
    assert (failed.status, failed.cause) == ("failed", "gpu_busy")
    assert failed.message == (
        "suspect measurement (execution.require_clean): [gpu_busy] GPU 0: PID 31337 python3 "
        "(20480 MiB), not the experiment's"
    )
    assert failed.fix and failed.url
    # A clean or unverified one does not fail; nor does a failure change its cause.
    for status in ("clean", "unverified"):
        other = record()
        record_attestation(other, Attestation(status), require_clean=True)  # type: ignore[arg-type]
        assert other.status == "ok"
    crashed = record("failed")
    crashed.cause = "unknown"
    record_attestation(crashed, SUSPECT, require_clean=True)
    assert crashed.cause == "unknown"


def test_one_closing_line_per_suspect_experiment() -> None:
    clean, suspect, failed, off = record(), record(), record(), record()
    clean.id, suspect.id, failed.id, off.id = "a", "b", "c", "d"
    record_attestation(clean, Attestation("clean"), require_clean=False)
    record_attestation(suspect, SUSPECT, require_clean=False)
    record_attestation(failed, SUSPECT, require_clean=True)
    assert suspect_lines([clean, suspect, failed, off]) == [
        f"llem: suspect measurement: b: [gpu_busy] {BUSY.message}",
        f"llem: suspect measurement: c (failed: execution.require_clean): [gpu_busy] "
        f"{BUSY.message}",
    ]
    assert "attestation" in off.to_json() and off.to_json()["attestation"] is None
