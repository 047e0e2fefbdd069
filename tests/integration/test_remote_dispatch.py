"""`llem run` against a remote daemon (tcp://127.0.0.1 to a test-bed engine): no bind mount.

The proof that nothing was mounted: llem runs in a private mount namespace with a tmpfs over
its output directory. The daemon, in the host's namespace, cannot see that tmpfs, so a result
that shows up there came back through the Docker API.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from testbed import Engine, HookBehaviour, HostTools, ProductRunner, ScenarioSetter, run
from testbed.workload import build_workload_image

WORKLOAD = "llem-test/workload:1"
PLANTER = "llem-test/planter:1"
# Leaves what a hostile or careless container could leave in /run/llem, and a valid result.
PLANTER_SCRIPT = """#!/bin/sh
cd /run/llem
ln -s /etc/passwd link.txt
busybox mkfifo pipe
mkdir -p sub && echo nested > sub/inner.txt
echo '{"planted": true}' > 001_config.json
echo '{"energy_j": 1.5}' > 001_result.json
echo note > notes.txt
"""
DRIVER_NOT_LOADED = "nvidia-container-cli: initialization error: nvml error: driver not loaded"


@pytest.fixture(scope="module")
def images(gpu_engine: Engine) -> None:
    build_workload_image(gpu_engine, WORKLOAD)
    gpu_engine.build_image(
        PLANTER, cmd=["/usr/local/bin/plant"], files={"/usr/local/bin/plant": PLANTER_SCRIPT}
    )


def study(host_tools: HostTools, *experiments: str, image: str = WORKLOAD) -> None:
    lines = "".join(f"  - {e}\n" for e in experiments)
    (host_tools.work / "study.yaml").write_text(
        f"name: far\nrunners: {{vllm: 'docker:{image}'}}\nexperiments:\n{lines}"
    )


def manifest_of(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    return data


def events(engine: Engine, since: float) -> list[str]:
    out = engine.docker(
        "events", f"--since={since:.6f}", f"--until={time.time():.6f}",
        "--filter=type=container", "--format={{.Action}} {{.Actor.Attributes.name}}",
    ).stdout  # fmt: skip
    return [line for line in out.splitlines() if line.split(" ")[0] != "exec_create"]


def test_remote_run_copies_the_result_back(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    study(host_tools, "{model: m1, backend: vllm}", "{model: m2, backend: vllm, id: second}")
    env = host_tools.env(docker_host=gpu_engine.enable_tcp())
    since = time.time()
    result = run_product(["llem", "run", "study.yaml", "--output", "out"], env=env)
    assert result.returncode == 0, result.stderr
    run_dir = host_tools.work / "out"
    records = manifest_of(run_dir)["experiments"]
    assert [(r["id"], r["status"], r["exit_status"]) for r in records] == [
        ("001", "ok", 0),
        ("second", "ok", 0),
    ]
    # The workload read the config at the path a local run gives it, and wrote beside it.
    first = records[0]["result"]
    assert first["energy_j"] == 12.5
    # Its GPUs are the remote daemon's: not attested, and said so.
    attestation = records[0]["attestation"]
    assert attestation["status"] == "unverified"
    assert "remote Docker daemon (tcp://127.0.0.1:" in attestation["reasons"][0]["message"]
    assert first["config"]["result_path"] == "/run/llem/001_result.json"
    assert json.loads((run_dir / "second_result.json").read_text())["config"]["id"] == "second"
    assert (run_dir / "001.log").read_text() == "llem-workload: done\n"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "001.log", "001_config.json", "001_result.json", "manifest.json",
        "second.log", "second_config.json", "second_result.json",
    ]  # fmt: skip
    # create, copy in, start, copy back, remove: no `docker run`, no container left.
    actions = [
        line for line in events(gpu_engine, since) if re.search(r" llem-far-[0-9a-f]{8}-001$", line)
    ]
    steps = [a.split()[0] for a in actions if a.split()[0] not in ("attach", "detach", "kill")]
    assert steps == ["create", "extract-to-dir", "start", "die", "archive-path", "destroy"], actions
    assert gpu_engine.containers() == []


def test_no_bind_mount_is_used(host_tools: HostTools, gpu_engine: Engine, images: None) -> None:
    """In a mount namespace of its own, with a tmpfs over the output directory, llem gets the
    result through the API; a local daemon (bind mount) cannot deliver it there."""
    study(host_tools, "{model: m, backend: vllm}")
    out, kept = host_tools.work / "out", host_tools.work / "kept"
    out.mkdir()
    llem = [sys.executable, "-m", "pytest_llem", "run", "study.yaml", "--skip-preflight"]
    script = (
        f"mount -t tmpfs llem-private {shlex.quote(str(out))} || exit 99\n"
        f"{shlex.join([*llem, '--output', str(out / 'run')])}\n"
        f"rc=$?\ncp -a {shlex.quote(str(out / 'run'))} {shlex.quote(str(kept))}\nexit $rc\n"
    )
    unshare = shutil.which("unshare", path="/usr/bin:/bin") or "unshare"
    command = [unshare, "-m", "--propagation", "private", "sh", "-c", script]

    system = {"PATH": f"{host_tools.bin}:/usr/sbin:/usr/bin:/sbin:/bin"}  # sh, mount, cp
    tcp = host_tools.env(docker_host=gpu_engine.enable_tcp(), extra=system)
    remote = run(command, tcp, cwd=host_tools.work, timeout=120)
    assert remote.returncode == 0, remote.stderr
    assert json.loads((kept / "001_result.json").read_text())["energy_j"] == 12.5
    assert list(out.iterdir()) == []  # nothing reached the host's view of the directory

    shutil.rmtree(kept)
    local = run(command, host_tools.env(gpu_engine, extra=system), cwd=host_tools.work, timeout=120)
    assert local.returncode == 1, local.stderr
    [record] = manifest_of(kept)["experiments"]
    # The bind mount showed the container the directory the daemon sees (the host's), not
    # llem's tmpfs: the config llem wrote was not there.
    assert (
        record["message"] == "exit status 2: llem-workload: cannot read /run/llem/001_config.json"
    )
    assert list((out / "run").iterdir()) == []


def test_only_regular_files_come_back(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    study(host_tools, "{model: m, backend: vllm}", image=PLANTER)
    env = host_tools.env(docker_host=gpu_engine.enable_tcp())
    result = run_product(
        ["llem", "run", "study.yaml", "--output", "out", "--skip-preflight"], env=env
    )
    assert result.returncode == 0, result.stderr
    run_dir = host_tools.work / "out"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "001.log", "001_config.json", "001_result.json", "manifest.json", "notes.txt",
    ]  # fmt: skip
    assert not any(p.is_symlink() for p in run_dir.iterdir())
    # llem's own config is never replaced by the container's copy.
    assert json.loads((run_dir / "001_config.json").read_text())["id"] == "001"
    assert manifest_of(run_dir)["experiments"][0]["result"] == {"energy_j": 1.5}
    log = (run_dir / "001.log").read_text().splitlines()
    assert sorted(log) == [
        "llem: not copied back: 001_config.json: the run directory has that name already: kept",
        "llem: not copied back: link.txt: a symbolic link",
        "llem: not copied back: pipe: not a regular file",
        "llem: not copied back: sub: a directory (nothing in it is copied)",
    ]


def test_gpu_failure_on_a_remote_daemon_is_diagnosed(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    scenario: ScenarioSetter,
    images: None,
) -> None:
    study(host_tools, "{model: m, backend: vllm}")
    scenario(hook=HookBehaviour(mode="fail", message=DRIVER_NOT_LOADED))
    env = host_tools.env(docker_host=gpu_engine.enable_tcp())
    result = run_product(
        ["llem", "run", "study.yaml", "--output", "out", "--skip-preflight"], env=env
    )
    assert result.returncode == 1, result.stderr
    [record] = manifest_of(host_tools.work / "out")["experiments"]
    assert (record["status"], record["cause"]) == ("failed", "driver_not_loaded"), record
    assert gpu_engine.containers() == []


def test_absent_image_fails_at_create(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    study(host_tools, "{model: m, backend: vllm}", image="llem-test/absent:1")
    env = host_tools.env(docker_host=gpu_engine.enable_tcp())
    result = run_product(
        ["llem", "run", "study.yaml", "--output", "out", "--skip-preflight"], env=env
    )
    assert result.returncode == 1, result.stderr
    [record] = manifest_of(host_tools.work / "out")["experiments"]
    assert record["status"] == "failed"
    assert record["cause"] in ("registry_unreachable", "image_not_found"), record
    assert "llem-test/absent" in (host_tools.work / "out" / "001.log").read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_removes_the_remote_container(
    host_tools: HostTools, gpu_engine: Engine, images: None, sig: signal.Signals
) -> None:
    study(host_tools, "{model: m, backend: vllm, params: {x: sleep-me}}")
    env = host_tools.env(docker_host=gpu_engine.enable_tcp())
    proc = subprocess.Popen(
        [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, "
         "signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])", sys.executable, "-m",
         "pytest_llem", "run", "study.yaml", "--skip-preflight", "--output", "out"],
        cwd=host_tools.work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not gpu_engine.docker("ps", "-q").stdout.strip():
        assert time.monotonic() < deadline, "the experiment's container never started"
        time.sleep(0.1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert gpu_engine.containers() == []
    [record] = manifest_of(host_tools.work / "out")["experiments"]
    assert record["status"] == "interrupted"
