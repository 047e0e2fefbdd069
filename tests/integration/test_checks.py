"""The built-in pre-flight checks end to end: `pytest --llem-preflight` against real engines."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from testbed import (
    DEFAULT_GPUS,
    Engine,
    GpuScenario,
    HookBehaviour,
    HostSmi,
    HostTools,
    ProductRunner,
)
from testbed.preflight import GPU_CAUSES, PreflightRun, run_preflight, without_durations
from testbed.scenario import ContainerSmi

IMAGE = "llem-test/base:1"
OTHER = "llem-test/other:1"
CUDA_128 = "llem-test/checks-cuda:12.8"
ABSENT = "llem-test/never-built:1"  # built nowhere; no registry can be reached from here
TIER1 = ["docker-cli", "docker-daemon", "host-driver", "nvidia-toolkit"]
# The measurement tier (3), in report order.
TIER3 = [
    "clock-events",
    "energy-counter",
    "gpu-health",
    "gpu-idle",
    "mig-mode",
    "persistence-mode",
    "power-limit",
]
CUDA_128_ENV = {
    "CUDA_VERSION": "12.8.1",
    "NVIDIA_REQUIRE_CUDA": "cuda>=12.8 brand=tesla,driver>=535,driver<536",
}


def tier2(*images: str) -> list[str]:
    return [f"cuda-compat[{i}]" for i in images] + [f"gpu-in-container[{i}]" for i in images]


@pytest.fixture(scope="module")
def images(gpu_engine: Engine, plain_engine: Engine) -> None:
    for engine in (gpu_engine, plain_engine):
        engine.build_image(IMAGE)
        engine.build_image(OTHER)
    gpu_engine.build_image(CUDA_128, env=CUDA_128_ENV)


@pytest.fixture(autouse=True)
def _healthy_engine(gpu_engine: Engine) -> Iterator[None]:
    """Every test starts and ends with the healthy scenario on the shared engine."""
    gpu_engine.set_scenario(GpuScenario())
    yield
    gpu_engine.set_scenario(GpuScenario())


def preflight(
    run_product: ProductRunner, host_tools: HostTools, *args: str, **kw: Any
) -> PreflightRun:
    return run_preflight(run_product, host_tools.work, *args, **kw)


# -- healthy ---------------------------------------------------------------------------------


def test_healthy_host_passes(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    run = preflight(run_product, host_tools, "--llem-image", IMAGE, "--llem-no-cache")
    assert run.returncode == 0, run.describe()
    assert run.outcomes == {cid: "passed" for cid in [*TIER1, *tier2(IMAGE), *TIER3]}
    report = run.report
    assert (report["schema"], report["status"]) == (1, "passed")
    assert (report["failures"], report["warnings"]) == ([], [])
    driver = run.check("host-driver")["details"]
    assert (driver["driver_version"], driver["cuda_version"]) == ("550.54.15", "12.4")
    assert [(g["index"], g["name"], g["uuid"], g["brand"]) for g in driver["gpus"]] == [
        (i, g.name, g.uuid, "Tesla") for i, g in enumerate(DEFAULT_GPUS)
    ]
    probe = run.check(f"gpu-in-container[{IMAGE}]")["details"]
    assert [g["uuid"] for g in probe["gpus"]] == [g.uuid for g in DEFAULT_GPUS]
    assert probe["driver_version"] == "550.54.15"
    host = report["host"]
    assert host["docker_server_version"] == gpu_engine.server_version
    assert (host["driver_version"], host["cuda_version"], host["remote_daemon"]) == (
        "550.54.15",
        "12.4",
        False,
    )
    assert [g["uuid"] for g in host["gpus"]] == [g.uuid for g in DEFAULT_GPUS]
    assert "Docker pre-flight failed" not in run.output and "Warnings:" not in run.output


# -- tier 1 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [(), ("-x", "--maxfail=1")], ids=["plain", "exitfirst"])
def test_docker_and_toolkit_missing(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    images: None,
    extra: tuple[str, ...],
) -> None:
    """Both tier-1 failures are reported together, even when -x / --maxfail asks to stop."""
    env, _ = host_tools.prepare("no_docker", gpu_engine)
    host_tools.use_toolkit([])
    since = time.time()
    run = preflight(run_product, host_tools, "--llem-image", IMAGE, *extra, env=env)
    assert run.returncode == 1, run.describe()
    assert run.failure_causes == [
        (1, "docker-cli", "docker_cli_missing"),
        (2, "nvidia-toolkit", "toolkit_missing"),
    ]
    assert run.outcomes == {
        "docker-cli": "failed",
        "docker-daemon": "not-run",
        "host-driver": "passed",
        "nvidia-toolkit": "failed",
        **{cid: "not-run" for cid in [*tier2(IMAGE), *TIER3]},
    }
    lines = run.lines
    header = lines.index("Docker pre-flight failed: 2 issue(s) found")
    assert lines[header + 1] == "  1. [docker-cli] Docker not found on PATH"
    assert lines[header + 2] == (
        "     Fix: Install Docker Engine — https://docs.docker.com/engine/install/"
    )
    assert lines[header + 3] == "  2. [nvidia-toolkit] NVIDIA Container Toolkit not found"
    assert lines[header + 4].startswith("     Fix: Install the NVIDIA Container Toolkit — https://")
    assert gpu_engine.created_since(since) == []


def test_daemon_down(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    env, _ = host_tools.prepare("daemon_down", gpu_engine)
    run = preflight(run_product, host_tools, "--llem-image", IMAGE, env=env)
    assert run.returncode == 1, run.describe()
    assert run.failure_causes == [(1, "docker-daemon", "daemon_unreachable")]
    assert run.failure("docker-daemon")["message"].startswith(
        f"Cannot reach the Docker daemon at {host_tools.dead_docker_host}"
    )
    assert run.outcomes == {
        "docker-cli": "passed",
        "docker-daemon": "failed",
        "host-driver": "passed",
        "nvidia-toolkit": "passed",
        **{cid: "not-run" for cid in [*tier2(IMAGE), *TIER3]},
    }
    assert "Docker pre-flight failed: 1 issue(s) found" in run.lines
    assert any(line.startswith("  1. [docker-daemon] Cannot reach") for line in run.lines)


def test_missing_host_nvidia_smi_only_warns(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    env, _ = host_tools.prepare("smi_missing", gpu_engine)
    run = preflight(run_product, host_tools, "--llem-image", IMAGE, env=env)
    assert run.returncode == 0, run.describe()
    assert run.report["status"] == "passed"  # the warning is listed, and never fails
    assert run.failures == []
    assert run.warning_causes == [("host-driver", "host_driver_unavailable")]
    assert run.outcomes == {
        **{cid: "passed" for cid in [*TIER1, *tier2(IMAGE)]},
        "host-driver": "warning",
        # Without the host's nvidia-smi -q the measurement tier has nothing to judge.
        **{cid: "skipped" for cid in TIER3},
    }
    lines = run.lines
    start = lines.index("Docker pre-flight passed with 1 warning(s)")
    assert lines[start + 1] == "Warnings:"
    assert lines[start + 2].startswith("  - [host-driver] nvidia-smi not found")
    assert lines[start + 3].startswith("    Fix: ")


@pytest.mark.parametrize(
    ("state", "cause", "details"),
    [
        ("driver_not_loaded", "driver_not_loaded", {}),
        ("nvml_mismatch", "nvml_driver_library_mismatch", {"nvml_library_version": "550.67"}),
        ("no_devices", "no_devices", {}),
    ],
)
def test_failing_host_nvidia_smi_only_warns(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    images: None,
    state: HostSmi,
    cause: str,
    details: dict[str, str],
) -> None:
    host_tools.use_nvidia_smi(state, nvml_library_version="550.67")
    run = preflight(run_product, host_tools, "--llem-image", IMAGE)
    assert run.returncode == 0, run.describe()
    assert (run.failures, run.warning_causes) == ([], [("host-driver", cause)])
    warning = run.warnings[0]
    assert details.items() <= warning["details"].items(), warning
    assert warning["message"] and warning["fix"], warning
    assert run.outcomes["host-driver"] == "warning"
    assert "Docker pre-flight passed with 1 warning(s)" in run.lines
    assert any(line.startswith("  - [host-driver] ") for line in run.lines)


# -- tier 2: the GPU probe -------------------------------------------------------------------


def test_engine_without_gpu_support(
    run_product: ProductRunner, host_tools: HostTools, plain_engine: Engine, images: None
) -> None:
    run = preflight(
        run_product, host_tools, "--llem-image", IMAGE, env=host_tools.env(plain_engine)
    )
    assert run.returncode == 1, run.describe()
    probe_id = f"gpu-in-container[{IMAGE}]"
    assert run.failure_causes == [(1, probe_id, "gpu_driver_not_configured")]
    assert run.outcomes == {
        **{cid: "passed" for cid in [*TIER1, *tier2(IMAGE)]},
        probe_id: "failed",
        **{cid: "not-run" for cid in TIER3},
    }
    assert run.failure(probe_id)["details"]["image"] == IMAGE
    assert "Docker pre-flight failed: 1 issue(s) found" in run.lines
    assert any(line.startswith(f"  1. [{probe_id}] ") for line in run.lines)


def test_container_sees_fewer_gpus_than_the_host(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    gpu_engine.set_scenario(GpuScenario(gpus=DEFAULT_GPUS[:1]))  # the host tools show two
    run = preflight(run_product, host_tools, "--llem-image", IMAGE)
    assert run.returncode == 1, run.describe()
    probe_id = f"gpu-in-container[{IMAGE}]"
    assert run.failure_causes == [(1, probe_id, "gpu_count_mismatch")]
    failure = run.failure(probe_id)
    assert "1 of the host's 2 GPU(s)" in failure["message"] and IMAGE in failure["message"]
    assert [g["uuid"] for g in failure["details"]["gpus"]] == [DEFAULT_GPUS[0].uuid]


@pytest.mark.parametrize(
    ("container_smi", "cause"),
    [("missing", "container_command_not_found"), ("nvml_unknown", "nvml_unknown_error_cgroups")],
)
def test_nvidia_smi_failing_inside_the_container(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    images: None,
    container_smi: ContainerSmi,
    cause: str,
) -> None:
    gpu_engine.set_scenario(GpuScenario(container_smi=container_smi))
    run = preflight(run_product, host_tools, "--llem-image", IMAGE)
    assert run.returncode == 1, run.describe()
    probe_id = f"gpu-in-container[{IMAGE}]"
    assert run.failure_causes == [(1, probe_id, cause)]
    assert run.failure(probe_id)["details"]["image"] == IMAGE


# Real texts of the NVIDIA hook failing (the engine wraps them as it does on real hosts).
HOOK_FAILURES = {
    "cgroup_device_setup_failed": (
        "nvidia-container-cli: container error: cgroup subsystem devices not found"
    ),
    "nvml_driver_library_mismatch": (
        "Auto-detected mode as 'legacy'\n"
        "nvidia-container-cli: initialization error: nvml error: driver/library version mismatch"
    ),
    "driver_not_loaded": (
        "nvidia-container-cli: initialization error: nvml error: driver not loaded"
    ),
    "no_devices": (
        "nvidia-container-cli: initialization error: cuda error: no cuda-capable device is detected"
    ),
    "toolkit_hook_missing": (
        "couldn't find binary nvidia-container-cli in /usr/local/sbin:/usr/local/bin:/usr/sbin:"
        '/usr/bin:/sbin:/bin : exec: "nvidia-container-cli": executable file not found in $PATH'
    ),
    "cdi_injection_failed": (
        "CDI device injection failed: unresolvable CDI devices nvidia.com/gpu=all"
    ),
}


@pytest.mark.parametrize("cause", sorted(HOOK_FAILURES))
def test_failing_hook_is_diagnosed(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    images: None,
    cause: str,
) -> None:
    gpu_engine.set_scenario(
        GpuScenario(hook=HookBehaviour(mode="fail", message=HOOK_FAILURES[cause]))
    )
    run = preflight(run_product, host_tools, "--llem-image", IMAGE)
    assert run.returncode == 1, run.describe()
    probe_id = f"gpu-in-container[{IMAGE}]"
    assert run.failure_causes == [(1, probe_id, cause)]
    failure = run.failure(probe_id)
    assert failure["message"].startswith(f"GPU probe of {IMAGE} failed: ")
    assert failure["fix"], failure


def test_absent_image_is_a_pull_failure_not_a_gpu_failure(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    since = time.time()
    run = preflight(run_product, host_tools, "--llem-image", ABSENT, timeout=180)
    assert run.returncode == 1, run.describe()
    [(number, check_id, cause)] = run.failure_causes
    assert (number, check_id) == (1, f"gpu-in-container[{ABSENT}]")
    assert cause in ("registry_unreachable", "image_not_found")
    assert not {f["cause"] for f in run.failures + run.warnings} & GPU_CAUSES
    assert run.outcomes[f"cuda-compat[{ABSENT}]"] == "not-run"
    assert run.failure(check_id)["details"]["image"] == ABSENT
    assert gpu_engine.created_since(since) == []
    assert gpu_engine.hook_calls(since) == []


def test_several_images_are_each_checked(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    since = time.time()
    run = preflight(
        run_product,
        host_tools,
        "--llem-image",
        IMAGE,
        "--llem-image",
        CUDA_128,
        "--llem-image",
        OTHER,
    )
    assert run.returncode == 1, run.describe()
    assert run.outcomes == {
        **{cid: "passed" for cid in TIER1},
        f"cuda-compat[{IMAGE}]": "passed",
        f"cuda-compat[{CUDA_128}]": "failed",
        f"cuda-compat[{OTHER}]": "passed",
        f"gpu-in-container[{IMAGE}]": "passed",
        f"gpu-in-container[{CUDA_128}]": "not-run",
        f"gpu-in-container[{OTHER}]": "passed",
        **{cid: "not-run" for cid in TIER3},
    }
    assert run.failure_causes == [(1, f"cuda-compat[{CUDA_128}]", "cuda_requirement_unsatisfied")]
    assert any(line.startswith(f"  1. [cuda-compat[{CUDA_128}]] ") for line in run.lines)
    for image in (IMAGE, OTHER):
        assert run.check(f"gpu-in-container[{image}]")["details"]["image"] == image
    # One probe per image that passed cuda-compat, none of the image that failed it.
    calls = gpu_engine.hook_calls(since)
    assert len(calls) == 2
    assert all("CUDA_VERSION" not in call["env"] for call in calls)


def test_remote_daemon(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    env, _ = host_tools.prepare("remote", gpu_engine)
    since = time.time()
    run = preflight(
        run_product, host_tools, "--llem-image", IMAGE, "--llem-image", CUDA_128, env=env
    )
    assert run.returncode == 1, run.describe()
    assert run.outcomes == {
        "docker-cli": "passed",
        "docker-daemon": "passed",
        "host-driver": "skipped",
        "nvidia-toolkit": "skipped",
        f"cuda-compat[{IMAGE}]": "passed",
        f"cuda-compat[{CUDA_128}]": "failed",
        f"gpu-in-container[{IMAGE}]": "passed",
        f"gpu-in-container[{CUDA_128}]": "not-run",
        **{cid: "not-run" for cid in TIER3},
    }
    for check_id in ("host-driver", "nvidia-toolkit"):
        assert "remote daemon" in run.check(check_id)["reason"], run.check(check_id)
    assert run.warnings == []
    assert run.report["host"]["remote_daemon"] is True
    # No host driver is known: cuda-compat is judged by the image's probe, and names its driver.
    assert run.check(f"cuda-compat[{IMAGE}]")["details"]["driver_version"] == "550.54.15"
    assert run.failure_causes == [(1, f"cuda-compat[{CUDA_128}]", "cuda_requirement_unsatisfied")]
    details = run.failure(f"cuda-compat[{CUDA_128}]")["details"]
    assert (details["driver_version"], details["required_cuda"]) == ("550.54.15", "12.8")
    assert details["min_driver"].startswith("570.")
    # On a remote daemon each image's own probe is the evidence: the NVIDIA hook there refused
    # the probe of CUDA_128, and one container of it with the check off read the driver.
    probed = sorted(
        (call["env"].get("CUDA_VERSION", ""), call["env"].get("NVIDIA_DISABLE_REQUIRE", ""))
        for call in gpu_engine.hook_calls(since)
    )
    assert probed == [("", ""), ("12.8.1", ""), ("12.8.1", "1")], probed


# -- report formats and modes ----------------------------------------------------------------


def test_junit_xml_carries_the_causes(
    run_product: ProductRunner, host_tools: HostTools, plain_engine: Engine, images: None
) -> None:
    host_tools.use_nvidia_smi("missing")
    run = preflight(
        run_product,
        host_tools,
        "--llem-image",
        IMAGE,
        "--junitxml",
        "j.xml",
        env=host_tools.env(plain_engine),
    )
    assert run.returncode == 1, run.describe()
    cases = ET.parse(host_tools.work / "j.xml").getroot().iter("testcase")
    props = {
        case.get("name", ""): (
            {p.get("name"): p.get("value") for p in case.iter("property")},
            case.find("failure") is not None,
        )
        for case in cases
    }
    probe = next(name for name in props if name.startswith("check_gpu_in_container"))
    assert props[probe] == (
        {"llem_cause": "gpu_driver_not_configured", "llem_outcome": "failed"},
        True,
    )
    assert props["check_host_driver"] == (
        {"llem_cause": "host_driver_unavailable", "llem_outcome": "warning"},
        False,
    )
    assert props["check_docker_cli"] == ({"llem_outcome": "passed"}, False)
    assert sum(failed for _, failed in props.values()) == 1


@pytest.mark.parametrize("case", ["healthy", "tier1_failure", "tier2_failure"])
def test_xdist_gives_the_same_findings(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    plain_engine: Engine,
    images: None,
    case: str,
) -> None:
    if case == "tier1_failure":
        env, _ = host_tools.prepare("daemon_down", gpu_engine)
    else:
        env = host_tools.env(plain_engine if case == "tier2_failure" else gpu_engine)
    args = ("--llem-image", IMAGE, "--llem-image", OTHER, "--llem-no-cache")
    plain = preflight(run_product, host_tools, *args, env=env)
    failed = {
        "healthy": [],
        "tier1_failure": ["docker-daemon"],
        "tier2_failure": tier2(IMAGE, OTHER)[2:],
    }
    assert [f["id"] for f in plain.failures] == failed[case], plain.describe()
    distributed = preflight(run_product, host_tools, *args, "-n", "2", env=env)
    assert distributed.returncode == plain.returncode == (0 if case == "healthy" else 1)
    for key in ("status", "failures", "warnings", "checks", "host"):
        assert without_durations(distributed.report[key]) == without_durations(plain.report[key]), (
            key
        )
    assert len(plain.report["checks"]) == len(TIER1) + 4 + len(TIER3)
