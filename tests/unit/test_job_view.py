"""A Slurm job whose devices a cgroup constrains: its `nvidia-smi` lists only the job's GPUs,
numbered from 0, while SLURM_JOB_GPUS names host indices. The measurement checks and the
attestation judge the job's GPUs under their host indices, matched by device minor number
(or in allocation order where minors are not shown); a GPU that is not there stays missing.

The views are cut from a real 8x A100 report: nvidia-smi in such a job prints the sections
of the GPUs it may open, each with its own minor number (/dev/nvidiaN)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from testbed.captures import verbatim, with_value

from pytest_llem.domain import measurement
from pytest_llem.domain.allocation import Allocation, allocation_of, in_host_indices, job_view
from pytest_llem.domain.attestation import Snapshot, judge
from pytest_llem.domain.gpu_state import parse_states
from pytest_llem.domain.nvidia_smi import parse_q
from pytest_llem.domain.records import CommandResult, Endpoint, HostFacts
from pytest_llem.domain.report import CheckResult

A100_8 = verbatim("smi-q/nvidia-smi-q_535.129.03_8x-a100-sxm4-40gb.txt")
PERSISTENCE = ("Persistence Mode",)
MINOR = ("Minor Number",)


def healthy() -> str:
    text = A100_8
    for gpu in range(8):
        text = with_value(text, gpu, PERSISTENCE, "Enabled")
    return text


def view_of(text: str, keep: list[int]) -> str:
    """What `nvidia-smi -q` prints where only the host GPUs ``keep`` may be opened."""
    head, *sections = text.split("\nGPU ")
    head = head.replace(
        "Attached GPUs                             : 8", f"Attached GPUs{' ' * 29}: {len(keep)}"
    )
    return "\nGPU ".join([head, *(sections[i] for i in keep)])


def job(gpus: str, visible: str = "0,1") -> Allocation:
    found = allocation_of(
        {"SLURM_JOB_ID": "42", "SLURM_JOB_GPUS": gpus, "CUDA_VISIBLE_DEVICES": visible}
    )
    assert found is not None
    return found


def host_of(text: str, allocation: Allocation | None = None) -> HostFacts:
    """Host facts of `nvidia-smi -q` ``text`` read inside ``allocation``, as `facts` makes them."""
    smi = CommandResult(("nvidia-smi", "-q"), 0, text)
    info = parse_q(text)
    view = job_view(info.gpus, allocation)
    info = dataclasses.replace(info, gpus=list(in_host_indices(info.gpus, view)))
    sock = Endpoint("unix:///var/run/docker.sock")
    return HostFacts(sock, "/usr/bin/docker", None, {}, smi, info, job_view=view)


def said(verdict: CheckResult) -> str:
    return verdict.finding.message if verdict.finding else verdict.reason


# -- matching ----------------------------------------------------------------------------------


def test_the_view_takes_host_indices_by_device_minor_number() -> None:
    states = parse_states(view_of(healthy(), [4, 5]))
    assert [s.index for s in states] == [0, 1] and [s.minor for s in states] == [4, 5]
    view = job_view(states, job("4,5"))
    assert view is not None and view["host_index"] == {"0": 4, "1": 5}
    assert view["note"] == (
        "this job's nvidia-smi numbers its GPUs from 0 (devices constrained by a cgroup): "
        "GPU 0,1 here are host GPU 4,5 (SLURM_JOB_GPUS), matched by device minor number"
    )
    moved = in_host_indices(states, view)
    assert [s.index for s in moved] == [4, 5]
    assert [s.uuid for s in moved] == [s.uuid for s in states]  # the same GPUs
    info = parse_q(view_of(healthy(), [4, 5])).gpus  # (the -q summary: the same view)
    assert job_view(info, job("4,5")) == view


def test_without_minor_numbers_the_allocation_order_is_taken() -> None:
    text = view_of(healthy(), [6, 7])
    for gpu in range(2):
        text = with_value(text, gpu, MINOR, "N/A")  # (as on WSL2)
    states = parse_states(text)
    view = job_view(states, job("6,7"))
    assert view is not None and "allocation order" in view["note"]
    assert [s.index for s in in_host_indices(states, view)] == [6, 7]


def test_an_unconstrained_node_is_judged_as_listed() -> None:
    states = parse_states(healthy())
    assert job_view(states, job("4,5", visible="4,5")) is None
    assert in_host_indices(states, None) == states
    assert job_view(states, None) is None


@pytest.mark.parametrize(
    ("keep", "gpus"),
    [
        ([4, 5, 6], "4,5"),  # a view of three GPUs for an allocation of two
        ([4], "4,5"),  # one GPU short
    ],
)
def test_a_view_that_is_not_the_allocation_is_left_as_listed(keep: list[int], gpus: str) -> None:
    assert job_view(parse_states(view_of(healthy(), keep)), job(gpus)) is None


def test_outside_a_job_a_named_gpu_that_is_not_there_stays_missing() -> None:
    """`--gpus 7` on a one-GPU host fails, however that GPU's minor number reads."""
    one = view_of(healthy(), [7])
    verdict = measurement.gpu_idle(host_of(one), [7], local=True)
    assert verdict.outcome == "failed"
    assert said(verdict) == "GPU 7 is not on this host (it has GPU 0)"


# -- the checks --------------------------------------------------------------------------------


