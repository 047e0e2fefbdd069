"""DOCKER_HOST as the docker CLI reads it: other spellings of a TCP daemon are remote too.

The docker CLI trims blanks around DOCKER_HOST and takes a value without a scheme for tcp://
(github.com/docker/cli, opts/hosts.go). Such a daemon is as remote as tcp://HOST:PORT: its host's
GPUs and toolkit are not this machine's, and it cannot mount this machine's RUN_DIR.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from testbed import Engine, HostTools, ProductRunner
from testbed.preflight import run_preflight
from testbed.workload import build_workload_image

WORKLOAD = "llem-test/workload:1"
FORMS: dict[str, Callable[[str], str]] = {
    "no scheme": lambda url: url.removeprefix("tcp://"),  # 127.0.0.1:PORT
    "leading blank": lambda url: " " + url,  # " tcp://127.0.0.1:PORT"
}


@pytest.fixture(scope="module")
def images(gpu_engine: Engine) -> None:
    build_workload_image(gpu_engine, WORKLOAD)


def dispatch_steps(engine: Engine, since: float, container: str) -> list[str]:
    """The engine's container events since then for names ending in ``container``."""
    out = engine.docker(
        "events", f"--since={since:.6f}", f"--until={time.time():.6f}",
        "--filter=type=container", "--format={{.Action}} {{.Actor.Attributes.name}}",
    ).stdout  # fmt: skip
    return [
        line.split()[0]
        for line in out.splitlines()
        if re.search(rf" {container}$", line)
        and line.split()[0] not in ("attach", "detach", "kill", "exec_create")
    ]


@pytest.mark.parametrize("form", FORMS)
def test_other_spellings_of_a_tcp_daemon_are_remote(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    images: None,
    form: str,
) -> None:
    url = gpu_engine.enable_tcp()
    # A machine without GPU tools, whose DOCKER_HOST names the daemon another way.
    host_tools.use_toolkit([])
    host_tools.use_nvidia_smi("missing")
    env = host_tools.env(docker_host=FORMS[form](url))

    run = run_preflight(run_product, host_tools.work, "--llem-image", WORKLOAD, env=env)
    assert run.returncode == 0, run.describe()
    assert run.warnings == [] and run.failures == [], run.describe()
    for check_id in ("host-driver", "nvidia-toolkit"):
        check = run.check(check_id)
        assert check["outcome"] == "skipped", check
        assert f"remote daemon ({url})" in check["reason"], check
    assert run.report["host"]["remote_daemon"] is True
    assert run.check("docker-daemon")["details"]["endpoint"] == url

    # `llem run` dispatches through the API: create, copy in, start, copy back, remove.
    (host_tools.work / "study.yaml").write_text(
        f"name: far\nrunners: {{vllm: 'docker:{WORKLOAD}'}}\n"
        "experiments:\n  - {model: m, backend: vllm}\n"
    )
    since = time.time()
    result = run_product(["llem", "run", "study.yaml", "--output", "out"], env=env)
    assert result.returncode == 0, result.stderr
    assert "pre-flight" not in result.stderr  # it passed, with no warning
    steps = dispatch_steps(gpu_engine, since, r"llem-far-[0-9a-f]{8}-001")
    assert steps == ["create", "extract-to-dir", "start", "die", "archive-path", "destroy"]
    assert (host_tools.work / "out" / "001_result.json").is_file()
