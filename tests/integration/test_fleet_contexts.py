"""`llem preflight --host context:NAME` for a Docker context that does not exist, with the real
docker CLI: that host fails alone, naming the context (not the default socket), with a fix
that applies; a host whose context exists is checked as ever."""

from __future__ import annotations

import json
import subprocess

from testbed import DOCKER_CLI, Engine, HostTools, ProductRunner

IMAGE = "llem-test/fleet:1"


def test_a_context_that_does_not_exist_fails_alone_and_is_named(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine
) -> None:
    gpu_engine.build_image(IMAGE)
    created = subprocess.run(
        [DOCKER_CLI, "context", "create", "llem-gpu", "--docker", f"host={gpu_engine.docker_host}"],
        env=host_tools.env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    result = run_product(
        ["llem", "preflight", "--image", IMAGE, "--json", "r.json",
         "--host", "context:llem-gpu", "--host", "context:nope"],
        env=host_tools.env(),
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "  1. [host-reachable] docker context nope not found" in result.stdout.splitlines()
    assert "`docker context ls`" in out and "`docker context create nope" in out
    assert "docker.sock" not in out and "docker context use" not in out
    assert result.stdout.splitlines()[-1] == ("Docker pre-flight: 1 of 2 hosts ready; failed: nope")
    hosts = {h["host"]: h for h in json.loads((host_tools.work / "r.json").read_text())["hosts"]}
    assert hosts["llem-gpu"]["status"] == "passed"
    assert [(f["id"], f["cause"]) for f in hosts["nope"]["failures"]] == [
        ("host-reachable", "host_unreachable")
    ]
