"""`llem`: usage errors, pre-flight outcomes, failed experiments and interrupts, without Docker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from testbed.captures import verbatim
from testbed.preflight import with_default_sigint

from pytest_llem import __version__
from pytest_llem.cli import main
from pytest_llem.domain.report import CheckResult, Finding, Report
from pytest_llem.errors import DockerPreFlightError

LOCAL_STUDY = "name: s\nexperiments: [{model: gpt2, backend: pytorch, command: [python, w.py]}]\n"
DOCKER_STUDY = (
    "name: s\n"
    "runners: {vllm: 'docker:v/img:1', pytorch: local}\n"
    "experiments:\n"
    "  - {model: m, backend: vllm}\n"
    "  - {model: gpt2, backend: pytorch, command: [python, w.py]}\n"
)
# A workload as `llem run` dispatches it: reads $LLEM_CONFIG_PATH, writes its result beside it.
WORKLOAD = """\
import json, os, sys, time
config = json.load(open(os.environ["LLEM_CONFIG_PATH"]))
mode = config["params"].get("mode", "ok")
print("workload", config["id"], "in", os.getcwd(), flush=True)
if mode == "fail":
    print("CUDA out of memory, giving up", file=sys.stderr)
    sys.exit(3)
if mode == "error-file":
    json.dump({"message": "model not found"}, open(config["error_path"], "w"))
    sys.exit(4)
if mode == "sleep":
    open(config["result_path"] + ".pid", "w").write(str(os.getpid()))
    time.sleep(60)
if mode != "no-result":
    json.dump({"energy_j": 1.5, "cwd": os.getcwd()}, open(config["result_path"], "w"))
