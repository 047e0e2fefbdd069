"""cuda-compat on a remote daemon (tcp://127.0.0.1 to a test-bed engine): the image's own probe.

No driver of that daemon's host can be asked from here; its NVIDIA hook enforces the image's
NVIDIA_REQUIRE_* when a container starts. So a probe that started and listed GPUs proves the
requirement, and one that the hook refused for it disproves it: the failure then names the
image's CUDA and the driver that a container of the image saw with the check turned off.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from testbed import Engine, HookBehaviour, HostTools, ProductRunner, ScenarioSetter
from testbed.preflight import PreflightRun, run_preflight

CUDA_120 = "llem-test/remote-cuda:12.0.1"
CUDA_120_ENV = {
    "CUDA_VERSION": "12.0.1",
    "NVIDIA_REQUIRE_CUDA": (
        "cuda>=12.0 brand=tesla,driver>=450,driver<451 brand=tesla,driver>=470,driver<471"
    ),
}
CUDA_128 = "llem-test/remote-cuda:12.8.1"
CUDA_128_ENV = {
    "CUDA_VERSION": "12.8.1",
    "NVIDIA_REQUIRE_CUDA": (
        "cuda>=12.8 brand=unknown,driver>=470,driver<471 brand=tesla,driver>=535,driver<536"
    ),
}
# The test bed's healthy GPU host: driver 550.54.15, which supports CUDA 12.4.
DRIVER, DRIVER_CUDA = "550.54.15", "12.4"
DRIVER_NOT_LOADED = "nvidia-container-cli: initialization error: nvml error: driver not loaded"


@pytest.fixture(scope="module")
def images(gpu_engine: Engine) -> None:
    gpu_engine.build_image(CUDA_120, env=CUDA_120_ENV)
    gpu_engine.build_image(CUDA_128, env=CUDA_128_ENV)


def remote_preflight(
    run_product: ProductRunner, host_tools: HostTools, engine: Engine, *images: str
) -> PreflightRun:
    """The pre-flight from a machine without GPU tools, against the engine over tcp://."""
    env, _ = host_tools.prepare("remote", engine)
    args = [arg for image in images for arg in ("--llem-image", image)]
    return run_preflight(run_product, host_tools.work, *args, env=env)


def hook_calls(engine: Engine, since: float) -> list[tuple[str, str]]:
    """(CUDA_VERSION, NVIDIA_DISABLE_REQUIRE) of each container the NVIDIA hook saw since then."""
    return sorted(
        (call["env"].get("CUDA_VERSION", ""), call["env"].get("NVIDIA_DISABLE_REQUIRE", ""))
        for call in engine.hook_calls(since)
    )


def test_a_requirement_the_remote_driver_meets_passes_without_a_warning(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    since = time.time()
    run = remote_preflight(run_product, host_tools, gpu_engine, CUDA_120)
    assert run.returncode == 0, run.describe()
    assert run.warnings == [] and run.failures == [], run.describe()
    compat = run.check(f"cuda-compat[{CUDA_120}]")
    assert compat["outcome"] == "passed"
    assert run.outcomes[f"gpu-in-container[{CUDA_120}]"] == "passed"
    details: dict[str, Any] = compat["details"]
    assert (details["driver_version"], details["cuda_version"], details["required_cuda"]) == (
        DRIVER,
        DRIVER_CUDA,
        "12.0",
    )
    assert details["driver_source"] == "driver seen inside a container"
    # One container: the probe, with the image's requirement checked by the hook.
    assert hook_calls(gpu_engine, since) == [("12.0.1", "")]
    assert not any("Warnings:" in line for line in run.lines), run.describe()


def test_a_requirement_the_remote_driver_misses_names_both_versions(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    since = time.time()
    run = remote_preflight(run_product, host_tools, gpu_engine, CUDA_128)
    assert run.returncode == 1, run.describe()
    compat, probe = f"cuda-compat[{CUDA_128}]", f"gpu-in-container[{CUDA_128}]"
    # One numbered failure: the probe's check does not repeat it.
    assert run.failure_causes == [(1, compat, "cuda_requirement_unsatisfied")], run.describe()
    assert (run.outcomes[compat], run.outcomes[probe]) == ("failed", "not-run")
    assert run.warnings == []
    failure = run.failure(compat)
    details = failure["details"]
    assert (details["required_cuda"], details["driver_version"], details["cuda_version"]) == (
        "12.8",
        DRIVER,
        DRIVER_CUDA,
    )
    assert details["min_driver"].startswith("570."), details
    message = failure["message"]
    assert "CUDA 12.8" in message and DRIVER in message and f"CUDA {DRIVER_CUDA}" in message
    assert "570." in failure["fix"], failure["fix"]
    assert any(line.startswith(f"  1. [{compat}] ") and "12.8" in line for line in run.lines)
    # The probe, refused by the hook; then one container with the check off read the driver.
    assert hook_calls(gpu_engine, since) == [("12.8.1", ""), ("12.8.1", "1")]


def test_a_probe_that_fails_otherwise_leaves_the_requirement_unjudged(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    scenario: ScenarioSetter,
    images: None,
) -> None:
    """The hook failed before it checked the requirement: gpu-in-container reports why, and
    cuda-compat is not run (no warning that blames this machine's driver)."""
    scenario(hook=HookBehaviour(mode="fail", message=DRIVER_NOT_LOADED))
    run = remote_preflight(run_product, host_tools, gpu_engine, CUDA_120)
    assert run.returncode == 1, run.describe()
    probe = f"gpu-in-container[{CUDA_120}]"
    assert run.failure_causes == [(1, probe, "driver_not_loaded")], run.describe()
    assert run.outcomes[f"cuda-compat[{CUDA_120}]"] == "not-run"
    assert probe in run.check(f"cuda-compat[{CUDA_120}]")["reason"]
    assert run.warnings == []
