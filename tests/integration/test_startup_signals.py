"""Ctrl-C or SIGTERM while llem starts up: a clean exit, no traceback, no child left behind.

The host's nvidia-smi here hangs, so llem's first host query is still running when the
signal arrives: it is the child that must not outlive llem.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from testbed import Engine, HostTools
from testbed.preflight import started

STUDY = (
    "name: s\nrunners: {vllm: 'docker:llem-test/none:1'}\n"
    "experiments: [{model: m, backend: vllm}]\n"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("command", [["run", "study.yaml"], ["preflight"]])
def test_a_signal_during_start_up_ends_llem_and_its_children(
    host_tools: HostTools, gpu_engine: Engine, signum: signal.Signals, command: list[str]
) -> None:
    marker = host_tools.work / "smi.pid"
    host_tools.install("nvidia-smi", f"#!/bin/sh\necho $$ > {marker}\nexec sleep 60\n")
    (host_tools.work / "study.yaml").write_text(STUDY)
    cmd = [sys.executable, "-m", "pytest_llem", *command]
    with started(cmd, host_tools.env(gpu_engine), host_tools.work) as proc:
        deadline = time.monotonic() + 20
        while not (marker.exists() and marker.read_text().strip()):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        child = int(marker.read_text())
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().endswith("SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"), err
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), f"nvidia-smi ({child}) outlived llem"
