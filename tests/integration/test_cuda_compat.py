"""cuda-compat end to end: an image's CUDA requirement judged before any container of it starts."""

from __future__ import annotations

import time
from typing import Any

import pytest
from testbed import Engine, HostTools, ProductRunner, ScenarioSetter
from testbed.preflight import PreflightRun, run_preflight

CUDA_124 = "llem-test/cuda:12.4.1"
CUDA_124_ENV = {
    "CUDA_VERSION": "12.4.1",
    "NVIDIA_REQUIRE_CUDA": (
        "cuda>=12.4 brand=tesla,driver>=470,driver<471 brand=tesla,driver>=535,driver<536"
    ),
}
NO_REQUIRE = "llem-test/cuda:12.4.1-norequire"
CUDA_128 = "llem-test/cuda:12.8.1"
CUDA_128_ENV = {
    "CUDA_VERSION": "12.8.1",
    "NVIDIA_REQUIRE_CUDA": (
        "cuda>=12.8 brand=unknown,driver>=470,driver<471 brand=grid,driver>=470,driver<471"
        " brand=tesla,driver>=535,driver<536 brand=unknown,driver>=535,driver<536"
    ),
}
LEGACY = "llem-test/cuda:12.6.3-legacy"  # CUDA_VERSION only: held to cuda>=12.6
# NVIDIA_REQUIRE_ARCH compares the GPUs' compute capability (the test bed's H100s: 9.0).
ARCH_8 = "llem-test/arch:8.0"
ARCH_10 = "llem-test/arch:10.0"

# A data-centre host whose driver supports CUDA 12.3: too old for 12.4, and not on the 535 branch.
DRIVER_545 = {"driver_version": "545.23.08", "cuda_version": "12.3", "brand": "tesla"}
DRIVER_535 = {"driver_version": "535.104.05", "cuda_version": "12.2"}
DETAIL_KEYS = {"image", "required_cuda", "driver_version", "cuda_version", "min_driver"}


@pytest.fixture(scope="module")
def images(gpu_engine: Engine) -> None:
    gpu_engine.build_image(CUDA_124, env=CUDA_124_ENV)
    gpu_engine.build_image(NO_REQUIRE, env={**CUDA_124_ENV, "NVIDIA_DISABLE_REQUIRE": "true"})
    gpu_engine.build_image(CUDA_128, env=CUDA_128_ENV)
    gpu_engine.build_image(LEGACY, env={"CUDA_VERSION": "12.6.3"})
    gpu_engine.build_image(ARCH_8, env={"NVIDIA_REQUIRE_ARCH": "arch>=8.0"})
    gpu_engine.build_image(ARCH_10, env={"NVIDIA_REQUIRE_ARCH": "arch>=10.0"})


def image_env_calls(engine: Engine, since: float, cuda_version: str) -> list[dict[str, str]]:
    """The environments of the hook calls, since `since`, for containers of that CUDA_VERSION."""
    return [
        call["env"]
        for call in engine.hook_calls(since)
        if call["env"].get("CUDA_VERSION") == cuda_version
    ]


def preflight(
    run_product: ProductRunner, host_tools: HostTools, *images: str, **kw: Any
) -> PreflightRun:
    args = [arg for image in images for arg in ("--llem-image", image)]
    return run_preflight(run_product, host_tools.work, *args, **kw)


def assert_compat_failure(run: PreflightRun, image: str) -> dict[str, Any]:
    """The run failed on cuda-compat[image] alone, its probe not run; the failure's details."""
    assert run.returncode == 1, run.describe()
    compat, probe = f"cuda-compat[{image}]", f"gpu-in-container[{image}]"
    assert run.failure_causes == [(1, compat, "cuda_requirement_unsatisfied")]
    assert (run.outcomes[compat], run.outcomes[probe]) == ("failed", "not-run")
    assert "Docker pre-flight failed: 1 issue(s) found" in run.lines
    assert any(line.startswith(f"  1. [{compat}] ") for line in run.lines), run.describe()
    failure = run.failure(compat)
    assert set(failure["details"]) >= DETAIL_KEYS, failure
    assert failure["details"]["image"] == image
    return failure


def test_cuda_12_4_image_fails_on_driver_545_before_any_container(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    scenario: ScenarioSetter,
    images: None,
) -> None:
    scenario(**DRIVER_545)
    since = time.time()
    run = preflight(run_product, host_tools, CUDA_124)
    failure = assert_compat_failure(run, CUDA_124)
    details = failure["details"]
    assert (details["required_cuda"], details["driver_version"], details["cuda_version"]) == (
        "12.4",
        "545.23.08",
        "12.3",
    )
    assert details["min_driver"].startswith("550.54."), details
    assert "12.4" in failure["message"] and "545.23.08" in failure["message"]
    assert "550.54." in failure["fix"], failure["fix"]
    # The verdict came before any container of the image: the engine saw none at all.
    assert gpu_engine.created_since(since) == []
    assert image_env_calls(gpu_engine, since, "12.4.1") == []
    fix_line = next(line for line in run.lines if line.startswith("     Fix: "))
    assert "550.54." in fix_line


