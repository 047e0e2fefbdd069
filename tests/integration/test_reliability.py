"""The pre-flight under stress: hangs, timeouts, interrupts, hostile input, concurrency, damage."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from testbed import (
    Engine,
    HangingSocket,
    HookBehaviour,
    HostTools,
    ProductRunner,
    ScenarioSetter,
)
from testbed.preflight import CAUSES, preflight_args, preflight_command, run_preflight, started

IMAGE = "llem-test/base:1"
PROBE = f"gpu-in-container[{IMAGE}]"
TRACEBACK = "Traceback (most recent call last)"
HOOK_SLEEP_S = 25.0


@pytest.fixture(scope="module")
def images(gpu_engine: Engine) -> None:
    gpu_engine.build_image(IMAGE)


# A probe's container may outlive the program while the hook sleeps.
CONTAINER_GRACE_S = HOOK_SLEEP_S + 15


def cache_file(host_tools: HostTools) -> Path:
    return Path(host_tools.env()["XDG_CACHE_HOME"]) / "llenergymeasure" / "probes.json"


def test_probe_timeout_is_reported_fast_and_leaves_no_container(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    scenario: ScenarioSetter,
    images: None,
) -> None:
    scenario(hook=HookBehaviour(mode="sleep", sleep_s=HOOK_SLEEP_S))
    hook_start = time.monotonic()
    run = run_preflight(
        run_product, host_tools.work, "--llem-image", IMAGE, "--llem-timeout", "3", timeout=60
    )
    assert run.elapsed_s < 12, run.describe()
    assert run.returncode == 1, run.describe()
    assert run.failure_causes == [(1, PROBE, "probe_timeout")]
    failure = run.failure(PROBE)
    assert IMAGE in failure["message"] and failure["details"]["image"] == IMAGE
    assert TRACEBACK not in run.output
    # The detached removal finishes once the hook returns.
    left = gpu_engine.wait_no_containers(timeout=HOOK_SLEEP_S + 15)
    assert left == [], f"containers left {time.monotonic() - hook_start:.0f}s on: {left}"


def test_hanging_daemon_does_not_hang_the_preflight(
    run_product: ProductRunner, host_tools: HostTools
) -> None:
    with HangingSocket() as hanging:
        env = host_tools.env(docker_host=hanging.docker_host)
        run = run_preflight(run_product, host_tools.work, "--llem-image", IMAGE, env=env)
    assert run.elapsed_s < 20, run.describe()
    assert run.returncode == 1, run.describe()
    assert run.failure_causes == [(1, "docker-daemon", "daemon_unreachable")]
    assert hanging.docker_host in run.failure("docker-daemon")["message"]
    assert run.outcomes[f"cuda-compat[{IMAGE}]"] == "not-run"
    assert run.outcomes[PROBE] == "not-run"
    assert TRACEBACK not in run.output


def test_shell_in_an_image_name_is_a_usage_error(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine
) -> None:
    marker = host_tools.root / "x"
    image = f"$(touch {marker})"
    since = time.time()
    result = run_product(preflight_args("--llem-image", image))
    assert result.returncode == 4, result.stdout + result.stderr  # pytest's usage error
    assert "--llem-image" in result.stderr and image in result.stderr, result.stderr
    assert TRACEBACK not in result.stdout + result.stderr
    assert not marker.exists()
    assert not (host_tools.work / "r.json").exists()
    assert gpu_engine.created_since(since) == []


def test_socket_permission_denied_for_a_non_root_user(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    env, as_user = host_tools.prepare("permission_denied", gpu_engine)
    run = run_preflight(run_product, host_tools.work, "--llem-image", IMAGE, env=env, user=as_user)
    assert run.returncode == 1, run.describe()
    assert run.failure_causes == [(1, "docker-daemon", "daemon_permission_denied")]
    assert run.failure("docker-daemon")["message"].startswith("Permission denied")
    assert run.outcomes[PROBE] == "not-run"


def test_concurrent_preflights_share_the_cache(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    env = host_tools.env(gpu_engine)
    names = [f"r{i}.json" for i in range(3)]
    with ExitStack() as stack:
        procs = [
            stack.enter_context(
                started(
                    preflight_command("--llem-image", IMAGE, json_name=name), env, host_tools.work
                )
            )
            for name in names
        ]
        for proc in procs:
            out, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, out + err
    for name in names:
        report = json.loads((host_tools.work / name).read_text())
        assert report["status"] == "passed", report
    fourth = run_preflight(run_product, host_tools.work, "--llem-image", IMAGE)
    assert fourth.returncode == 0, fourth.describe()
    assert set(fourth.outcomes.values()) == {"passed"}
    assert fourth.check(PROBE)["cached"] is True
    data = json.loads(cache_file(host_tools).read_text())
    assert data["schema"] == 2 and data["entries"], data


def test_garbage_from_the_hook_is_one_clean_failure(
    run_product: ProductRunner,
    host_tools: HostTools,
    scenario: ScenarioSetter,
    images: None,
) -> None:
    scenario(hook=HookBehaviour(mode="garbage", garbage_bytes=20000))
    run = run_preflight(run_product, host_tools.work, "--llem-image", IMAGE)
    assert run.returncode == 1, run.describe()
    [(number, check_id, cause)] = run.failure_causes
    assert (number, check_id) == (1, PROBE)
    assert cause in CAUSES - {"ok"}, run.failures
    assert TRACEBACK not in run.output
    failure = run.failure(PROBE)
    # 20 KB went in; what is kept is clipped, in the report and on the terminal.
    assert len(json.dumps(failure, ensure_ascii=False)) < 12000, failure
    if cause == "unknown":
        output = failure["details"]["output"]
        assert "\ufffd" in output and len(output) <= 5000, len(output)
    assert len(run.output) < 10000, run.describe()


def test_damaged_cache_is_ignored_and_rewritten(
    run_product: ProductRunner, host_tools: HostTools, images: None
) -> None:
    path = cache_file(host_tools)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\xff{garbage\xfe" * 100)
    run = run_preflight(run_product, host_tools.work, "--llem-image", IMAGE)
    assert run.returncode == 0, run.describe()
    assert set(run.outcomes.values()) == {"passed"}
    assert run.check(PROBE)["cached"] is False
    assert TRACEBACK not in run.output
    data = json.loads(path.read_text())
    assert data["schema"] == 2 and len(data["entries"]) == 1, data


def test_interrupt_while_the_probe_hangs(
    host_tools: HostTools,
    gpu_engine: Engine,
    scenario: ScenarioSetter,
    images: None,
) -> None:
    scenario(hook=HookBehaviour(mode="sleep", sleep_s=HOOK_SLEEP_S))
    env = host_tools.env(gpu_engine)
    cmd = preflight_command("--llem-image", IMAGE)
    since = time.time()
    with started(cmd, env, host_tools.work) as proc:
        time.sleep(4)
        assert proc.poll() is None, proc.communicate()
        assert gpu_engine.hook_calls(since), "the probe had not reached the hook"
        interrupted = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C: to the whole foreground group
        out, err = proc.communicate(timeout=15)
        ended = time.monotonic() - interrupted
    assert ended < 5, f"{ended:.1f}s after SIGINT\n{out}\n{err}"
    assert proc.returncode in (2, 130), out + err
    assert TRACEBACK not in out + err
    left = gpu_engine.wait_no_containers(timeout=HOOK_SLEEP_S + 15)
    assert left == [], f"containers left: {left}"
    # An interrupted pre-flight proved nothing: it must not say that it passed.
    assert "Docker pre-flight passed" not in out + err, out
    report = host_tools.work / "r.json"
    if report.exists():
        assert json.loads(report.read_text())["status"] != "passed", report.read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_llem_run_interrupted_while_the_probe_hangs(
    host_tools: HostTools,
    gpu_engine: Engine,
    scenario: ScenarioSetter,
    images: None,
    sig: signal.Signals,
) -> None:
    """Ctrl-C (or SIGTERM) 4 s into `llem run`: it ends within seconds, leaving no container."""
    scenario(hook=HookBehaviour(mode="sleep", sleep_s=HOOK_SLEEP_S))
    study = host_tools.work / "study.yaml"
    study.write_text(
        f"name: stop\nrunners: {{vllm: 'docker:{IMAGE}'}}\n"
        "experiments:\n  - {model: m, backend: vllm}\n"
    )
    cmd = [sys.executable, "-m", "pytest_llem", "run", str(study), "--output", "out"]
    since = time.time()
    with started(cmd, host_tools.env(gpu_engine), host_tools.work) as proc:
        time.sleep(4)
        assert proc.poll() is None, proc.communicate()
        assert gpu_engine.hook_calls(since), "the probe had not reached the hook"
        interrupted = time.monotonic()
        os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=15)
        ended = time.monotonic() - interrupted
    assert ended < 5, f"{ended:.1f}s after {sig.name}\n{out}\n{err}"
    assert proc.returncode == 128 + int(sig), out + err
    assert TRACEBACK not in out + err
    assert "pre-flight passed" not in err
    assert not (host_tools.work / "out").exists()  # nothing was dispatched
    left = gpu_engine.wait_no_containers(timeout=HOOK_SLEEP_S + 15)
    assert left == [], f"containers left: {left}"
