"""Running `pytest --llem-preflight` as a subprocess and reading what it reports.

A helper of the end-to-end checks' tests, separate from the rest of the test bed: it knows the
product only through its command line, its JSON report (DESIGN §5) and its terminal output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .host import ProductRunner, popen_in_session

JSON_NAME = "r.json"
# Plugins of the outer environment stay on (a user's `pytest --llem-preflight` has them too);
# the cache provider is off so that nothing is written into the project directory.
BASE_ARGS = ("--llem-preflight", "-p", "no:cacheprovider")
# The cause vocabulary (DESIGN §3, with the measurement causes of §9).
CAUSES = frozenset(
    {
        "docker_cli_missing",
        "daemon_unreachable",
        "daemon_permission_denied",
        "toolkit_missing",
        "toolkit_hook_missing",
        "host_driver_unavailable",
        "gpu_driver_not_configured",
        "nvidia_runtime_unknown",
        "cdi_injection_failed",
        "cgroup_device_setup_failed",
        "nvml_driver_library_mismatch",
        "driver_not_loaded",
        "cuda_requirement_unsatisfied",
        "nvml_unknown_error_cgroups",
        "no_devices",
        "image_not_found",
        "registry_unreachable",
        "container_command_not_found",
        "container_name_conflict",
        "probe_timeout",
        "gpu_count_mismatch",
        "unsafe_run_file",
        "experiment_timeout",
        "check_error",
        "gpu_busy",
        "persistence_mode_off",
        "mig_enabled",
        "gpu_throttled",
        "energy_counter_unsupported",
        "power_limit_changed",
        "gpu_hardware_fault",
        "driver_reloaded",
        "host_unreachable",
        "podman_cli_missing",
        "cdi_spec_missing",
        "cdi_spec_stale",
        "unknown",
        "ok",
    }
)
# Causes that name a GPU, driver or toolkit problem (a pull failure must never be one of them).
GPU_CAUSES = frozenset(
    {
        "gpu_driver_not_configured",
        "nvidia_runtime_unknown",
        "toolkit_hook_missing",
        "cdi_injection_failed",
        "cgroup_device_setup_failed",
        "nvml_driver_library_mismatch",
        "driver_not_loaded",
        "nvml_unknown_error_cgroups",
        "no_devices",
        "gpu_count_mismatch",
        "cuda_requirement_unsatisfied",
        "container_command_not_found",
    }
)


@dataclass(frozen=True)
class PreflightRun:
    """One finished pre-flight: its process, JSON report and wall-clock time."""

    proc: subprocess.CompletedProcess[str]
    report: dict[str, Any]
    elapsed_s: float

    @property
    def returncode(self) -> int:
        return self.proc.returncode

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr

    @property
    def lines(self) -> list[str]:
        return self.proc.stdout.splitlines()

    @property
    def outcomes(self) -> dict[str, str]:
        """Check id → outcome, in report order."""
        return {c["id"]: c["outcome"] for c in self.report["checks"]}

    def check(self, check_id: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [c for c in self.report["checks"] if c["id"] == check_id]
        [check] = found
        return check

    @property
    def failures(self) -> list[dict[str, Any]]:
        return list(self.report["failures"])

    @property
    def warnings(self) -> list[dict[str, Any]]:
        return list(self.report["warnings"])

    @property
    def failure_causes(self) -> list[tuple[int, str, str]]:
        """(number, check id, cause) of each failure."""
        return [(f["number"], f["id"], f["cause"]) for f in self.failures]

    @property
    def warning_causes(self) -> list[tuple[str, str]]:
        return [(w["id"], w["cause"]) for w in self.warnings]

    def failure(self, check_id: str) -> dict[str, Any]:
        [found] = [f for f in self.failures if f["id"] == check_id]
        return found

    def describe(self) -> str:
        """What to show when an assertion about this run fails."""
        return (
            f"exit {self.returncode} after {self.elapsed_s:.1f}s\n--- stdout\n"
            f"{self.proc.stdout[-6000:]}\n--- stderr\n{self.proc.stderr[-3000:]}"
        )


def preflight_args(*args: str, json_name: str = JSON_NAME) -> list[str]:
    return ["pytest", *BASE_ARGS, "--llem-json", json_name, *args]


def run_preflight(
    run_product: ProductRunner,
    work: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    user: bool = False,
    timeout: float = 120,
    json_name: str = JSON_NAME,
) -> PreflightRun:
    """`pytest --llem-preflight --llem-json JSON ARGS...` in `work`; the report must exist."""
    report_path = work / json_name
    report_path.unlink(missing_ok=True)
    start = time.monotonic()
    proc = run_product(preflight_args(*args, json_name=json_name), env, timeout, user=user)
    elapsed = time.monotonic() - start
    assert report_path.is_file(), (
        f"no JSON report written (exit {proc.returncode})\n{proc.stdout[-4000:]}\n{proc.stderr}"
    )
    return PreflightRun(proc, json.loads(report_path.read_text()), elapsed)


def without_durations(value: Any) -> Any:
    """A JSON value with every `duration_s` key dropped (they differ from run to run)."""
    if isinstance(value, dict):
        return {k: without_durations(v) for k, v in value.items() if k != "duration_s"}
    if isinstance(value, list):
        return [without_durations(v) for v in value]
    return value


def preflight_command(*args: str, json_name: str = JSON_NAME) -> list[str]:
    """The command line that `run_product(preflight_args(*args))` runs, for `started()`."""
    return [sys.executable, "-m", *preflight_args(*args, json_name=json_name)]


def with_default_sigint(cmd: Sequence[str]) -> list[str]:
    """`cmd` with Ctrl-C back to its default: a shell's background job (CI, `cmd &`) starts
    with SIGINT ignored, and an ignored SIGINT stays ignored across exec."""
    reset = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", reset, *cmd]


@contextmanager
def started(
    cmd: Sequence[str], env: Mapping[str, str], cwd: Path
) -> Iterator[subprocess.Popen[str]]:
    """`cmd` started in a session of its own, output captured; killed with its session on exit."""
    proc = popen_in_session(with_default_sigint(cmd), env, cwd)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
