"""One pre-flight across many hosts: pytest-xdist gateways (`--dist each`) and `llem preflight
--host`, with the test bed's engines standing in for hosts (Docker contexts through popen
gateways), and a real sshd on 127.0.0.1 for the ssh transport."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testbed import DOCKER_CLI, Engine, HostTools, ProductRunner
from testbed.host import popen_in_session
from testbed.sshd import Sshd, free_port, sshd_unavailable_reason

IMAGE = "llem-test/fleet:1"
TIER1 = ["docker-cli", "docker-daemon", "host-driver", "nvidia-toolkit"]
TIER2 = [f"cuda-compat[{IMAGE}]", f"gpu-in-container[{IMAGE}]"]
TIER3 = [
    "clock-events",
    "energy-counter",
    "gpu-health",
    "gpu-idle",
    "mig-mode",
    "persistence-mode",
    "power-limit",
]


@pytest.fixture(scope="module")
def images(gpu_engine: Engine, plain_engine: Engine) -> None:
    for engine in (gpu_engine, plain_engine):
        engine.build_image(IMAGE)


def context(host_tools: HostTools, name: str, docker_host: str) -> str:
    """A Docker context of the test's user (HOME is the test's) for ``docker_host``."""
    result = subprocess.run(
        [DOCKER_CLI, "context", "create", name, "--docker", f"host={docker_host}"],
        env=host_tools.env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return name


def no_docker_host(host_tools: HostTools) -> dict[str, str]:
    env = host_tools.env()
    assert "DOCKER_HOST" not in env
    return with_ssh(env)


def with_ssh(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the ssh client on PATH (after the host's tools)."""
    return {
        **env,
        "PATH": f"{env['PATH']}:{os.path.dirname(shutil.which('ssh') or '/usr/bin/ssh')}",
    }


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def by_host(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["host"]: h for h in report["hosts"]}


def outcomes(host: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["outcome"] for c in host["checks"]}


@pytest.fixture
def contexts(host_tools: HostTools, gpu_engine: Engine, plain_engine: Engine) -> dict[str, str]:
    return {
        "gpu": context(host_tools, "llem-gpu", gpu_engine.docker_host),
        "plain": context(host_tools, "llem-plain", plain_engine.docker_host),
        "dead": context(host_tools, "llem-dead", host_tools.dead_docker_host),
    }


# -- pytest --dist each ----------------------------------------------------------------------


