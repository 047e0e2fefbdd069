"""Docker and CDI on the test bed's engine (dockerd 20.10, which has no CDI): `gpu_request:
cdi` fails before any container starts, naming CDI and the engine; `auto` keeps `--gpus`; the
CDI request itself, made anyway, meets the real refusals of the 20.10 and 28.2 CLIs."""

from __future__ import annotations

import time

from testbed import DOCKER_CLIS, Engine, HostTools, ProductRunner
from testbed.preflight import run_preflight

IMAGE = "llem-test/cdi:1"


def study(host_tools: HostTools, docker: str = "") -> None:
    (host_tools.work / "study.yaml").write_text(
        f"name: cdi\nrunners: {{vllm: 'docker:{IMAGE}'}}\n{docker}"
        "experiments:\n  - {model: m, backend: vllm}\n"
    )


def test_gpu_request_cdi_on_docker_20_10_fails_naming_cdi(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine
) -> None:
    gpu_engine.build_image(IMAGE)
    study(host_tools, "docker: {gpu_request: cdi}\n")
    since = time.time()
    run = run_preflight(run_product, host_tools.work, "--llem-config", "study.yaml")
    assert run.returncode == 1, run.describe()
    assert run.failure_causes == [(1, "cdi-spec", "cdi_injection_failed")]
    found = run.failure("cdi-spec")
    assert f"Docker {gpu_engine.server_version} has no CDI support" in found["message"]
    assert "nvidia.com/gpu=all" in found["message"]
    assert '"features": {"cdi": true}' in found["fix"]
    assert run.outcomes[f"gpu-in-container[{IMAGE}]"] == "not-run"
    assert gpu_engine.created_since(since) == []  # no probe, no pull: tier 1 failed

    ran = run_product(["llem", "run", "study.yaml", "--output", "out"])
    assert ran.returncode == 1
    assert "[cdi-spec]" in ran.stderr and "CDI" in ran.stderr
    assert not (host_tools.work / "out" / "manifest.json").exists()


def test_auto_keeps_gpus_on_an_engine_without_cdi(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine
) -> None:
    gpu_engine.build_image(IMAGE)
    study(host_tools)
    run = run_preflight(run_product, host_tools.work, "--llem-config", "study.yaml")
    assert run.returncode == 0, run.describe()
    assert "cdi-spec" not in run.outcomes
    assert run.check(f"gpu-in-container[{IMAGE}]")["details"]["gpu_request"] == "--gpus all"


def test_the_cdi_request_made_anyway_meets_the_clis_refusals(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine
) -> None:
    """With cdi-spec skipped, the probe makes the CDI request itself: the 20.10 CLI refuses
    the device name, the 28.2 CLI passes it to an engine that has no CDI driver."""
    gpu_engine.build_image(IMAGE)
    study(host_tools, "docker: {gpu_request: cdi}\n")
    for cli, words in (
        (DOCKER_CLIS[0], "nvidia.com/gpu=all"),
        (DOCKER_CLIS[1], "no CDI support enabled"),
    ):
        host_tools.use_docker(cli)
        args = ("--llem-config", "study.yaml", "--llem-skip", "cdi-spec", "--llem-no-cache")
        run = run_preflight(run_product, host_tools.work, *args)
        assert run.returncode == 1, run.describe()
        probe = run.failure(f"gpu-in-container[{IMAGE}]")
        assert probe["cause"] == "cdi_injection_failed", probe
        assert probe["details"]["gpu_request"] == "--device nvidia.com/gpu=all"
        assert words in probe["message"], probe["message"]
