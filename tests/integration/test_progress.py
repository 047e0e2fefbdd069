"""Signs of life during long work: a real pull from a registry on 127.0.0.1, made slow by a
link that lets 350 kB/s through, and a GPU probe whose hook takes 3 s; shown on a
pseudo-terminal, and in the plainer way of a CI log. Never on stdout."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from testbed import (
    DOCKER_CLIS,
    Engine,
    HookBehaviour,
    HostTools,
    ProductRunner,
    Registry,
    ScenarioSetter,
    SlowLink,
    registry_unavailable_reason,
)

LLEM = [sys.executable, "-m", "pytest_llem"]
RATE = 350_000  # bytes per second: the image's one layer (about 1 MB) takes about 3 s
LOCAL = "llem-test/progress-local:1"
_tags = itertools.count(1)


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    reason = registry_unavailable_reason()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the registry is required)", pytrace=False)
        pytest.skip(reason)
    with Registry() as running:
        yield running


@pytest.fixture(scope="module")
def slow_link(registry: Registry) -> Iterator[SlowLink]:
    link = SlowLink(registry.port, RATE)
    yield link
    link.close()


@pytest.fixture
def slow_image(gpu_engine: Engine, registry: Registry, slow_link: SlowLink) -> Iterator[str]:
    """An image that is in the registry and not in the engine: its pull lasts about 3 s.

    Its one layer is its own (a file of its own in it): no layer of it exists in the engine.
    """
    tag = f"t{next(_tags)}"
    pushed = f"{registry.address}/llem-test/slow:{tag}"
    gpu_engine.build_image(pushed, files={"etc/llem-layer": f"{tag} {time.time_ns()}\n"})
    gpu_engine.docker("push", pushed, timeout=120)
    gpu_engine.docker("rmi", pushed)
    ref = f"{slow_link.address}/llem-test/slow:{tag}"
    yield ref
    gpu_engine.docker("rmi", "-f", ref, check=False)


@pytest.fixture(scope="module")
def local_image(gpu_engine: Engine) -> str:
    gpu_engine.build_image(LOCAL)
    return LOCAL


@dataclass(frozen=True)
class TerminalRun:
    returncode: int
    stdout: str  # a pipe
    terminal: str  # what the pseudo-terminal on stderr received, as written
    elapsed_s: float

    def statuses(self) -> list[str]:
        """The live line's successive contents (each redraw starts with a carriage return)."""
        shown = re.split(r"\r\x1b\[K|\r?\n", self.terminal)
        return [text for text in shown if text.strip()]


