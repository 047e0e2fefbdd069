"""An experiment's time limit and what it leaves behind, against the real engine: a hung
experiment is stopped and the study goes on; a local experiment's background processes do not
outlive it; a container is removed with its anonymous volumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from testbed import (
    HOSTILE_PATH,
    Engine,
    HostTools,
    ProductRunner,
    build_hostile_image,
    build_workload_image,
)

WORKLOAD = "llem-test/workload:1"
HOSTILE = "llem-test/hostile:1"
VOLUMED = "llem-test/volumed:1"  # the hostile image, declaring `VOLUME /data`
LIMIT = "execution: {experiment_timeout_s: 2}\n"
HANG_LIMIT_S = 90  # far beyond what these runs take: a run still going then is hung

# A local experiment that leaves a background process running (its pid in bg.pid) and ends.
LEAVES_A_CHILD = """\
import json, os, subprocess, sys
config = json.load(open(os.environ["LLEM_CONFIG_PATH"]))
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
open("bg.pid", "w").write(str(child.pid))
json.dump({"ok": True}, open(config["result_path"], "w"))
"""
# The next experiment: fails while that process still runs (it would hold the GPU).
CHECKS_THE_CHILD = """\
import json, os
config = json.load(open(os.environ["LLEM_CONFIG_PATH"]))
pid = int(open("bg.pid").read())
try:
    state = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0]
except OSError:
    state = "gone"
if state not in ("gone", "Z"):
    raise SystemExit(f"the last experiment's process {pid} is still running")