@pytest.mark.parametrize(("brand", "passes"), [("tesla", True), ("geforce", False)])
def test_brand_exemption_for_the_535_branch(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    scenario: ScenarioSetter,
    images: None,
    brand: str,
    passes: bool,
) -> None:
    scenario(brand=brand, **DRIVER_535)
    since = time.time()
    run = preflight(run_product, host_tools, CUDA_124)
    if passes:
        assert run.returncode == 0, run.describe()
        assert set(run.outcomes.values()) == {"passed"}, run.outcomes
        details = run.check(f"cuda-compat[{CUDA_124}]")["details"]
        assert (details["driver_version"], details["required_cuda"]) == ("535.104.05", "12.4")
        # The engine's own hook agrees: the probe of the image ran.
        assert len(image_env_calls(gpu_engine, since, "12.4.1")) == 1
    else:
        failure = assert_compat_failure(run, CUDA_124)
        assert failure["details"]["driver_version"] == "535.104.05"
        assert "12.4" in failure["message"] and "535.104.05" in failure["message"]
        assert gpu_engine.created_since(since) == []


def test_disable_require_passes(
    run_product: ProductRunner,
    host_tools: HostTools,
    scenario: ScenarioSetter,
    images: None,
) -> None:
    scenario(**DRIVER_545)
    run = preflight(run_product, host_tools, NO_REQUIRE)
    assert run.returncode == 0, run.describe()
    assert run.outcomes[f"cuda-compat[{NO_REQUIRE}]"] == "passed"
    assert run.outcomes[f"gpu-in-container[{NO_REQUIRE}]"] == "passed"
    assert run.failures == []


def test_cuda_12_8_image_on_driver_550_names_a_570_driver(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    since = time.time()
    run = preflight(run_product, host_tools, CUDA_128)  # the healthy host: 550.54.15, CUDA 12.4
    failure = assert_compat_failure(run, CUDA_128)
    details = failure["details"]
    assert (details["required_cuda"], details["driver_version"], details["cuda_version"]) == (
        "12.8",
        "550.54.15",
        "12.4",
    )
    assert details["min_driver"].startswith("570."), details
    assert "12.8" in failure["message"] and "550.54.15" in failure["message"]
    assert "570." in failure["fix"], failure["fix"]
    assert gpu_engine.created_since(since) == []


def test_legacy_image_is_held_to_its_cuda_version(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    since = time.time()
    run = preflight(run_product, host_tools, LEGACY)
    failure = assert_compat_failure(run, LEGACY)
    assert failure["details"]["required_cuda"] == "12.6"
    assert failure["details"]["min_driver"].startswith("560."), failure
    assert gpu_engine.created_since(since) == []


def test_only_the_failing_image_is_held_back(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    scenario: ScenarioSetter,
    images: None,
) -> None:
    scenario(**DRIVER_545)
    since = time.time()
    run = preflight(run_product, host_tools, CUDA_124, NO_REQUIRE)
    assert run.returncode == 1, run.describe()
    assert run.failure_causes == [(1, f"cuda-compat[{CUDA_124}]", "cuda_requirement_unsatisfied")]
    assert run.outcomes == {
        "docker-cli": "passed",
        "docker-daemon": "passed",
        "host-driver": "passed",
        "nvidia-toolkit": "passed",
        f"cuda-compat[{CUDA_124}]": "failed",
        f"cuda-compat[{NO_REQUIRE}]": "passed",
        f"gpu-in-container[{CUDA_124}]": "not-run",
        f"gpu-in-container[{NO_REQUIRE}]": "passed",
        **{
            cid: "not-run"  # the measurement tier waits for tier 2
            for cid in (
                "clock-events",
                "energy-counter",
                "gpu-health",
                "gpu-idle",
                "mig-mode",
                "persistence-mode",
                "power-limit",
            )
        },
    }
    # One container: the probe of the image that passed; none of the one that failed.
    assert len(gpu_engine.created_since(since)) == 1
    [probed] = [call["env"] for call in gpu_engine.hook_calls(since)]
    assert probed.get("NVIDIA_DISABLE_REQUIRE") == "true"


def test_arch_requirement_is_judged_like_the_hook(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    """Compute capability 9.0 meets arch>=8.0 and not arch>=10.0, as the NVIDIA hook decides."""
    since = time.time()
    run = preflight(run_product, host_tools, ARCH_8, ARCH_10)
    assert run.returncode == 1, run.describe()
    assert run.failure_causes == [(1, f"cuda-compat[{ARCH_10}]", "cuda_requirement_unsatisfied")]
    assert run.outcomes[f"cuda-compat[{ARCH_8}]"] == "passed"
    assert run.outcomes[f"gpu-in-container[{ARCH_8}]"] == "passed"
    assert run.outcomes[f"gpu-in-container[{ARCH_10}]"] == "not-run"
    message = run.failure(f"cuda-compat[{ARCH_10}]")["message"]
    assert "arch>=10.0" in message and "CUDA ?" not in message, message
    assert len(gpu_engine.created_since(since)) == 1  # the probe of ARCH_8 alone