def run_on_terminal(
    args: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float = 120
) -> TerminalRun:
    """`llem ARGS` with its stderr on a pseudo-terminal (120 columns), its stdout a pipe."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    received = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # every writer of the terminal is gone
                return
            if not chunk:
                return
            received.extend(chunk)

    start = time.monotonic()
    reader = threading.Thread(target=read_terminal, daemon=True)
    with subprocess.Popen(
        [*LLEM, *args],
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
        start_new_session=True,
    ) as proc:
        os.close(slave)
        reader.start()
        try:
            out, _ = proc.communicate(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
        reader.join(10)
    os.close(master)
    # The terminal turns "\n" into "\r\n" on its way out.
    text = received.decode(errors="replace").replace("\r\n", "\n")
    return TerminalRun(proc.returncode, out, text, time.monotonic() - start)


@pytest.mark.parametrize("cli", DOCKER_CLIS, ids=["cli-20.10", "cli-28"])
def test_a_pull_shows_live_progress_on_a_terminal(
    host_tools: HostTools, gpu_engine: Engine, slow_image: str, cli: str
) -> None:
    host_tools.use_docker(cli)
    run = run_on_terminal(
        ["preflight", "--image", slow_image, "--no-cache"],
        host_tools.env(gpu_engine),
        host_tools.work,
    )
    assert run.returncode == 0, run
    check = f"cuda-compat[{slow_image}]"
    live = [s for s in run.statuses() if s.startswith(f"{check}: pulling, ")]
    assert len(live) >= 4, run.terminal  # redrawn several times over about 3 s
    pattern = r".*: pulling, (?:starting|(\d) of 1 layer\(s\)(?:, (.+) of (.+))?), (\d+) s"
    states = [re.fullmatch(pattern, s) for s in live]
    assert all(states), live
    # Bytes appear and grow while the layer downloads; the elapsed time counts up.
    sizes = [m.group(2) for m in states if m and m.group(2)]
    assert len(set(sizes)) >= 2, live
    assert int(states[-1].group(4)) >= 2  # type: ignore[union-attr]
    kept = [line for line in run.statuses() if line.startswith(f"pulled {slow_image} in ")]
    assert len(kept) == 1, run.terminal
    assert re.search(r"in \d+\.\d s \(1 of 1 layer\(s\), 1\.\d MB of 1\.\d MB\)$", kept[0]), kept
    assert "\x1b" not in run.stdout and "pull" not in run.stdout, run.stdout
    assert run.stdout.rstrip().endswith("Docker pre-flight passed: 13 checks")


def test_without_a_terminal_a_pull_says_when_it_starts_and_ends(
    run_product: ProductRunner, host_tools: HostTools, slow_image: str
) -> None:
    result = run_product(["llem", "preflight", "--image", slow_image, "--no-cache"])
    assert result.returncode == 0, result.stderr
    check = f"cuda-compat[{slow_image}]"
    assert result.stderr.splitlines() == [
        f"pulling {slow_image} for {check} (limit 600 s)",
        result.stderr.splitlines()[1],
    ]
    assert re.fullmatch(
        rf"pulled {re.escape(slow_image)} in \d+\.\d s \(1 of 1 layer\(s\), 1\.\d MB of 1\.\d MB\)",
        result.stderr.splitlines()[1],
    )
    assert "pull" not in result.stdout and "\x1b" not in result.stderr


def test_a_pull_that_runs_out_of_time_says_so(
    run_product: ProductRunner, host_tools: HostTools, slow_image: str
) -> None:
    (host_tools.work / "study.yaml").write_text(
        "name: slow\n"
        f"runners: {{vllm: 'docker:{slow_image}'}}\n"
        "docker: {pull_timeout_s: 1}\n"
        "experiments: [{model: m, backend: vllm}]\n"
    )
    result = run_product(["llem", "preflight", "study.yaml", "--json", "r.json"])
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"pulling {slow_image} for cuda-compat[{slow_image}] (limit 1 s)",
        f"pull of {slow_image} stopped after 1 s (limit 1 s)",
    ]


def test_a_pull_that_fails_is_reported_as_a_pull_failure(
    run_product: ProductRunner, host_tools: HostTools, registry: Registry
) -> None:
    missing = f"{registry.address}/llem-test/never-pushed:1"
    result = run_product(["llem", "preflight", "--image", missing, "--json", "r.json"])
    assert result.returncode == 1, result.stdout
    report = json.loads((host_tools.work / "r.json").read_text())
    assert [(f["id"], f["cause"]) for f in report["failures"]] == [
        (f"gpu-in-container[{missing}]", "image_not_found")
    ]
    assert "manifest unknown" in report["failures"][0]["message"]
    start, end = result.stderr.splitlines()
    assert start == f"pulling {missing} for cuda-compat[{missing}] (limit 600 s)"
    assert re.fullmatch(rf"pull of {re.escape(missing)} failed after \d+\.\d s", end)


def test_a_long_probe_shows_its_time_on_a_terminal(
    host_tools: HostTools, gpu_engine: Engine, scenario: ScenarioSetter, local_image: str
) -> None:
    scenario(hook=HookBehaviour(mode="sleep", sleep_s=3.5))
    run = run_on_terminal(
        ["preflight", "--image", local_image, "--no-cache"],
        host_tools.env(gpu_engine),
        host_tools.work,
    )
    assert run.returncode == 0, run
    live = [s for s in run.statuses() if s.startswith(f"gpu-in-container[{local_image}]: ")]
    assert live, run.terminal
    assert all(re.fullmatch(r".*\]: GPU probe running \(limit 30 s\), \d s", s) for s in live), live
    seconds = [int(s.split()[-2]) for s in live]
    assert min(seconds) == 2 and max(seconds) >= 3, live  # shown from 2 s on, counting
    assert run.terminal.endswith("\r\x1b[K"), run.terminal  # erased when done
    assert "\x1b" not in run.stdout and "running" not in run.stdout


def test_a_long_probe_says_nothing_without_a_terminal(
    run_product: ProductRunner, scenario: ScenarioSetter, local_image: str
) -> None:
    scenario(hook=HookBehaviour(mode="sleep", sleep_s=2.5))
    result = run_product(["llem", "preflight", "--image", local_image, "--no-cache"])
    assert (result.returncode, result.stderr) == (0, ""), result


def test_llem_run_stays_silent_when_nothing_took_long(
    host_tools: HostTools, gpu_engine: Engine, local_image: str
) -> None:
    (host_tools.work / "study.yaml").write_text(
        "name: quiet\n"
        f"runners: {{vllm: 'docker:{local_image}'}}\n"
        "experiments: [{model: m, backend: vllm}]\n"
    )
    plan = f"llem: dry run: 001 m (vllm, docker from study runners.vllm): {local_image}"
    env = host_tools.env(gpu_engine)
    # The first run probes (on a busy machine that may take over 2 s, and show); the second
    # finds the probe remembered: nothing takes long.
    first = run_on_terminal(["run", "study.yaml", "--dry-run"], env, host_tools.work)
    assert first.returncode == 0, first
    assert first.statuses()[-1] == plan  # whatever was shown was erased
    run = run_on_terminal(["run", "study.yaml", "--dry-run"], env, host_tools.work)
    assert run.returncode == 0, run
    assert (run.terminal, run.stdout) == (plan + "\n", "")