"""


@pytest.fixture
def idle_gpu_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An `nvidia-smi` on PATH that answers with the real capture of an idle H200: the
    measurement tier passes, so `llem run` prints nothing for the pre-flight."""
    answer = tmp_path / "smi-q.txt"
    answer.write_text(verbatim("captured/h200-580.159.04_smi-q.txt"))
    tool = tmp_path / "bin" / "nvidia-smi"
    tool.parent.mkdir()
    tool.write_text(f"#!/bin/sh\nexec cat {answer}\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("LLEM_RUNNER_", "DOCKER_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.py").write_text(WORKLOAD)


def llem(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def one_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, out, err = llem(capsys, *args)
    assert (code, out) == (2, ""), err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("llem: error: ")
    return err.strip().removeprefix("llem: error: ")


# -- usage -------------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert llem(capsys, "--version") == (0, f"llem {__version__}\n", "")


def test_python_dash_m(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest_llem", "--version"], capture_output=True, text=True
    )
    assert (result.returncode, result.stdout) == (0, f"llem {__version__}\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: COMMAND (see 'llem --help')"),
        (["bogus"], "argument COMMAND: invalid choice: 'bogus'"),
        (["run"], "give a study file, or --model and --backend"),
        (["run", "--model", "gpt2"], "--model and --backend go together"),
        (["run", "--backend", "vllm"], "--model and --backend go together"),
        (["run", "--model", "gpt2", "--backend", "jax"],
         "--backend: unknown backend 'jax' (known backends: pytorch, tensorrt, vllm)"),
        (["run", "--model", "", "--backend", "vllm"], "--model: must not be empty"),
        (["run", "s.yaml", "--", "python", "x.py"],
         "a command after '--' needs --model and --backend"),
        (["run", "--model", "m", "--backend", "pytorch", "--"],
         "the command after '--' must not be empty"),
        (["run", "--runner", "vllm", "--model", "m", "--backend", "vllm"],
         "--runner vllm: expected BACKEND=RUNNER"),
        (["run", "--runner", "vllm=singularity", "--model", "m", "--backend", "vllm"],
         "--runner vllm: invalid runner 'singularity'"),
        (["run", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["run", "--model", "m", "--backend", "pytorch", "--skip-check", "gpu-idel", "--", "x"],
         "--skip-check: unknown check id 'gpu-idel' (valid ids: all, docker-cli, "),
        (["run", "--model", "m", "--backend", "pytorch"],
         "experiment 001 (m on pytorch): the local runner (from default) needs a command"),
        (["preflight", "--image", "$(touch /tmp/llem-pwned)"],
         "--image: invalid image reference '$(touch /tmp/llem-pwned)'"),
        (["preflight", "--timeout", "0"], "--timeout: should be greater than 0, got 0"),
        (["preflight", "--timeout", "soon"], "--timeout: expected a number of seconds, got 'soon'"),
        (["preflight", "--timeout", "nan"], "--timeout: should be a finite number, got nan"),
        (["preflight", "--timeout", "-5"], "--timeout: should be greater than 0, got -5"),
        (["preflight", "--timeout", "1e400"], "--timeout: should be a finite number, got 1e400"),
        (["preflight", "--timeout", "86401"],
         "--timeout: should be less than or equal to 86400, got 86401"),
    ],
)  # fmt: skip
def test_usage_errors(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert one_error(capsys, *args).startswith(message)
    assert not Path("/tmp/llem-pwned").exists()
    assert not Path("llem-runs").exists()


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = llem(capsys, "run", "--help")
    assert code == 0
    assert "--skip-preflight, --no-skip-preflight" in out


# -- the run directory -------------------------------------------------------------------------


def test_output_under_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    Path("study.yaml").write_text(LOCAL_STUDY)
    Path("afile").write_text("")
    message = one_error(capsys, "run", "study.yaml", "--output", "afile/run")
    assert message.endswith("afile is not a directory")
    assert message.startswith("--output ")


def test_output_with_a_colon(capsys: pytest.CaptureFixture[str]) -> None:
    Path("study.yaml").write_text(LOCAL_STUDY)
    message = one_error(capsys, "run", "study.yaml", "--output", "a:b")
    assert message.endswith("a path with ':' cannot be mounted into a container")


def test_unwritable_output_is_found_before_the_preflight(
    capsys: pytest.CaptureFixture[str], preflight: FakePreflight
) -> None:
    Path("study.yaml").write_text(DOCKER_STUDY)
    Path("afile").write_text("")
    one_error(capsys, "run", "study.yaml", "--output", "afile/x")
    assert preflight.calls == []


# -- the pre-flight as `llem run` shows it -----------------------------------------------------


def finding(check_id: str, message: str, severity: str = "error") -> Finding:
    return Finding(check_id, 1, "toolkit_missing", message, fix="Install it", url="https://x",
                   severity=severity)  # type: ignore[arg-type]  # fmt: skip


FAILED = Report(
    checks=[
        CheckResult("docker-cli", 1, "passed", 0.01, "docker 28.2.2"),
        CheckResult("nvidia-toolkit", 1, "failed", 0.02,
                    finding=finding("nvidia-toolkit", "NVIDIA Container Toolkit not found")),
        CheckResult("host-driver", 1, "warning", 0.03, details={"driver_version": "550"},
                    finding=finding("host-driver", "nvidia-smi not found", "warning")),
        CheckResult("cuda-compat[v/img:1]", 2, "not-run", reason="tier 1 failed"),
        CheckResult("gpu-in-container[v/img:1]", 2, "skipped", reason="--llem-skip"),
    ]
)  # fmt: skip
WARNED = Report(checks=[FAILED.checks[0], FAILED.checks[2]])
PASSED = Report(checks=[FAILED.checks[0]])


@dataclass
class FakePreflight:
    """Stands in for run_docker_preflight: records its calls, answers with ``report``."""

    report: Report = field(default_factory=lambda: PASSED)
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, **kwargs: Any) -> Report:
        self.calls.append(kwargs)
        if self.report.failures:
            raise DockerPreFlightError(self.report)
        return self.report


@pytest.fixture
def preflight(monkeypatch: pytest.MonkeyPatch) -> FakePreflight:
    fake = FakePreflight()
    monkeypatch.setattr("pytest_llem.preflight.run_docker_preflight", fake)
    return fake


def test_run_stops_on_a_failed_preflight(
    capsys: pytest.CaptureFixture[str], preflight: FakePreflight
) -> None:
    preflight.report = FAILED
    Path("study.yaml").write_text(DOCKER_STUDY)
    code, out, err = llem(capsys, "run", "study.yaml", "--output", "out")
    assert (code, out) == (1, "")
    assert err == str(DockerPreFlightError(FAILED)) + "\n"
    assert err.startswith("Docker pre-flight failed: 1 issue(s) found\n  1. [nvidia-toolkit] ")
    assert not Path("out").exists()  # nothing started


def test_run_shows_warnings_and_goes_on(
    capsys: pytest.CaptureFixture[str], preflight: FakePreflight
) -> None:
    preflight.report = WARNED
    Path("study.yaml").write_text(DOCKER_STUDY)
    code, _, err = llem(capsys, "run", "study.yaml", "--dry-run")
    assert code == 0
    assert err.startswith(WARNED.render() + "\n")
    assert "llem: dry run: 001 m (vllm, docker from study runners.vllm): v/img:1" in err


def test_run_says_nothing_of_a_passed_preflight(
    capsys: pytest.CaptureFixture[str], preflight: FakePreflight
) -> None:
    Path("study.yaml").write_text(DOCKER_STUDY)
    code, out, err = llem(capsys, "run", "study.yaml", "--dry-run")
    assert (code, out) == (0, "")
    assert all(line.startswith("llem: dry run: ") for line in err.splitlines())
    assert preflight.calls[0]["settings"].images == ("v/img:1",)
    assert not Path("llem-runs").exists()  # a dry run dispatches nothing


def test_remote_daemon_is_not_refused(
    capsys: pytest.CaptureFixture[str], preflight: FakePreflight, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote daemon gets the pre-flight and dispatch (without bind mounts) like a local one."""
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.9:2376")
    Path("study.yaml").write_text(DOCKER_STUDY)
    code, out, err = llem(capsys, "run", "study.yaml", "--dry-run")
    assert (code, out) == (0, ""), err
    assert len(preflight.calls) == 1


def test_remote_daemon_does_not_matter_to_local_runners(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.9:2376")
    Path("study.yaml").write_text(LOCAL_STUDY)
    assert llem(capsys, "run", "study.yaml", "--output", "out")[0] == 0


# -- `llem preflight` --------------------------------------------------------------------------


def test_preflight_checklist_of_a_failure(
    capsys: pytest.CaptureFixture[str], preflight: FakePreflight
) -> None:
    preflight.report = FAILED
    code, out, err = llem(capsys, "preflight")
    assert (code, err) == (1, "")
    # Each finding is stated once, in the numbered report: its check's line points there.
    assert out.splitlines()[:5] == [
        "✓ docker-cli: docker 28.2.2",
        "✗ nvidia-toolkit (see 1.)",
        "! host-driver (see Warnings)",
        "- cuda-compat[v/img:1]: tier 1 failed",
        "- gpu-in-container[v/img:1]: --llem-skip",
    ]
    assert out.endswith(FAILED.render() + "\n")
    assert out.count("NVIDIA Container Toolkit not found") == 1
    assert out.count("nvidia-smi not found") == 1


def test_the_checklist_points_each_failure_at_its_number(
    capsys: pytest.CaptureFixture[str], preflight: FakePreflight
) -> None:
    preflight.report = Report(
        checks=[
            CheckResult("docker-cli", 1, "failed", finding=finding("docker-cli", "no docker")),
            CheckResult("nvidia-toolkit", 1, "failed", finding=finding("nvidia-toolkit", "none")),
        ]
    )
    code, out, _ = llem(capsys, "preflight")
    assert code == 1
    lines = out.splitlines()
    assert lines[:2] == ["✗ docker-cli (see 1.)", "✗ nvidia-toolkit (see 2.)"]
    assert lines[3:] == [
        "  1. [docker-cli] no docker",
        "     Fix: Install it — https://x",
        "  2. [nvidia-toolkit] none",
        "     Fix: Install it — https://x",
    ]


def test_preflight_verbose(capsys: pytest.CaptureFixture[str], preflight: FakePreflight) -> None:
    preflight.report = WARNED
    code, out, _ = llem(capsys, "preflight", "-v")
    assert code == 0
    assert "! host-driver (see Warnings) (0.03s)\n    driver_version: 550\n" in out
    assert out.endswith(WARNED.render() + "\n")


def test_preflight_verbose_shows_a_shared_detail_once(
    capsys: pytest.CaptureFixture[str], preflight: FakePreflight
) -> None:
    gpus = [{"index": 0, "name": "NVIDIA H200"}]
    preflight.report = Report(
        checks=[
            CheckResult("clock-events", 3, "passed", reason="ok", details={"gpus": gpus}),
            CheckResult("gpu-idle", 3, "passed", reason="idle", details={"gpus": gpus}),
            CheckResult("mig-mode", 3, "passed", details={"gpus": [{"index": 1}]}),
        ]
    )
    code, out, _ = llem(capsys, "preflight", "-v")
    assert code == 0
    assert out.splitlines()[:6] == [
        "✓ clock-events: ok (0.00s)",
        "    gpus: [{'index': 0, 'name': 'NVIDIA H200'}]",
        "✓ gpu-idle: idle (0.00s)",
        "    gpus: as for clock-events",
        "✓ mig-mode (0.00s)",
        "    gpus: [{'index': 1}]",
    ]


def test_preflight_verbose_shows_the_gpu_listing_once(
    capsys: pytest.CaptureFixture[str], preflight: FakePreflight
) -> None:
    """host-driver lists the GPUs; the measurement checks list the same GPUs with their state:
    named, with only what they add."""
    gpu = {"index": 0, "name": "NVIDIA H200", "uuid": "GPU-0", "architecture": "Hopper"}
    state = {**gpu, "persistence_mode": "Enabled", "utilization_gpu": 0}
    preflight.report = Report(
        checks=[
            CheckResult("host-driver", 1, "passed", details={"gpus": [gpu]}),
            CheckResult("gpu-idle", 3, "passed", reason="idle", details={"gpus": [state]}),
            CheckResult("mig-mode", 3, "passed", details={"gpus": [state]}),
            CheckResult("other", 3, "passed", details={"gpus": [{"index": 1, "name": "A"}]}),
        ]
    )
    code, out, _ = llem(capsys, "preflight", "-v")
    assert code == 0
    assert out.splitlines()[:8] == [
        "✓ host-driver (0.00s)",
        "    gpus: [{'index': 0, 'name': 'NVIDIA H200', 'uuid': 'GPU-0', 'architecture': "
        "'Hopper'}]",
        "✓ gpu-idle: idle (0.00s)",
        "    gpus: as for host-driver, and GPU 0: persistence_mode='Enabled', utilization_gpu=0",
        "✓ mig-mode (0.00s)",
        "    gpus: as for gpu-idle",
        "✓ other (0.00s)",
        "    gpus: [{'index': 1, 'name': 'A'}]",  # (other GPUs: shown)
    ]
    assert out.count("NVIDIA H200") == 1


def test_preflight_passed(capsys: pytest.CaptureFixture[str], preflight: FakePreflight) -> None:
    code, out, _ = llem(capsys, "preflight", "--image", "a/b:1", "--json", "r.json")
    assert (code, out) == (0, "✓ docker-cli: docker 28.2.2\nDocker pre-flight passed: 1 checks\n")
    assert preflight.calls[0]["settings"].images == ("a/b:1",)
    assert json.loads(Path("r.json").read_text()) == PASSED.to_json()
    llem(capsys, "preflight")
    settings = preflight.calls[1]["settings"]
    assert settings.images_to_check == ("nvidia/cuda:12.0.0-base-ubuntu22.04",)
    assert (settings.timeout_s, settings.cache_s) == (30, 900)


def test_preflight_of_a_study(capsys: pytest.CaptureFixture[str], preflight: FakePreflight) -> None:
    Path("study.yaml").write_text(DOCKER_STUDY + "docker: {probe_timeout_s: 9}\n")
    assert llem(capsys, "preflight", "study.yaml")[0] == 0
    assert preflight.calls[0]["settings"].images == ("v/img:1",)
    assert preflight.calls[0]["settings"].timeout_s == 9
    llem(capsys, "preflight", "study.yaml", "--image", "o/x:1", "--timeout", "3", "--no-cache")
    settings = preflight.calls[1]["settings"]
    assert (settings.images, settings.timeout_s) == (("o/x:1",), 3)
    assert settings.no_cache is True


def test_checklist_without_unicode() -> None:
    import io

    from pytest_llem.cli import _print_checklist

    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="replace")
    _print_checklist(FAILED, verbose=False, out=out)
    out.seek(0)
    assert out.read().splitlines()[:2] == [
        "+ docker-cli: docker 28.2.2",
        "x nvidia-toolkit (see 1.)",
    ]


# -- failed experiments ------------------------------------------------------------------------


def run_local(
    capsys: pytest.CaptureFixture[str], experiments: str
) -> tuple[int, str, dict[str, Any]]:
    Path("study.yaml").write_text(f"name: s\nexperiments:\n{experiments}")
    code, _, err = llem(capsys, "run", "study.yaml", "--output", "out")
    return code, err, json.loads(Path("out/manifest.json").read_text())


def exp(mode: str, **extra: str) -> str:
    """One experiment line running w.py in ``mode``; ``extra``: more keys of it."""
    fields = "".join(f", {key}: {value}" for key, value in extra.items())
    return (
        "  - {model: gpt2, backend: pytorch, command: [python, w.py], "
        f"params: {{mode: {mode}}}{fields}}}\n"
    )


@pytest.mark.usefixtures("idle_gpu_host")
def test_a_failure_does_not_stop_the_others(capsys: pytest.CaptureFixture[str]) -> None:
    code, err, manifest = run_local(capsys, exp("fail") + exp("ok"))
    assert code == 1
    first, second = manifest["experiments"]
    assert first["status"] == "failed" and first["exit_status"] == 3
    assert first["cause"] == "unknown"
    assert first["message"] == "exit status 3: CUDA out of memory, giving up"
    assert second["status"] == "ok" and second["result"]["energy_j"] == 1.5
    lines = err.splitlines()
    assert lines[0].startswith("llem: [1/2] 001 gpt2 (pytorch, local) ... failed (")
    assert lines[1].startswith("llem: [2/2] 002 gpt2 (pytorch, local) ... ok (")
    assert lines[2] == f"llem: 1 of 2 experiment(s) ok; manifest: {Path.cwd()}/out/manifest.json"


def test_exit_0_without_a_result_is_a_failure(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, manifest = run_local(capsys, exp("no-result"))
    [record] = manifest["experiments"]
    assert code == 1
    assert (record["status"], record["exit_status"]) == ("failed", 0)
    assert record["message"] == "exited 0 without writing 001_result.json"


def test_the_error_file_explains_the_failure(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, manifest = run_local(capsys, exp("error-file", id="e1"))
    [record] = manifest["experiments"]
    assert code == 1
    assert record["message"] == "e1_error.json: model not found"


def test_a_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, manifest = run_local(
        capsys, "  - {model: gpt2, backend: pytorch, command: [no-such-llem-tool]}\n"
    )
    [record] = manifest["experiments"]
    assert code == 1
    assert record["exit_status"] == 127
    assert record["message"].startswith("command not found or not executable: no-such-llem-tool")


def test_local_run_contract(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    Path("sub").mkdir()
    Path("sub/w.py").write_text(WORKLOAD)
    Path("sub/study.yaml").write_text(
        "name: 'my study'\nexperiments:\n"
        "  - {model: gpt2, backend: pytorch, command: [python, w.py], params: {batch: 4}}\n"
    )
    code, _, err = llem(capsys, "run", "sub/study.yaml")
    assert code == 0, err
    [run_dir] = Path("llem-runs").iterdir()
    assert run_dir.name.startswith("my-study-") and run_dir.name.endswith("Z")
    config = json.loads((run_dir / "001_config.json").read_text())
    assert config["params"] == {"batch": 4}
    assert config["result_path"] == f"{run_dir.absolute()}/001_result.json"
    result = json.loads((run_dir / "001_result.json").read_text())
    assert result["cwd"] == str(tmp_path / "sub")  # the study file's directory
    assert "workload 001 in" in (run_dir / "001.log").read_text()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert set(manifest) == {"study", "host", "skipped_checks", "experiments"}
    # No nvidia-smi here: the measurement checks ran (no Docker check) and could judge nothing;
    # gpu-idle says why (no host-driver check does for local experiments).
    assert [(m["id"], m["outcome"]) for m in manifest["host"]["measurement"]] == [
        (cid, "warning" if cid == "gpu-idle" else "skipped")
        for cid in (
            "clock-events",
            "energy-counter",
            "gpu-health",
            "gpu-idle",
            "mig-mode",
            "persistence-mode",
            "power-limit",
        )
    ]
    assert "[gpu-idle] the GPUs to measure cannot be judged: nvidia-smi not found" in err
    assert manifest["skipped_checks"] == []
    assert {"id", "backend", "model", "runner", "image", "status", "exit_status", "duration_s",
            "result", "cause", "message"} <= set(manifest["experiments"][0])  # fmt: skip


def test_single_experiment_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = llem(
        capsys, "run", "--model", "gpt2", "--backend", "pytorch", "--output", "o",
        "--", "python", "w.py",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(Path("o/manifest.json").read_text())["study"] == "llem"


def test_stale_results_do_not_count(capsys: pytest.CaptureFixture[str]) -> None:
    Path("out").mkdir()
    Path("out/001_result.json").write_text("{}")
    code, _, manifest = run_local(capsys, exp("no-result"))
    assert code == 1
    assert manifest["experiments"][0]["message"] == "exited 0 without writing 001_result.json"


# -- interrupts --------------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupt_stops_the_workload_and_keeps_the_manifest(
    tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    (tmp_path / "study.yaml").write_text(f"name: s\nexperiments:\n{exp('sleep')}{exp('ok')}")
    proc = subprocess.Popen(
        with_default_sigint(
            [sys.executable, "-m", "pytest_llem", "run", "study.yaml", "--output", "out"]
        ),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pid_file = tmp_path / "out" / "001_result.json.pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    workload_pid = int(pid_file.read_text())
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == status, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == f"llem: stopped by {'SIGTERM' if status == 143 else 'Ctrl-C'}"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [e["status"] for e in manifest["experiments"]] == ["interrupted"]
    with pytest.raises(ProcessLookupError):
        os.kill(workload_pid, 0)


# -- the Python API ----------------------------------------------------------------------------


def test_run_experiment_returns_the_record_or_raises(tmp_path: Path) -> None:
    from pytest_llem.errors import LLEMError
    from pytest_llem.run.config import load_study
    from pytest_llem.run.study import run_experiment

    Path("study.yaml").write_text(f"name: s\nexperiments:\n{exp('ok')}{exp('fail', id='f')}")
    study = load_study("study.yaml")
    ok, failing = study.experiments
    record = run_experiment(study, ok, tmp_path)
    assert (record.id, record.status, record.result["energy_j"]) == ("001", "ok", 1.5)
    with pytest.raises(LLEMError, match="experiment f failed: exit status 3: CUDA out of memory"):
        run_experiment(study, failing, tmp_path)


def test_an_unusable_json_path_is_one_line_and_exit_2_before_any_check(
    capsys: pytest.CaptureFixture[str], preflight: FakePreflight
) -> None:
    Path("adir").mkdir()
    assert one_error(capsys, "preflight", "--json", "adir") == (
        "--json: cannot write adir: is a directory"
    )
    assert one_error(capsys, "preflight", "--json", "no/such/r.json").startswith(
        "--json: cannot write no/such/r.json: "
    )
    assert preflight.calls == []


def test_a_json_write_that_fails_after_the_run_exits_1_with_one_line(
    capsys: pytest.CaptureFixture[str], preflight: FakePreflight
) -> None:
    """A FIFO that nobody reads: opened without blocking, one line, not a hang."""
    os.mkfifo("r.fifo")
    code, out, err = llem(capsys, "preflight", "--json", "r.fifo")
    assert code == 1 and out.endswith("Docker pre-flight passed: 1 checks\n")
    assert (
        err == "llem: error: cannot write the JSON report to r.fifo: no process reads this FIFO\n"
    )
    assert Path("r.fifo").is_fifo()


def test_json_to_stdout_is_the_json_alone(
    capsys: pytest.CaptureFixture[str], preflight: FakePreflight
) -> None:
    code, out, err = llem(capsys, "preflight", "--json", "-")
    assert code == 0
    assert json.loads(out) == PASSED.to_json()
    assert err == "✓ docker-cli: docker 28.2.2\nDocker pre-flight passed: 1 checks\n"
    assert not Path("-").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--json", "r", "--junit", "r"],
         "--json and --junit name one file (r): one report would be lost; give each its own "
         "path"),
        (["--json", "r", "--junit", "./sub/../r"], "--json and --junit name one file (r and "),
        (["--json", "old", "--junit", "link"], "--json and --junit name one file (old and link)"),
        (["--json", "-", "--junit", "-"], "--json and --junit both name stdout (-): only one can"),
        (["--json", "stdout-link", "--junit", "-"], "--json and --junit both name stdout"),
        (["--json", "/dev/zero"], "--json: cannot write /dev/zero: is a character device (1:5)"),
        (["--json", "-", "--host", "gpu1", "--junit", "stdout-link"], "--json and --junit both"),
    ],
)  # fmt: skip
def test_two_reports_in_one_place_are_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str], preflight: FakePreflight, args: list[str], message: str
) -> None:
    Path("sub").mkdir()
    Path("old").write_text("")
    Path("link").symlink_to("old")
    # Where /dev/stdout points (a link of ours: were it ever replaced, /dev/stdout is not).
    Path("stdout-link").symlink_to("/proc/self/fd/1")
    assert one_error(capsys, "preflight", *args).startswith(message)
    assert preflight.calls == []
    assert Path("old").read_text() == "" and not Path("r").exists()


@pytest.mark.usefixtures("idle_gpu_host")
def test_a_study_from_a_pipe_is_read_once(tmp_path: Path) -> None:
    """`llem run /dev/stdin` (or `<(...)`): the bytes read are the bytes validated."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest_llem", "run", "/dev/stdin", "--dry-run"],
        input=LOCAL_STUDY,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "c"), "HOME": str(tmp_path)},
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert result.stderr.startswith("llem: dry run: 001 gpt2 (pytorch, local from default)")


