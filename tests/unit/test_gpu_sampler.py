"""The sampler of a measurement window (`host.gpu_sampler`) with a stand-in `nvidia-smi -q`,
and the owner of a local experiment's processes (its session), with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping

from testbed.captures import verbatim

from pytest_llem.domain.records import CommandResult
from pytest_llem.host.gpu_sampler import Sampler, SessionOwner, why_unreadable

BUSY = verbatim("captured/h200-580.159.04_smi-q_busy.txt")  # PID 556 on GPU 0
ARGV = ("nvidia-smi", "-q")


class Reader:
    """A stand-in `nvidia-smi -q`: counts its calls, answers ``text``."""

    def __init__(self, text: str = BUSY, returncode: int = 0) -> None:
        self.text, self.returncode = text, returncode
        self.calls: list[float] = []
        self.threads: set[str] = set()

    def __call__(self, env: Mapping[str, str] | None) -> CommandResult:
        self.calls.append(time.monotonic())
        self.threads.add(threading.current_thread().name)
        return CommandResult(ARGV, self.returncode, self.text)


class Pids:
    """An owner that owns the pids it is given."""

    def __init__(self, *pids: int) -> None:
        self.pids = set(pids)
        self.asked: list[int] = []

    def started(self, pid: int) -> None:
        pass

    def owns(self, pid: int) -> bool:
        self.asked.append(pid)
        return pid in self.pids


def test_no_sample_before_the_experiment_has_started_then_one_per_interval() -> None:
    reader = Reader()
    sampler = Sampler(0.05, Pids(), read=reader)
    assert sampler.before() is None
    time.sleep(0.12)  # no process yet: one interval waited, then its start
    assert len(reader.calls) == 1
    sampler.started(4242)
    started = time.monotonic()
    time.sleep(0.3)
    assert sampler.after() is None
    first_sample = reader.calls[1]
    assert first_sample - started >= 0.05  # one interval after its start
    assert 4 <= len(reader.calls) <= 8, len(reader.calls)
    assert "llem-gpu-sampler" in reader.threads
    snapshots = sampler.taken()
    assert len(snapshots) == len(reader.calls)
    assert [s.at_s for s in snapshots] == sorted(s.at_s for s in snapshots)


def test_interval_0_reads_before_and_after_only() -> None:
    reader = Reader()
    sampler = Sampler(0, Pids(), read=reader)
    sampler.before()
    sampler.started(1)
    time.sleep(0.1)
    sampler.after()
    assert len(reader.calls) == 2
    assert reader.threads == {threading.current_thread().name}


def test_a_pid_once_its_own_stays_its_own() -> None:
    """Read at once, while it runs; a pid it owned may be gone by the snapshot after."""
    owner = Pids(556)
    sampler = Sampler(0, owner, read=Reader())
    sampler.before()
    owner.pids.clear()  # it has ended: /proc would no longer say
    sampler.after()
    assert [s.own_pids for s in sampler.taken()] == [frozenset({556})] * 2


def test_why_the_gpus_could_not_be_read() -> None:
    missing = CommandResult(ARGV, 127, stderr="nvidia-smi: No such file", missing=True)
    assert why_unreadable(missing, "before it started").cause == "host_driver_unavailable"
    failing = CommandResult(
        ARGV, 9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
        "driver. Make sure that the latest NVIDIA driver is installed and running.",
    )  # fmt: skip
    reason = why_unreadable(failing, "after it ended")
    assert reason.cause == "driver_not_loaded"
    assert reason.message.startswith("nvidia-smi -q failed after it ended (exit 9): ")
    slow = CommandResult(ARGV, None, timed_out=True)
    assert (
        "did not answer within 10 s before it started"
        in why_unreadable(slow, "before it started").message
    )
    sampler = Sampler(1, Pids(), read=Reader(returncode=9, text=""))
    assert sampler.before() is not None and sampler.taken() == []


def test_a_local_experiments_processes_are_its_sessions() -> None:
    """Its children are its own; a process of another session is not."""
    experiment = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; subprocess.run(['sleep', '5'])"],
        start_new_session=True,
    )
    other = subprocess.Popen(["sleep", "5"], start_new_session=True)
    try:
        owner = SessionOwner()
        assert not owner.owns(experiment.pid)  # not started yet
        owner.started(experiment.pid)
        deadline = time.monotonic() + 10
        child = None
        while child is None and time.monotonic() < deadline:
            found = subprocess.run(
                ["ps", "-o", "pid=", "--ppid", str(experiment.pid)],
                capture_output=True, text=True, check=False,
            ).stdout.split()  # fmt: skip
            child = int(found[0]) if found else None
            time.sleep(0.02)
        assert child is not None
        assert owner.owns(experiment.pid) and owner.owns(child)
        assert not owner.owns(other.pid)
        assert not owner.owns(2**22 + 7)  # no such process
    finally:
        for proc in (experiment, other):
            os.killpg(proc.pid, signal.SIGKILL)  # the session's group: its child too
            proc.wait()
