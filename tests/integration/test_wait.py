"""`--wait`: a host still coming up gets time; a host that cannot come up fails at once.

The late daemon is the real engine behind a socket path that appears 3 s after the product
starts (as a daemon's socket appears when it has started).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from testbed import (
    DOCKER_CLIS,
    Engine,
    HostScenario,
    HostTools,
    ProductRunner,
    ensure_test_user,
    nvidia_smi_script,
)
from testbed.preflight import run_preflight, started

IMAGE = "llem-test/wait:1"
LATE_S = 3.0
WAIT_LINE = re.compile(r"waiting for docker-daemon \(unreachable\): \d+ s of (\d+) s")


@pytest.fixture(scope="module")
def image(gpu_engine: Engine) -> str:
    gpu_engine.build_image(IMAGE)
    return IMAGE


@dataclass
class LateDaemon:
    docker_host: str
    first_query: float | None = None  # time.monotonic() of the product's first docker command


@contextlib.contextmanager
def late_daemon(
    engine: Engine, host_tools: HostTools, after_s: float = LATE_S
) -> Iterator[LateDaemon]:
    """A DOCKER_HOST whose socket appears ``after_s`` seconds after the product's first docker
    command (its `docker` on PATH notes when it is first run)."""
    where = Path(tempfile.mkdtemp(prefix="llem-late-", dir="/tmp"))
    socket_path, mark = where / "docker.sock", where / "first-query"
    host_tools.install(
        "docker", f'#!/bin/sh\n[ -e {mark} ] || : > {mark}\nexec {DOCKER_CLIS[0]} "$@"\n'
    )
    late = LateDaemon(f"unix://{socket_path}")
    done = threading.Event()

    def appear() -> None:
        while not mark.exists():
            if done.wait(0.01):
                return
        late.first_query = time.monotonic()
        if not done.wait(after_s):
            socket_path.symlink_to(engine.unix_socket)

    watcher = threading.Thread(target=appear, daemon=True)
    watcher.start()
    try:
        yield late
    finally:
        done.set()
        watcher.join()
        shutil.rmtree(where, ignore_errors=True)


def waiting_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("waiting for ")]


def test_a_daemon_that_answers_3_s_late_is_waited_for(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, image: str
) -> None:
    with late_daemon(gpu_engine, host_tools) as late:
        result = run_product(
            ["llem", "preflight", "--image", image, "--wait", "30", "--json", "r.json"],
            env=host_tools.env(docker_host=late.docker_host),
        )
        end = time.monotonic()
    assert result.returncode == 0, result.stdout + result.stderr
    # From llem's first question on: the daemon's 3 s, at most a back-off step (2 s once it
    # has waited 1.5 s), and the rest of the pre-flight (a probe of about 0.3 s).
    assert late.first_query is not None
    assert LATE_S <= end - late.first_query < LATE_S + 5, end - late.first_query
    lines = waiting_lines(result.stderr)
    assert 1 <= len(lines) <= 5, result.stderr  # (the wait begins once llem has loaded)
    assert all(WAIT_LINE.fullmatch(line) and line.endswith(" of 30 s") for line in lines), lines
    assert re.search(r"^waited \d+ s for docker-daemon$", result.stderr, re.M), result.stderr
    assert "waiting" not in result.stdout
    report = json.loads((host_tools.work / "r.json").read_text())
    assert report["status"] == "passed"
    assert report["host"]["docker_server_version"] == gpu_engine.server_version


def test_without_wait_a_late_daemon_fails_at_once(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, image: str
) -> None:
    with late_daemon(gpu_engine, host_tools, after_s=30) as late:
        result = run_product(
            ["llem", "preflight", "--image", image, "--json", "r.json"],
            env=host_tools.env(docker_host=late.docker_host),
        )
        end = time.monotonic()
    assert late.first_query is not None
    assert end - late.first_query < 10, result.stderr  # no waiting for the daemon's 30 s
    assert result.returncode == 1
    assert result.stderr == ""
    report = json.loads((host_tools.work / "r.json").read_text())
    assert [(f["id"], f["cause"]) for f in report["failures"]] == [
        ("docker-daemon", "daemon_unreachable")
    ]


@pytest.mark.parametrize(
    ("scenario", "daemon_down", "cause"),
    [
        ("toolkit_missing", False, "toolkit_missing"),
        ("toolkit_missing", True, "toolkit_missing"),  # a daemon that may come: no matter
        ("no_docker", False, "docker_cli_missing"),
        ("permission_denied", False, "daemon_permission_denied"),
    ],
)
def test_a_failure_that_cannot_clear_by_itself_ends_the_wait_at_once(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    image: str,
    scenario: HostScenario,
    daemon_down: bool,
    cause: str,
) -> None:
    ensure_test_user()
    env, as_user = host_tools.prepare(scenario, gpu_engine)
    if daemon_down:
        env["DOCKER_HOST"] = host_tools.dead_docker_host
    start = time.monotonic()
    result = run_product(
        ["llem", "preflight", "--image", image, "--wait", "30", "--json", "r.json"],
        env=env,
        user=as_user,
    )
    assert time.monotonic() - start < 8, result.stderr  # not 30 s
    assert result.returncode == 1, result.stdout
    assert waiting_lines(result.stderr) == [], result.stderr
    report = json.loads((host_tools.work / "r.json").read_text())
    assert cause in [f["cause"] for f in report["failures"]]
    assert "waiting" not in json.dumps(report)


def test_when_the_time_is_up_the_report_says_how_long_it_waited(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, image: str
) -> None:
    env, _ = host_tools.prepare("daemon_down", gpu_engine)
    start = time.monotonic()
    result = run_product(
        ["llem", "preflight", "--image", image, "--wait", "3", "--json", "r.json"], env=env
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 1
    assert 3 <= elapsed < 3 + 6, elapsed
    lines = waiting_lines(result.stderr)
    assert len(lines) >= 2 and all(WAIT_LINE.fullmatch(line) for line in lines), result.stderr
    # The ordinary numbered report, on stdout after the checklist, saying how long it waited.
    report_lines = result.stdout.splitlines()
    header = report_lines.index("Docker pre-flight failed: 1 issue(s) found")
    assert report_lines[header + 1].startswith(
        "  1. [docker-daemon] Cannot reach the Docker daemon"
    )
    assert report_lines[header + 1].endswith("(after waiting 3 s)")
    report = json.loads((host_tools.work / "r.json").read_text())
    assert 3 <= report["failures"][0]["details"]["waited_s"] < 9


def test_a_driver_that_loads_late_is_waited_for(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, image: str
) -> None:
    host_tools.use_nvidia_smi("driver_not_loaded")
    loaded = nvidia_smi_script(host_tools.scenario)

    def load_driver() -> None:  # replaced at once: never a moment without nvidia-smi
        fresh = host_tools.root / "nvidia-smi.new"
        fresh.write_text(loaded)
        fresh.chmod(0o755)
        fresh.replace(host_tools.bin / "nvidia-smi")

    timer = threading.Timer(2.0, load_driver)
    timer.start()
    try:
        result = run_product(
            ["llem", "preflight", "--image", image, "--wait", "30", "--json", "r.json"]
        )
    finally:
        timer.cancel()
    assert result.returncode == 0, result.stdout + result.stderr
    lines = waiting_lines(result.stderr)
    assert lines and all(
        re.fullmatch(r"waiting for host-driver \(driver not loaded\): \d+ s of 30 s", line)
        for line in lines
    ), result.stderr
    report = json.loads((host_tools.work / "r.json").read_text())
    assert (report["status"], report["warnings"]) == ("passed", [])
    assert report["host"]["driver_version"] == "550.54.15"


def test_pytest_llem_wait(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, image: str
) -> None:
    with late_daemon(gpu_engine, host_tools) as late:
        run = run_preflight(
            run_product,
            host_tools.work,
            "--llem-image",
            image,
            "--llem-wait",
            "30",
            env=host_tools.env(docker_host=late.docker_host),
        )
    assert run.returncode == 0, run.describe()
    assert run.report["status"] == "passed"
    assert waiting_lines(run.proc.stderr), run.describe()


def test_llem_run_wait(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, image: str
) -> None:
    (host_tools.work / "study.yaml").write_text(
        f"name: late\nrunners: {{vllm: 'docker:{image}'}}\n"
        "experiments: [{model: m, backend: vllm}]\n"
    )
    with late_daemon(gpu_engine, host_tools) as late:
        result = run_product(
            ["llem", "run", "study.yaml", "--dry-run", "--wait", "30"],
            env=host_tools.env(docker_host=late.docker_host),
        )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("waiting for docker-daemon (unreachable): ")
    assert lines[-1] == f"llem: dry run: 001 m (vllm, docker from study runners.vllm): {image}"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_wait_is_interrupted_at_once(
    host_tools: HostTools, gpu_engine: Engine, image: str, signum: signal.Signals
) -> None:
    env, _ = host_tools.prepare("daemon_down", gpu_engine)
    cmd = [sys.executable, "-m", "pytest_llem", "preflight", "--image", image, "--wait", "60"]
    with started(cmd, env, host_tools.work) as proc:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the wait has begun
        assert first.startswith("waiting for docker-daemon (unreachable): "), first
        sent = time.monotonic()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    assert proc.returncode == 128 + signum, err
    assert took < 5, took
    assert "Traceback" not in err and err.strip().endswith(
        "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    ), err