json.dump({"ok": True}, open(config["result_path"], "w"))
"""
HANGS = "import time; time.sleep(300)"
WRITES_A_RESULT = """\
import json, os
config = json.load(open(os.environ["LLEM_CONFIG_PATH"]))
json.dump({"ok": True}, open(config["result_path"], "w"))
"""


@pytest.fixture(scope="module")
def images(gpu_engine: Engine) -> None:
    build_workload_image(gpu_engine, WORKLOAD)
    build_hostile_image(gpu_engine, HOSTILE)
    gpu_engine.docker("create", "--name", "llem-test-volumed", HOSTILE)
    try:
        gpu_engine.docker("commit", "--change", 'VOLUME ["/data"]', "llem-test-volumed", VOLUMED)
    finally:
        gpu_engine.docker("rm", "-f", "llem-test-volumed")


def manifest_of(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    return data


def volumes(engine: Engine) -> set[str]:
    return set(engine.docker("volume", "ls", "-q").stdout.split())


def llem_run(
    run_product: ProductRunner, host_tools: HostTools, body: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    (host_tools.work / "study.yaml").write_text(body)
    args = ["llem", "run", "study.yaml", "--skip-preflight", "--output", "out"]
    return run_product(args, env=env, timeout=HANG_LIMIT_S)


def docker_study(*experiments: dict[str, Any], extra: str = LIMIT) -> str:
    lines = "".join(f"  - {json.dumps(e)}\n" for e in experiments)
    return f"name: lim\nrunners: {{vllm: 'docker:{WORKLOAD}'}}\n{extra}experiments:\n{lines}"


def local_study(*commands: list[str], extra: str = LIMIT) -> str:
    lines = "".join(
        f"  - {json.dumps({'model': f'm{n}', 'backend': 'pytorch', 'command': c})}\n"
        for n, c in enumerate(commands, 1)
    )
    return f"name: lim\nrunners: {{pytorch: local}}\n{extra}experiments:\n{lines}"


def hang(image: str = HOSTILE) -> dict[str, Any]:
    return {"model": "hang", "backend": "vllm", "image": image,
            "command": [HOSTILE_PATH, "sleep", "300"]}  # fmt: skip


PLAIN = {"model": "m", "backend": "vllm"}


def assert_timed_out(record: dict[str, Any], what: str) -> None:
    assert (record["status"], record["cause"], record["exit_status"]) == (
        "failed", "experiment_timeout", None,
    ), record  # fmt: skip
    assert record["message"] == (
        f"still running after execution.experiment_timeout_s (2 s): stopped, {what}"
    )
    assert "execution.experiment_timeout_s" in record["fix"] and record["url"]
    assert 2 <= record["duration_s"] < 30, record


def test_a_hung_local_experiment_is_stopped_and_the_study_goes_on(
    run_product: ProductRunner, host_tools: HostTools
) -> None:
    (host_tools.work / "w.py").write_text(WRITES_A_RESULT)
    body = local_study([sys.executable, "-c", HANGS], [sys.executable, "w.py"])
    result = llem_run(run_product, host_tools, body, host_tools.env())
    assert result.returncode == 1, result.stderr
    hung, after = manifest_of(host_tools.work / "out")["experiments"]
    assert_timed_out(hung, "its processes were killed")
    assert (after["status"], after["result"]) == ("ok", {"ok": True})
    assert "[experiment_timeout] still running after execution.experiment_timeout_s" in (
        result.stderr
    )


def test_a_hung_container_is_removed_with_its_volume_and_the_study_goes_on(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    before = volumes(gpu_engine)
    result = llem_run(
        run_product, host_tools, docker_study(hang(VOLUMED), PLAIN), host_tools.env(gpu_engine)
    )
    assert result.returncode == 1, result.stderr
    hung, after = manifest_of(host_tools.work / "out")["experiments"]
    assert_timed_out(hung, "its container was removed")
    assert hung["cleanup"] is None
    assert after["status"] == "ok", after
    assert gpu_engine.containers() == []
    assert volumes(gpu_engine) == before  # `docker rm -f` alone would leave /data's volume


def test_a_hung_container_on_a_remote_daemon_is_removed_and_the_study_goes_on(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    before = volumes(gpu_engine)
    env = host_tools.env(docker_host=gpu_engine.enable_tcp())
    result = llem_run(run_product, host_tools, docker_study(hang(VOLUMED), PLAIN), env)
    assert result.returncode == 1, result.stderr
    hung, after = manifest_of(host_tools.work / "out")["experiments"]
    assert_timed_out(hung, "its container was removed")
    assert hung["cleanup"] is None
    assert after["status"] == "ok", after
    assert gpu_engine.containers() == []
    assert volumes(gpu_engine) == before


def test_an_experiment_within_its_limit_is_not_stopped(
    run_product: ProductRunner, host_tools: HostTools
) -> None:
    (host_tools.work / "slow.py").write_text(f"import time\ntime.sleep(1)\n{WRITES_A_RESULT}")
    body = local_study([sys.executable, "slow.py"])
    result = llem_run(run_product, host_tools, body, host_tools.env())
    assert result.returncode == 0, result.stderr
    [record] = manifest_of(host_tools.work / "out")["experiments"]
    assert (record["status"], record["exit_status"], record["cause"]) == ("ok", 0, None)


def test_a_local_experiments_leftover_processes_are_killed_before_the_next(
    run_product: ProductRunner, host_tools: HostTools
) -> None:
    (host_tools.work / "leave.py").write_text(LEAVES_A_CHILD)
    (host_tools.work / "check.py").write_text(CHECKS_THE_CHILD)
    body = local_study([sys.executable, "leave.py"], [sys.executable, "check.py"], extra="")
    result = llem_run(run_product, host_tools, body, host_tools.env())
    assert result.returncode == 0, result.stderr
    first, second = manifest_of(host_tools.work / "out")["experiments"]
    pid = int((host_tools.work / "bg.pid").read_text())
    assert (first["status"], second["status"]) == ("ok", "ok"), second
    assert first["leftovers_killed"] == [
        {"pid": pid, "command": f"{sys.executable} -c import time; time.sleep(300)"}
    ]
    assert second["leftovers_killed"] == []
    assert "001 m1 (pytorch, local) ... ok" in result.stderr
    assert "killed 1 process(es) it left running" in result.stderr
    assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def test_a_local_docker_run_leaves_no_anonymous_volume(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    """`docker run --rm` removes the anonymous volumes of a container that ends by itself."""
    before = volumes(gpu_engine)
    experiment = {"model": "m", "backend": "vllm", "image": VOLUMED,
                  "command": [HOSTILE_PATH, "result"]}  # fmt: skip
    result = llem_run(
        run_product, host_tools, docker_study(experiment, extra=""), host_tools.env(gpu_engine)
    )
    assert result.returncode == 0, result.stderr
    assert volumes(gpu_engine) == before