def test_the_summary_shows_an_odd_run_directory_name_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Path("study.yaml").write_text(LOCAL_STUDY)
    code, _, err = llem(capsys, "run", "study.yaml", "--output", "out\x1b[2J")
    assert code == 0, err
    assert "\x1b" not in err and "manifest: " in err and "out\\x1b[2J" in err


# -- `llem preflight --host` -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "tcp://gpu1:2376"], "--host tcp://gpu1:2376: only ssh:// hosts"),
        (["--host=-oProxyCommand=evil"], "--host -oProxyCommand=evil: expected"),
        (["--remote-python", "/opt/py"], "--remote-python is for the hosts of --host or"),
        (["--ssh-config", "cfg"], "--ssh-config is for the hosts of --host or --hosts-file"),
        (["--host-timeout", "30"], "--host-timeout is for the hosts of --host or --hosts-file"),
        (["--host", "gpu1", "--host-timeout", "0"], "--host-timeout: should be greater than 0"),
        (["--host", "gpu1", "--host-timeout", "x"], "--host-timeout: expected a number of"),
        (["--host", "gpu1", "--ssh-config", "nowhere"], "--ssh-config nowhere: not a file"),
        (["--hosts-file", "nowhere"], "--hosts-file nowhere: cannot read (No such file"),
        (["--hosts-file", "empty"], "--hosts-file empty: no host in it"),
        (["--hosts-file", "two"], "two:1: one host per line, got 'gpu1 gpu2'"),
    ],
)
def test_bad_fleet_options(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    Path("empty").write_text("# nobody yet\n")
    Path("two").write_text("gpu1 gpu2\n")
    assert one_error(capsys, "preflight", *args).startswith(message)


def test_hosts_go_to_the_fleet_preflight(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_llem import preflight
    from pytest_llem.domain.fleet import FleetReport, unreachable
    from pytest_llem.domain.report import Report

    seen: list[list[str]] = []

    def fake(hosts: list[str], *, settings: object) -> FleetReport:
        seen.append(list(hosts))
        return FleetReport([("gpu1", Report()), ("gpu2", unreachable("cannot reach gpu2"))])

    monkeypatch.setattr(preflight, "run_fleet_preflight", fake)
    Path("hosts").write_text("gpu2\n")
    code, out, err = llem(
        capsys, "preflight", "--host", "gpu1", "--hosts-file", "hosts", "--json", "r.json"
    )
    assert (code, err) == (1, "")
    assert [s.split("//")[:2] for s in seen[0]] == [
        ["ssh=gpu1", "id=gpu1"],
        ["ssh=gpu2", "id=gpu2"],
    ]
    assert "python=python3" in seen[0][0]
    assert out.splitlines()[-1] == "Docker pre-flight: 1 of 2 hosts ready; failed: gpu2"
    # Each host once: its heading, its checks, its report.
    lines = out.splitlines()
    assert lines[:6] == [
        "Host gpu1:",
        "Docker pre-flight passed: 0 checks",
        "Host gpu2:",
        "  ✗ host-reachable (see 1.)",
        "Docker pre-flight failed: 1 issue(s) found",
        "  1. [host-reachable] cannot reach gpu2",
    ]
    assert [line for line in lines if line.startswith("Host ")] == ["Host gpu1:", "Host gpu2:"]
    data = json.loads(Path("r.json").read_text())
    assert [h["host"] for h in data["hosts"]] == ["gpu1", "gpu2"]