def test_every_check_runs_on_every_host(
    run_product: ProductRunner, host_tools: HostTools, contexts: dict[str, str], images: None
) -> None:
    result = run_product(
        ["pytest", "--llem-preflight", "-p", "no:cacheprovider", "--llem-image", IMAGE,
         "--llem-no-cache", "--llem-json", "r.json", "--dist", "each",
         "--tx", f"popen//id=gpuA//env:DOCKER_CONTEXT={contexts['gpu']}",
         "--tx", f"popen//id=plainB//env:DOCKER_CONTEXT={contexts['plain']}"],
        env=no_docker_host(host_tools),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "Host gpuA: Docker pre-flight passed (13 checks)" in lines
    start = lines.index("Host plainB:")
    assert lines[start + 1 : start + 3] == [
        "Docker pre-flight failed: 1 issue(s) found",
        f"  1. [gpu-in-container[{IMAGE}]] GPU probe of {IMAGE} failed: Docker cannot select a "
        'GPU device driver (could not select device driver "" with capabilities [[gpu]]): the '
        "NVIDIA runtime is not configured in the daemon",
    ]
    assert "Docker pre-flight: 1 of 2 hosts ready; failed: plainB" in lines
    report = read_json(host_tools.work / "r.json")
    assert report["status"] == "failed"
    hosts = by_host(report)
    assert list(hosts) == ["gpuA", "plainB"]
    assert (hosts["gpuA"]["status"], hosts["gpuA"]["failures"]) == ("passed", [])
    assert outcomes(hosts["gpuA"]) == {c: "passed" for c in TIER1 + TIER2 + TIER3}
    assert hosts["plainB"]["status"] == "failed"
    assert [(f["id"], f["cause"]) for f in hosts["plainB"]["failures"]] == [
        (f"gpu-in-container[{IMAGE}]", "gpu_driver_not_configured")
    ]
    # Each host's facts are its own: the daemon each context points at.
    endpoints = {
        name: next(c for c in h["checks"] if c["id"] == "docker-daemon")["details"]["endpoint"]
        for name, h in hosts.items()
    }
    assert endpoints["gpuA"] != endpoints["plainB"]
    assert hosts["gpuA"]["host_facts"]["driver_version"] == "550.54.15"
    assert [(f["host"], f["number"]) for f in report["failures"]] == [("plainB", 1)]


def test_tiers_are_gated_per_host(
    run_product: ProductRunner, host_tools: HostTools, contexts: dict[str, str], images: None
) -> None:
    """Tier 1 failing on one host stops tier 2 there only."""
    result = run_product(
        ["pytest", "--llem-preflight", "-p", "no:cacheprovider", "--llem-image", IMAGE,
         "--llem-json", "r.json", "--dist", "each",
         "--tx", f"popen//id=down//env:DOCKER_CONTEXT={contexts['dead']}",
         "--tx", f"popen//id=up//env:DOCKER_CONTEXT={contexts['gpu']}"],
        env=no_docker_host(host_tools),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout
    hosts = by_host(read_json(host_tools.work / "r.json"))
    assert outcomes(hosts["down"]) == {
        "docker-cli": "passed", "docker-daemon": "failed", "host-driver": "passed",
        "nvidia-toolkit": "passed", TIER2[0]: "not-run", TIER2[1]: "not-run",
        **{c: "not-run" for c in TIER3},
    }  # fmt: skip
    assert set(outcomes(hosts["up"]).values()) == {"passed"}
    assert "Docker pre-flight: 1 of 2 hosts ready; failed: down" in result.stdout


# -- llem preflight --host -------------------------------------------------------------------


def test_llem_preflight_hosts_by_context(
    run_product: ProductRunner, host_tools: HostTools, contexts: dict[str, str], images: None
) -> None:
    result = run_product(
        ["llem", "preflight", "--image", IMAGE, "--json", "r.json",
         "--host", f"context:{contexts['gpu']}", "--host", f"context:{contexts['plain']}"],
        env=host_tools.env(extra={"DOCKER_HOST": "unix:///nowhere.sock"}),  # (not used)
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["Host llem-gpu:", "  ✓ docker-cli"]
    assert f"  ✗ gpu-in-container[{IMAGE}] (see 1.)" in lines
    assert f"  1. [gpu-in-container[{IMAGE}]] GPU probe of {IMAGE} failed: " in "\n".join(lines)
    assert [line for line in lines if line.startswith("Host ")] == [
        "Host llem-gpu:",
        "Host llem-plain:",
    ]  # each host's heading once: its checks, then its report
    assert lines[-1] == "Docker pre-flight: 1 of 2 hosts ready; failed: llem-plain"
    hosts = by_host(read_json(host_tools.work / "r.json"))
    assert [(n, h["status"]) for n, h in hosts.items()] == [
        ("llem-gpu", "passed"),
        ("llem-plain", "failed"),
    ]


def test_llem_preflight_hosts_as_junit(
    run_product: ProductRunner, host_tools: HostTools, contexts: dict[str, str], images: None
) -> None:
    """`--junit` with `--host`: one test suite per host; one that cannot be reached has one
    error case."""
    nobody = f"127.0.0.1:{free_port()}"
    result = run_product(
        ["llem", "preflight", "--image", IMAGE, "--junit", "r.xml",
         "--host", f"context:{contexts['gpu']}", "--host", f"context:{contexts['plain']}",
         "--host", f"ssh://root@{nobody}"],
        env=with_ssh(host_tools.env()),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    root = ET.parse(host_tools.work / "r.xml").getroot()
    assert root.tag == "testsuites"
    suites = {suite.get("name"): suite for suite in root.findall("testsuite")}
    assert list(suites) == ["llem-gpu", "llem-plain", nobody]
    counts = ("tests", "failures", "errors", "skipped")
    every, tier3 = len(TIER1 + TIER2 + TIER3), len(TIER3)
    assert [suites["llem-gpu"].get(k) for k in counts] == [str(every), "0", "0", "0"]
    assert [suites["llem-plain"].get(k) for k in counts] == [str(every), "1", "0", str(tier3)]
    assert [suites[nobody].get(k) for k in counts] == ["1", "0", "1", "0"]
    assert [root.get(k) for k in counts] == [str(2 * every + 1), "1", "1", str(tier3)]
    [case] = suites[nobody].findall("testcase")
    error = case.find("error")
    assert error is not None and error.get("type") == "host_unreachable"
    assert (error.get("message") or "").startswith(f"[host-reachable] cannot reach {nobody} over")
    [failed] = [c for c in suites["llem-plain"].iter("testcase") if c.find("failure") is not None]
    assert failed.get("name") == f"gpu-in-container[{IMAGE}]"


# -- over ssh --------------------------------------------------------------------------------


@pytest.fixture
def ssh_host(host_tools: HostTools, gpu_engine: Engine) -> Iterator[Sshd]:
    """A "remote" GPU host: a private sshd whose sessions see the healthy simulated host."""
    reason = sshd_unavailable_reason()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the ssh test bed is required)", pytrace=False)
        pytest.skip(reason)
    env = host_tools.env(gpu_engine)
    env["PATH"] = f"{host_tools.bin}:/usr/bin:/bin"  # the fake NVIDIA tools, then a shell's
    with Sshd(env) as sshd:
        yield sshd


def test_ssh_hosts_and_an_unreachable_one(
    run_product: ProductRunner, host_tools: HostTools, ssh_host: Sshd, images: None
) -> None:
    nobody = free_port()  # nothing listens there: that host cannot be reached
    start = time.monotonic()
    result = run_product(
        ["llem", "preflight", "--image", IMAGE, "--json", "r.json",
         "--host", ssh_host.url, "--host", f"ssh://root@127.0.0.1:{nobody}",
         "--ssh-config", str(ssh_host.client_config), "--remote-python", sys.executable],
        env=with_ssh(host_tools.env()), timeout=180,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert result.returncode == 1, result.stdout + result.stderr + ssh_host.log_tail()
    good, bad = f"127.0.0.1:{ssh_host.port}", f"127.0.0.1:{nobody}"
    hosts = by_host(read_json(host_tools.work / "r.json"))
    assert list(hosts) == [good, bad]
    assert hosts[good]["status"] == "passed", hosts[good]
    assert set(outcomes(hosts[good]).values()) == {"passed"}
    # The checks ran over there: with the session's PATH of fake tools, and its engine.
    docker_cli = next(c for c in hosts[good]["checks"] if c["id"] == "docker-cli")
    assert docker_cli["details"]["path"] == str(host_tools.bin / "docker")
    [failure] = hosts[bad]["failures"]
    assert (failure["id"], failure["cause"]) == ("host-reachable", "host_unreachable")
    assert failure["message"].startswith(f"cannot reach {bad} over ssh: ")
    assert "Connection refused" in failure["message"]
    assert result.stdout.splitlines()[-1] == (
        f"Docker pre-flight: 1 of 2 hosts ready; failed: {bad}"
    )
    assert elapsed < 60  # the unreachable host held nothing up
    assert (ssh_host.home / "pyexecnetcache").is_dir()  # where xdist's worker ran


def test_ssh_host_without_pytest_llem(
    run_product: ProductRunner, host_tools: HostTools, ssh_host: Sshd, images: None
) -> None:
    result = run_product(
        ["llem", "preflight", "--image", IMAGE, "--json", "r.json",
         "--host", ssh_host.url, "--ssh-config", str(ssh_host.client_config),
         "--remote-python", f"{sys.executable} -S"],  # (no site-packages: no pytest-llem)
        env=with_ssh(host_tools.env()),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    [host] = read_json(host_tools.work / "r.json")["hosts"]
    [failure] = host["failures"]
    assert failure["cause"] == "host_unreachable"
    name = f"127.0.0.1:{ssh_host.port}"
    assert failure["message"].startswith(
        f"pytest-llem is not installed for {sys.executable} -S on {name} ("
    )
    assert failure["fix"].startswith("Install there the pytest-llem this machine runs, from a")
    assert f"{sys.executable} -S -m pip install" in failure["fix"]
    assert "install pytest-llem" not in failure["fix"]  # (a name anyone could register)
    assert f"Host {name}:\n" in result.stdout


def test_pytest_over_an_ssh_gateway(
    run_product: ProductRunner,
    host_tools: HostTools,
    ssh_host: Sshd,
    contexts: dict[str, str],
    images: None,
) -> None:
    """The plain pytest form: a host without id= is named by its ssh host."""
    spec = f"ssh_config={ssh_host.client_config}//python={sys.executable}"
    result = run_product(
        ["pytest", "--llem-preflight", "-p", "no:cacheprovider", "--llem-image", IMAGE,
         "--llem-json", "r.json", "--dist", "each",
         "--tx", f"ssh=-p {ssh_host.port} root@127.0.0.1//{spec}",
         "--tx", f"popen//id=plainB//env:DOCKER_CONTEXT={contexts['plain']}",
         "--tx", f"ssh=-p {free_port()} root@127.0.0.1//id=gone//{spec}"],
        env=no_docker_host(host_tools), timeout=180,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    hosts = by_host(read_json(host_tools.work / "r.json"))
    assert [(n, h["status"]) for n, h in hosts.items()] == [
        ("127.0.0.1", "passed"),
        ("plainB", "failed"),
        ("gone", "failed"),
    ]
    assert hosts["gone"]["failures"][0]["cause"] == "host_unreachable"
    assert "Docker pre-flight: 1 of 3 hosts ready; failed: plainB, gone" in result.stdout


def test_no_host_reachable(run_product: ProductRunner, host_tools: HostTools) -> None:
    """Nothing runs here instead: the one host fails, and so does the pre-flight."""
    result = run_product(
        ["llem", "preflight", "--json", "r.json", "--host", f"ssh://root@127.0.0.1:{free_port()}"],
        env=with_ssh(host_tools.env()),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = read_json(host_tools.work / "r.json")
    [host] = report["hosts"]
    assert [c["id"] for c in host["checks"]] == ["host-reachable"]
    assert (report["status"], host["failures"][0]["cause"]) == ("failed", "host_unreachable")
    assert result.stdout.splitlines()[-1].startswith("Docker pre-flight: 0 of 1 hosts ready")


def test_workers_get_the_controllers_settings(
    run_product: ProductRunner, host_tools: HostTools, contexts: dict[str, str], images: None
) -> None:
    """A worker starts elsewhere (here: another directory), where the study file named on the
    controller's command line is not: the study's images still reach it."""
    (host_tools.work / "study.yaml").write_text(
        f"name: s\nrunners: {{vllm: 'docker:{IMAGE}'}}\n"
        "experiments: [{model: m, backend: vllm}]\n"
    )
    elsewhere = host_tools.root / "elsewhere"
    elsewhere.mkdir()
    result = run_product(
        ["pytest", "--llem-preflight", "-p", "no:cacheprovider", "--llem-config=study.yaml",
         "--llem-json", "r.json", "--dist", "each",
         "--tx", f"popen//id=far//chdir={elsewhere}//env:DOCKER_CONTEXT={contexts['gpu']}"],
        env=no_docker_host(host_tools),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    [host] = read_json(host_tools.work / "r.json")["hosts"]
    assert host["host"] == "far"
    assert outcomes(host) == {c: "passed" for c in TIER1 + TIER2 + TIER3}


# -- a host that fails after its first contact -----------------------------------------------

# Loaded by the worker of a `faulty_python` (PYTEST_PLUGINS): it crashes, or stops itself
# (SIGSTOP: a worker that is stuck, as a hung host is), at the point LLEM_TEST_FAULT names.
FAULT_PLUGIN = """\
import os
import signal

FAULT = os.environ.get("LLEM_TEST_FAULT", "")
_STDERR = os.dup(2)  # (pytest captures file descriptor 2 while a check runs)
_SEEN = []


def _say(text):
    os.write(_STDERR, text.encode() + b"\\n")


def _stop():
    open(os.path.join(os.path.dirname(__file__), "stopped"), "w").close()  # (for the test)
    os.kill(os.getpid(), signal.SIGSTOP)


def pytest_configure(config):
    if FAULT == "stall-start":
        _say("llem-test: stopping before the checks")
        _stop()


def pytest_runtest_setup(item):
    _SEEN.append(item.nodeid)
    if len(_SEEN) != 2:  # (the first check's results are on their way by now)
        return
    if FAULT == "crash":
        _say("llem-test: the worker died")
        os._exit(70)
    if FAULT == "stall-run":
        _say("llem-test: stopping at the second check")
        _stop()
"""


def faulty_python(sshd: Sshd, fault: str) -> Path:
    """A Python for the ssh host: the real one for the first contact, then a worker that
    fails: 'exit' (it cannot start: a word on stderr, exit status 1), 'crash' (it dies at its
    second check), 'stall-start' / 'stall-run' (it stops: before its checks / at its
    second)."""
    where = sshd.dir / f"fault-{fault}"
    where.mkdir()
    (where / "llem_test_fault.py").write_text(FAULT_PLUGIN)
    lines = ["#!/bin/sh", f'case "$*" in *"import pytest_llem"*) exec {sys.executable} "$@";; esac']
    if fault == "exit":
        lines += ['echo "llem-test: cannot allocate memory" >&2', "exit 1"]
    else:
        lines += [
            f"export PYTHONPATH={where} PYTEST_PLUGINS=llem_test_fault LLEM_TEST_FAULT={fault}",
            f'exec {sys.executable} "$@"',
        ]
    script = where / "python"
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o755)
    return script


def ssh_tx(sshd: Sshd, name: str, python: str | Path) -> str:
    return (
        f"ssh=-p {sshd.port} root@127.0.0.1//id={name}//ssh_config={sshd.client_config}"
        f"//python={python}"
    )


def ssh_clients_of(sshd: Sshd) -> list[str]:
    """The ssh clients on this machine still connected to (or connecting to) ``sshd``."""
    table = subprocess.run(
        ["ps", "-ww", "-e", "-o", "pid=,args="], capture_output=True, text=True, check=True
    ).stdout
    return [
        line.strip()
        for line in table.splitlines()
        if line.split()[1:2] == ["ssh"] and f"-p {sshd.port} " in line
    ]


def test_a_host_whose_worker_cannot_start_fails_alone(
    run_product: ProductRunner,
    host_tools: HostTools,
    ssh_host: Sshd,
    contexts: dict[str, str],
    images: None,
) -> None:
    """It answers its first contact, then its worker ends at once: that host fails with
    what it said; the other host's results and the JSON report are there."""
    python = faulty_python(ssh_host, "exit")
    result = run_product(
        ["llem", "preflight", "--image", IMAGE, "--json", "r.json",
         "--host", f"context:{contexts['gpu']}", "--host", ssh_host.url,
         "--ssh-config", str(ssh_host.client_config), "--remote-python", str(python)],
        env=with_ssh(host_tools.env()), timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "INTERNALERROR" not in result.stdout + result.stderr
    name = f"127.0.0.1:{ssh_host.port}"
    hosts = by_host(read_json(host_tools.work / "r.json"))
    assert outcomes(hosts["llem-gpu"]) == {c: "passed" for c in TIER1 + TIER2 + TIER3}
    [failure] = hosts[name]["failures"]
    assert (failure["id"], failure["cause"]) == ("host-reachable", "host_unreachable")
    assert failure["message"] == (
        f"the pre-flight could not start on {name} ({python}, exit status 1): "
        "llem-test: cannot allocate memory"
    )
    assert failure["details"]["output"] == "llem-test: cannot allocate memory"
    assert failure["details"]["stage"] == "starting"
    assert (
        result.stdout.splitlines()[-1] == f"Docker pre-flight: 1 of 2 hosts ready; failed: {name}"
    )


def test_a_host_whose_worker_crashes_fails_alone(
    run_product: ProductRunner, host_tools: HostTools, ssh_host: Sshd, images: None
) -> None:
    """Its worker dies at its second check: that host fails with its last words, keeping the
    result it sent; the other host runs all its checks."""
    result = run_product(
        ["pytest", "--llem-preflight", "-p", "no:cacheprovider", "--llem-image", IMAGE,
         "--llem-json", "r.json", "--dist", "each",
         "--tx", ssh_tx(ssh_host, "good", sys.executable),
         "--tx", ssh_tx(ssh_host, "bad", faulty_python(ssh_host, "crash"))],
        env=no_docker_host(host_tools), timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    hosts = by_host(read_json(host_tools.work / "r.json"))
    assert outcomes(hosts["good"]) == {c: "passed" for c in TIER1 + TIER2 + TIER3}
    [failure] = hosts["bad"]["failures"]
    assert failure["cause"] == "host_unreachable"
    assert failure["message"] == "the connection to bad was lost: llem-test: the worker died"
    assert failure["details"]["stage"] == "running"
    assert outcomes(hosts["bad"]) == {"host-reachable": "failed", "docker-cli": "passed"}
    assert "Docker pre-flight: 1 of 2 hosts ready; failed: bad" in result.stdout


@pytest.mark.parametrize(("fault", "front"), [("stall-start", "llem"), ("stall-run", "pytest")])
def test_a_host_that_stops_answering_is_left_behind(
    run_product: ProductRunner,
    host_tools: HostTools,
    ssh_host: Sshd,
    contexts: dict[str, str],
    images: None,
    fault: str,
    front: str,
) -> None:
    """Its worker stops (before its checks, or at its second one): after the host timeout
    that host fails, the others' results are kept, and nothing of its session is left, here
    (ssh) or over there (its Python), once the run has returned."""
    python = faulty_python(ssh_host, fault)
    name = f"127.0.0.1:{ssh_host.port}" if front == "llem" else "stuck"
    if front == "llem":
        args = [
            "llem", "preflight", "--image", IMAGE, "--json", "r.json", "--host-timeout", "8",
            "--host", f"context:{contexts['gpu']}", "--host", ssh_host.url,
            "--ssh-config", str(ssh_host.client_config), "--remote-python", str(python),
        ]  # fmt: skip
        good = "llem-gpu"
    else:
        args = [
            "pytest", "--llem-preflight", "-p", "no:cacheprovider", "--llem-image", IMAGE,
            "--llem-json", "r.json", "--dist", "each", "--llem-host-timeout", "8",
            "--tx", ssh_tx(ssh_host, "good", sys.executable),
            "--tx", ssh_tx(ssh_host, name, python),
        ]  # fmt: skip
        good = "good"
    start = time.monotonic()
    result = run_product(args, env=no_docker_host(host_tools), timeout=90)
    elapsed = time.monotonic() - start
    assert result.returncode == 1, result.stdout + result.stderr
    # Nothing of the stopped host's session is left: its Python and its guard over there
    # (the test bed's sshd runs here), its ssh client here.
    assert [p for p in ssh_host.session_processes() if " sshd: " not in f" {p}"] == []
    assert ssh_clients_of(ssh_host) == []
    hosts = by_host(read_json(host_tools.work / "r.json"))
    assert outcomes(hosts[good]) == {c: "passed" for c in TIER1 + TIER2 + TIER3}
    [failure] = hosts[name]["failures"]
    assert (failure["id"], failure["cause"]) == ("host-reachable", "host_unreachable")
    assert failure["message"] == f"{name} did not answer within 8 s"
    assert "--host-timeout SECONDS" in failure["fix"]
    stage, checks = {
        "stall-start": ("starting", {"host-reachable": "failed"}),
        "stall-run": ("running", {"host-reachable": "failed", "docker-cli": "passed"}),
    }[fault]
    assert failure["details"]["stage"] == stage
    assert outcomes(hosts[name]) == checks
    assert elapsed < 8 + 40, elapsed
    deadline = time.monotonic() + 5  # (sshd's own processes of that session end right after)
    while ssh_host.session_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ssh_host.session_processes() == []


def test_an_interrupted_run_leaves_nothing_of_its_hosts_behind(
    host_tools: HostTools, ssh_host: Sshd, contexts: dict[str, str], images: None
) -> None:
    """Ctrl-C while a host is stuck (and the host timeout far off): llem ends every host's
    worker, the stuck one included, before it returns."""
    python = faulty_python(ssh_host, "stall-run")
    cmd = [
        sys.executable, "-m", "pytest_llem", "preflight", "--image", IMAGE,
        "--host", f"context:{contexts['gpu']}", "--host", ssh_host.url,
        "--ssh-config", str(ssh_host.client_config), "--remote-python", str(python),
    ]  # fmt: skip
    with popen_in_session(cmd, no_docker_host(host_tools), host_tools.work) as llem:
        deadline = time.monotonic() + 60
        while not (python.parent / "stopped").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert llem.poll() is None and (python.parent / "stopped").exists()
        assert ssh_clients_of(ssh_host) != []
        llem.send_signal(signal.SIGINT)
        _, err = llem.communicate(timeout=60)
    assert (llem.returncode, err.splitlines()[-1]) == (130, "llem: stopped by Ctrl-C")
    assert [p for p in ssh_host.session_processes() if " sshd: " not in f" {p}"] == []
    assert ssh_clients_of(ssh_host) == []
