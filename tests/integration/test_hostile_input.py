"""Hostile or broken input against the real engine: one clear line, the documented exit
status, and nothing started (items of the hardening work that concern input)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testbed import Engine, HostTools, ProductRunner, build_workload_image

WORKLOAD = "llem-test/workload:1"
STUDY = (
    f"name: h\nrunners: {{vllm: 'docker:{WORKLOAD}'}}\nexperiments: [{{model: m, backend: vllm}}]\n"
)


@pytest.fixture(scope="module")
def images(gpu_engine: Engine) -> None:
    build_workload_image(gpu_engine, WORKLOAD)


def test_a_study_read_from_a_pipe_is_validated_and_preflighted(
    host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest_llem", "run", "/dev/stdin", "--dry-run"],
        input=STUDY,
        capture_output=True,
        text=True,
        env=host_tools.env(gpu_engine),
        cwd=host_tools.work,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"docker from study runners.vllm): {WORKLOAD}" in result.stderr


def test_a_damaged_docker_cli_config_is_no_crash(
    run_product: ProductRunner, host_tools: HostTools
) -> None:
    """`{"currentContext": 5}`: the docker CLI warns and uses its default socket; so does llem."""
    config = host_tools.home / "dockercfg"
    config.mkdir()
    (config / "config.json").write_text('{"currentContext": 5}')
    env = {**host_tools.env(), "DOCKER_CONFIG": str(config)}
    env.pop("DOCKER_HOST", None)
    result = run_product(["llem", "preflight", "--json", "r.json"], env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    report = json.loads((host_tools.work / "r.json").read_text())
    causes = {f["id"]: f["cause"] for f in report["failures"]}
    assert causes["docker-daemon"] == "daemon_unreachable", report
    assert "check_error" not in causes.values()
    result = run_product(["pytest", "--llem-preflight", "-p", "no:cacheprovider"], env=env)
    assert result.returncode == 1 and "check_error" not in result.stdout, result.stdout[-3000:]


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["llem", "preflight", "--json", "."], 2, "llem: error: --json: cannot write .: is a"),
        (["llem", "preflight", "--timeout", "nan"], 2, "llem: error: --timeout: should be a"),
        (["pytest", "--llem-preflight", "--llem-timeout=-5"], 4, "--llem-timeout: should be"),
        (["pytest", "--llem-preflight", "--llem-cache-s=inf"], 4, "--llem-cache-s: should be"),
    ],
)
def test_bad_options_are_refused_before_any_work(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    args: list[str],
    status: int,
    message: str,
) -> None:
    since = time.time()
    result = run_product(args)
    assert result.returncode == status, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert gpu_engine.created_since(since) == []


def test_the_json_report_can_go_to_stdout(
    run_product: ProductRunner, host_tools: HostTools, images: None
) -> None:
    """`--json /dev/stdout` (and `--json -`) writes the JSON alone to stdout, a pipe in CI
    (`| jq .status`), not a new file; the checklist goes to stderr."""
    for where in ("/dev/stdout", "-"):
        result = run_product(["llem", "preflight", "--image", WORKLOAD, "--json", where])
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["status"] == "passed"
        assert "Docker pre-flight passed: " in result.stderr
    assert Path("/dev/stdout").is_symlink()