def test_every_measurement_check_judges_the_jobs_gpus() -> None:
    text = view_of(healthy(), [4, 5])
    host = host_of(text, job("4,5"))
    checks = (
        measurement.gpu_idle, measurement.persistence_mode, measurement.mig_mode,
        measurement.clock_events, measurement.energy_counter, measurement.power_limit,
        measurement.gpu_health,
    )  # fmt: skip
    for check in checks:
        verdict = check(host, [4, 5], local=True)
        assert verdict.outcome == "passed", (check.__name__, said(verdict))
        assert [g["index"] for g in verdict.details["gpus"]] == [4, 5], check.__name__
        assert verdict.details["job_view"]["host_index"] == {"0": 4, "1": 5}
    outside = measurement.gpu_idle(host, [0], local=True)  # (not the job's GPU 0)
    assert said(outside) == "GPU 0 is not in this Slurm job, which has host GPU 4, 5 alone"
    # Before, the allocation was looked for among the view's own numbers:
    before = measurement.gpu_idle(host_of(text), [4, 5], local=True)
    assert said(before) == "GPU 4, 5 is not on this host (it has GPU 0, 1)"


def test_a_busy_gpu_of_the_job_is_named_by_its_host_index() -> None:
    text = view_of(healthy(), [4, 5])
    busy = text.replace(
        "    Processes                             : None",
        "    Processes\n"
        "        GPU instance ID                   : N/A\n"
        "        Compute instance ID               : N/A\n"
        "        Process ID                        : 4242\n"
        "            Type                          : C\n"
        "            Name                          : python3\n"
        "            Used GPU Memory               : 1024 MiB",
    )
    sections = busy.split("\nGPU ")
    busy = "\nGPU ".join([*sections[:2], text.split("\nGPU ")[2]])  # GPU 0 of the view only
    verdict = measurement.gpu_idle(host_of(busy, job("4,5")), [4, 5], local=True)
    assert verdict.outcome == "failed"
    assert "GPU 4: PID 4242 python3 (1024 MiB)" in said(verdict)
    assert verdict.details["processes"][0]["gpu"] == 4


def test_the_attestation_reads_the_jobs_gpus_under_their_host_indices() -> None:
    text = view_of(healthy(), [4, 5])
    snapshots = [Snapshot.parse(text, at, allocation=job("4,5")) for at in (0.0, 5.0)]
    assert [g.index for g in snapshots[0].gpus] == [4, 5]
    assert judge(snapshots, [4, 5], 5.0).status == "clean"
    # Read as listed (GPU 0, 1), GPU 4 and 5 are not there: never "clean".
    lost = judge([Snapshot.parse(text, at) for at in (0.0, 5.0)], [4, 5], 5.0)
    assert lost.status == "unverified"
    assert lost.reasons[-1].message == (
        "GPU 4, 5 not among the GPUs nvidia-smi lists here (0, 1): its state could not be read"
    )


# -- llem, as run in such a job ----------------------------------------------------------------

STUDY = "name: s\nexperiments: [{model: gpt2, backend: pytorch, command: [python, w.py]}]\n"


def test_llem_preflight_in_a_constrained_job_passes_on_its_gpus(tmp_path: Path) -> None:
    (tmp_path / "q.txt").write_text(view_of(healthy(), [4, 5]))
    tool = tmp_path / "bin" / "nvidia-smi"
    tool.parent.mkdir()
    tool.write_text(f"#!/bin/sh\nexec cat {tmp_path / 'q.txt'}\n")
    tool.chmod(0o755)
    (tmp_path / "s.yaml").write_text(STUDY)
    env = {
        "PATH": f"{tool.parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "LANG": "C.UTF-8",
        "SLURM_JOB_ID": "42",
        "SLURM_JOB_GPUS": "4,5",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "SLURMD_NODENAME": "gpu-node-3",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest_llem", "preflight", "s.yaml", "--json", "r.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "passed"
    assert report["host"]["slurm"]["gpus"] == [4, 5]
    idle = next(c for c in report["checks"] if c["id"] == "gpu-idle")
    assert idle["reason"] == "GPU 4, GPU 5 idle"
    assert idle["details"]["job_view"]["host_index"] == {"0": 4, "1": 5}


def test_a_docker_probe_in_the_job_is_judged_against_the_jobs_gpus_by_uuid() -> None:
    """The daemon is no part of the job's cgroup: its container makes the request by host
    index (`--gpus "device=4,5"`) and sees GPUs 4 and 5, which the job's nvidia-smi lists as
    0 and 1."""
    from pytest_llem.domain import verdicts
    from pytest_llem.domain.records import ImageFacts, ImageInfo, ProbeFacts

    text = view_of(healthy(), [4, 5])
    uuids = [s.uuid for s in parse_states(text)]
    image = ImageFacts("img:1", ImageInfo("sha256:abc", {}), CommandResult(("docker",), 0))
    seen = [
        {"index": str(i), "name": "NVIDIA A100-SXM4-40GB", "uuid": u} for i, u in enumerate(uuids)
    ]
    probe = ProbeFacts("img:1", "llem-probe-x", CommandResult(("docker", "run"), 0), seen)
    verdict = verdicts.gpu_in_container(
        image, probe, host_of(text, job("4,5")), False, 30, "device=4,5"
    )
    assert verdict.outcome == "passed", said(verdict)
    # Other GPUs than the job's: named as such.
    other = [{**g, "uuid": "GPU-00000000-0000-0000-0000-000000000000"} for g in seen]
    probe = ProbeFacts("img:1", "llem-probe-x", CommandResult(("docker", "run"), 0), other)
    wrong = verdicts.gpu_in_container(
        image, probe, host_of(text, job("4,5")), False, 30, "device=4,5"
    )
    assert wrong.outcome == "failed" and "other GPUs than asked for" in said(wrong)
    # Read as listed, GPUs 4 and 5 would not be on this host:
    before = verdicts.gpu_in_container(image, probe, host_of(text), False, 30, "device=4,5")
    assert said(before).startswith("GPU 4, 5 is not on this host")
