"""Slurm, end to end, on a real one-node Slurm (tests/testbed/slurm.py) with two fake GPUs: the
example prolog and health check, a pre-flight inside a job step, and `llem run --slurm`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testbed import DEFAULT_GPUS, Engine, GpuScenario, HostTools
from testbed.host import SOURCE_TREE, popen_in_session
from testbed.scenario import Gpu, GpuProcess, nvidia_smi_script
from testbed.slurm import Slurm, slurm_unavailable_reason

PROLOG = SOURCE_TREE / "examples" / "slurm" / "prolog.sh"
HEALTH_CHECK = SOURCE_TREE / "examples" / "slurm" / "healthcheck.sh"
IMAGE = "llem-test/slurm:1"
FIRST, SECOND = DEFAULT_GPUS
TRAINER = GpuProcess(pid=31337, name="python3", used_mib=20480)
# An experiment: sleeps as its params say, then writes what it was given.
WORKLOAD = """\
import json, os, time
config = json.load(open(os.environ["LLEM_CONFIG_PATH"]))
time.sleep(float(config["params"].get("sleep", 0)))
seen = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
json.dump({"energy_j": 1.0, "env": seen}, open(config["result_path"], "w"))
"""

pytestmark = pytest.mark.skipif(
    slurm_unavailable_reason() is not None and os.environ.get("CI", "").lower() != "true",
    reason=slurm_unavailable_reason() or "",
)


@dataclasses.dataclass
class Cluster:
    slurm: Slurm
    tools: HostTools

    @property
    def env(self) -> dict[str, str]:
        """A user's shell on the login node: the host's tools, then the system's."""
        return self.slurm.client_env(self.tools.env())

    def busy(self, *indices: int) -> None:
        """A compute process on each of these GPUs (the others idle)."""
        gpus = tuple(
            dataclasses.replace(gpu, processes=(TRAINER,), utilization_pct=98)
            if n in indices
            else gpu
            for n, gpu in enumerate(DEFAULT_GPUS)
        )
        self.tools.use_scenario(GpuScenario(gpus=gpus))

    def run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.slurm.run(argv, env=self.env, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(_host_base: Path) -> Iterator[Cluster]:
    reason = slurm_unavailable_reason()
    if reason is not None:  # (CI=true: required)
        pytest.fail(f"{reason} (CI=true: the Slurm test bed is required)", pytrace=False)
    root = Path(tempfile.mkdtemp(dir=_host_base))
    root.chmod(0o755)
    tools = HostTools(root / "host")
    tools.install("llem", f'#!/bin/sh\nexec {sys.executable} -m pytest_llem "$@"\n')
    script_env = {
        "PATH": f"{tools.bin}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": str(SOURCE_TREE),
        "HOME": str(tools.home),
        "XDG_CACHE_HOME": str(tools.home / ".cache"),
    }
    slurm = Slurm(root / "slurm", prolog=PROLOG, script_env=script_env).start()
    try:
        yield Cluster(slurm, tools)
    finally:
        slurm.stop()  # raises when a daemon or a job's process is left


@pytest.fixture(autouse=True)
def _fresh(cluster: Cluster) -> Iterator[None]:
    """Each test starts on an idle, healthy node with the example prolog, and leaves no job."""
    cluster.tools.use_scenario(GpuScenario())
    cluster.slurm.use_prolog(PROLOG)
    cluster.slurm.resume()
    yield
    left = cluster.slurm.wait_no_jobs(timeout=30)
    assert left == [], f"jobs left in the queue: {left}"


def write_study(work: Path, *experiments: str, slurm: str = "{gpus_per_experiment: 1}") -> Path:
    (work / "w.py").write_text(WORKLOAD)
    command = f"command: [{sys.executable}, w.py]"
    lines = [
        f"  - {{model: {e}, backend: pytorch, {command}"
        + (", params: {sleep: 60}}" if e == "slow" else "}")
        for e in experiments
    ]
    path = work / "study.yaml"
    text = f"name: slurmy\nexecution:\n  slurm: {slurm}\nexperiments:\n" + "\n".join(lines) + "\n"
    path.write_text(text)
    return path


def in_service(cluster: Cluster) -> bool:
    """The node takes jobs (idle, or finishing the last one) and has no reason set."""
    state, reason = cluster.slurm.node_state()
    return state in ("idle", "completing", "mixed", "allocated") and reason == "none"


def manifest_of(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    return data


# -- the prolog -------------------------------------------------------------------------------


def test_a_healthy_node_runs_a_one_gpu_job_through_the_prolog(cluster: Cluster) -> None:
    done = cluster.run(["srun", "--gres=gpu:1", "sh", "-c", "echo gpus=$SLURM_STEP_GPUS"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "gpus=0"
    assert in_service(cluster)


def test_a_busy_gpu_given_to_the_job_drains_the_node_naming_gpu_idle(cluster: Cluster) -> None:
    cluster.busy(0)
    done = cluster.run(["srun", "--gres=gpu:1", "true"])
    assert done.returncode != 0
    assert "prolog failed" in done.stderr.lower()
    state, reason = cluster.slurm.node_state()
    assert state.startswith("drain"), (state, reason)
    assert reason.startswith("llem: [gpu-idle] "), reason
    assert "GPU 0: PID 31337 python3" in reason
    assert len(reason.encode()) <= 255


def test_a_busy_gpu_outside_the_allocation_lets_the_job_run(cluster: Cluster) -> None:
    cluster.busy(1)
    done = cluster.run(["srun", "--gres=gpu:1", "sh", "-c", "echo gpus=$SLURM_STEP_GPUS"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "gpus=0"
    assert in_service(cluster)


# -- inside a job step ------------------------------------------------------------------------


@contextlib.contextmanager
def gpu_0_held(cluster: Cluster) -> Iterator[None]:
    """Another job holds GPU 0 (until the block ends): a step started in the block gets GPU 1."""
    holder = cluster.run(
        ["sbatch", "--parsable", "--gres=gpu:1", "--output=/dev/null", "--wrap", "sleep 120"]
    )
    assert holder.returncode == 0, holder.stderr
    try:
        state = ["squeue", "-h", "-j", holder.stdout.strip(), "-o", "%T"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "RUNNING" not in cluster.run(state).stdout:
            time.sleep(0.2)
        assert "RUNNING" in cluster.run(state).stdout
        yield
    finally:
        cluster.run(["scancel", holder.stdout.strip()])


def test_inside_a_step_the_dry_run_judges_the_allocation_alone(cluster: Cluster) -> None:
    cluster.busy(1)
    study = write_study(cluster.tools.work, "gpt2")
    report = cluster.tools.work / "in-step.json"
    step = f"llem run --dry-run {study} && llem preflight {study} --json {report}"
    done = cluster.run(["srun", "--gres=gpu:1", "sh", "-c", step])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gpu-idle" not in done.stderr
    data = json.loads(report.read_text())
    idle = next(c for c in data["checks"] if c["id"] == "gpu-idle")
    assert (idle["outcome"], [g["index"] for g in idle["details"]["gpus"]]) == ("passed", [0])
    slurm = data["host"]["slurm"]
    assert slurm["gpus"] == [0] and slurm["source"] == "SLURM_STEP_GPUS"
    assert slurm["job_id"].isdigit() and slurm["node"] == cluster.slurm.node
    # The same study outside any job judges every GPU: GPU 1 is busy.
    outside = cluster.run(["llem", "run", "--dry-run", str(study)])
    assert outside.returncode == 1
    assert "[gpu-idle]" in outside.stderr and "GPU 1" in outside.stderr


def test_inside_a_step_a_docker_probe_requests_the_allocated_gpu_by_host_index(
    cluster: Cluster, gpu_engine: Engine
) -> None:
    gpu_engine.build_image(IMAGE)
    report = cluster.tools.work / "docker-step.json"
    env = {**cluster.env, "DOCKER_HOST": gpu_engine.docker_host}
    step = ["srun", "--gres=gpu:1", "llem", "preflight", "--image", IMAGE]
    step += ["--json", str(report)]
    with gpu_0_held(cluster):  # the step gets GPU 1
        done = cluster.slurm.run(step, env=env, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(report.read_text())
    probe = next(c for c in data["checks"] if c["id"] == f"gpu-in-container[{IMAGE}]")
    assert probe["details"]["gpu_request"] == "--gpus device=1"
    [seen] = probe["details"]["gpus"]  # GPU 1 alone, by its UUID
    assert seen["uuid"] == SECOND.uuid
    assert data["host"]["slurm"]["gpus"] == [1]


def test_a_step_whose_nvidia_smi_numbers_its_gpus_from_0_is_judged_in_host_indices(
    cluster: Cluster, gpu_engine: Engine
) -> None:
    """With ConstrainDevices, nvidia-smi inside a job lists only the job's GPUs, from 0: here
    the step's GPU 1 is "GPU 0" (minor number 1) to the step's nvidia-smi. Its GPU is judged
    as GPU 1, and the container the daemon starts with `--gpus device=1` is found to be it."""
    gpu_engine.build_image(IMAGE)
    view = cluster.tools.work / "job-view"
    view.mkdir(exist_ok=True)
    view.chmod(0o755)

    def constrained(gpu: Gpu) -> None:  # the step's view of the node
        script = view / "nvidia-smi"
        script.write_text(
            nvidia_smi_script(GpuScenario(), gpus=[dataclasses.replace(gpu, minor=1)])
        )
        script.chmod(0o755)

    constrained(SECOND)
    study = write_study(cluster.tools.work, "gpt2")
    local, image = cluster.tools.work / "view-local.json", cluster.tools.work / "view-image.json"
    env = {**cluster.env, "DOCKER_HOST": gpu_engine.docker_host}
    in_view = f"PATH={view}:$PATH; export PATH; "
    steps = (
        f"{in_view}llem preflight {study} --json {local} && "
        f"llem preflight --image {IMAGE} --json {image}"
    )
    with gpu_0_held(cluster):  # the steps get GPU 1
        done = cluster.slurm.run(["srun", "--gres=gpu:1", "sh", "-c", steps], env=env, timeout=180)
        constrained(dataclasses.replace(SECOND, processes=(TRAINER,), utilization_pct=98))
        busy = cluster.slurm.run(
            ["srun", "--gres=gpu:1", "sh", "-c", f"{in_view}llem preflight {study}"],
            env=env, timeout=180,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(local.read_text())
    idle = next(c for c in data["checks"] if c["id"] == "gpu-idle")
    assert idle["outcome"] == "passed" and idle["reason"] == "GPU 1 idle"
    assert [g["uuid"] for g in idle["details"]["gpus"]] == [SECOND.uuid]
    assert idle["details"]["job_view"]["host_index"] == {"0": 1}
    probe = json.loads(image.read_text())
    check = next(c for c in probe["checks"] if c["id"] == f"gpu-in-container[{IMAGE}]")
    assert check["outcome"] == "passed" and check["details"]["gpu_request"] == "--gpus device=1"
    assert [g["uuid"] for g in check["details"]["gpus"]] == [SECOND.uuid]
    assert busy.returncode == 1, busy.stdout + busy.stderr
    assert "[gpu-idle]" in busy.stdout and "GPU 1: PID 31337 python3" in busy.stdout


# -- the health check -------------------------------------------------------------------------


def test_the_health_check_drains_a_node_with_a_busy_gpu_and_resumes_it_once_idle(
    cluster: Cluster,
) -> None:
    cluster.busy(1)
    start = time.monotonic()
    checked = cluster.slurm.run_health_check(HEALTH_CHECK)
    assert time.monotonic() - start < 60  # Slurm kills a health check after 60 s
    assert checked.returncode == 1, checked.stderr
    state, reason = cluster.slurm.node_state()
    assert state.startswith("drain") and reason.startswith("llem: [gpu-idle] ")
    assert "GPU 1" in reason  # every GPU of the node is checked, not a job's
    cluster.tools.use_scenario(GpuScenario())
    assert cluster.slurm.run_health_check(HEALTH_CHECK).returncode == 0
    assert in_service(cluster)


def test_reason_prints_one_line_on_failure_and_nothing_on_success(cluster: Cluster) -> None:
    ok = cluster.run(["llem", "preflight", "--measurement-only", "--reason"])
    assert (ok.returncode, ok.stdout) == (0, "")
    cluster.busy(0, 1)
    bad = cluster.run(["llem", "preflight", "--measurement-only", "--reason"])
    assert bad.returncode == 1
    [line] = bad.stdout.splitlines()
    assert line.startswith("llem: [gpu-idle] ") and len(line.encode()) <= 255


# -- llem run --slurm -------------------------------------------------------------------------


def test_run_slurm_runs_each_experiment_as_a_job_and_names_it_in_the_manifest(
    cluster: Cluster,
) -> None:
    study = write_study(cluster.tools.work, "a", "b", "c")
    run_dir = cluster.tools.work / "run"
    done = cluster.run(["llem", "run", "--slurm", str(study), "--output", str(run_dir)])
    assert done.returncode == 0, done.stderr
    assert "submitted 3 job(s)" in done.stderr and "done on" in done.stderr
    experiments = manifest_of(run_dir)["experiments"]
    assert [e["status"] for e in experiments] == ["ok"] * 3
    ids = [e["slurm_job_id"] for e in experiments]
    assert all(i and i.isdigit() for i in ids) and len(set(ids)) == 3
    assert {e["node"] for e in experiments} == {cluster.slurm.node}
    for e in experiments:  # each ran in its own job, on the GPU it was given
        assert e["result"]["env"]["SLURM_JOB_ID"] == e["slurm_job_id"]
        assert e["preflight"]["status"] == "passed"
        assert e["preflight"]["host"]["slurm"]["job_id"] == e["slurm_job_id"]


def test_ctrl_c_cancels_every_job_it_submitted(cluster: Cluster) -> None:
    study = write_study(cluster.tools.work, "slow", "slow", "slow")
    run_dir = cluster.tools.work / "stopped"
    argv = [sys.executable, "-m", "pytest_llem", "run", "--slurm", str(study)]
    proc = popen_in_session([*argv, "--output", str(run_dir)], cluster.env, cluster.tools.work)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(run_dir.glob("*.log"))) < 2:
            time.sleep(0.2)  # two experiments run (one a GPU), the third job waits for a GPU
        assert len(list(run_dir.glob("*.log"))) == 2
        assert len(cluster.slurm.queued_jobs()) == 3
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert "cancelled job(s)" in err
    assert cluster.slurm.queued_jobs() == []  # at once: llem waited for the queue to let go
    experiments = manifest_of(run_dir)["experiments"]
    assert {e["status"] for e in experiments} == {"interrupted"}
    assert all(e["slurm_job_id"] for e in experiments)
    # The two experiments that had started were stopped on their node, by scancel's SIGTERM.
    stopped = [e["message"] for e in experiments if e.get("node")]
    assert stopped == [f"interrupted by SIGTERM on {cluster.slurm.node}"] * 2


def test_no_wait_returns_after_submitting_and_resume_collects(cluster: Cluster) -> None:
    study = write_study(cluster.tools.work, "a", "b")
    run_dir = cluster.tools.work / "later"
    done = cluster.run(
        ["llem", "run", "--slurm", "--no-wait", str(study), "--output", str(run_dir)]
    )
    assert done.returncode == 0, done.stderr
    assert f"llem run --resume {run_dir}" in done.stderr
    assert not (run_dir / "manifest.json").exists()
    resumed = cluster.run(["llem", "run", "--resume", str(run_dir)])
    assert resumed.returncode == 0, resumed.stderr
    experiments = manifest_of(run_dir)["experiments"]
    assert [(e["status"], bool(e["slurm_job_id"])) for e in experiments] == [("ok", True)] * 2


def test_a_job_that_fails_its_nodes_preflight_is_recorded_with_its_findings(
    cluster: Cluster,
) -> None:
    cluster.slurm.use_prolog(None)  # no prolog: the job's own pre-flight finds it
    cluster.busy(0, 1)
    study = write_study(cluster.tools.work, "a")
    run_dir = cluster.tools.work / "refused"
    done = cluster.run(["llem", "run", "--slurm", str(study), "--output", str(run_dir)])
    assert done.returncode == 1
    [record] = manifest_of(run_dir)["experiments"]
    assert (record["status"], record["cause"]) == ("failed", "gpu_busy")
    assert record["message"].startswith(
        f"the pre-flight failed on {cluster.slurm.node}: [gpu-idle]"
    )
    assert [f["id"] for f in record["preflight"]["failures"]] == ["gpu-idle"]
    assert not (run_dir / "001_result.json").exists()  # the experiment never started
