"""A fleet host's processes without a fleet: the guard, the worker's command, `HostProcess`,
and the controller's scheduling."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from execnet import XSpec

from pytest_llem.fleet_controller import FleetScheduling
from pytest_llem.host.gateways import (
    BOOTSTRAP_LINE,
    GUARD_CODE,
    HostProcess,
    guarded,
    worker_argv,
)


def under_guard(code: str, *, watch_input: bool = True) -> HostProcess:
    """``code`` run by this Python under the guard, as a host's worker is."""
    return HostProcess([sys.executable, "-c", GUARD_CODE, str(int(watch_input)), code])


def first_line(host: HostProcess) -> str:
    assert host.proc.stdout is not None
    return host.proc.stdout.readline().decode().strip()


def wait_gone(pid: int, within: float) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_the_guard_ends_with_its_work() -> None:
    host = under_guard("import sys; print('done', flush=True); sys.exit(5)")
    assert first_line(host) == "done"
    assert host.proc.wait(10) == 5


@pytest.mark.parametrize(
    "stuck",
    [
        "time.sleep(60)",
        "os.kill(os.getpid(), signal.SIGSTOP)",  # (a stopped process: SIGCONT, then SIGTERM)
    ],
)
def test_the_guard_ends_its_work_when_the_connection_ends(stuck: str) -> None:
    host = under_guard(f"import os, signal, time\nprint(os.getpid(), flush=True)\n{stuck}")
    child = int(first_line(host))
    start = time.monotonic()
    host.close(within=10)  # (its input ends: the connection, as seen over there)
    assert time.monotonic() - start < 5
    assert wait_gone(child, 1)


def test_work_that_will_not_end_is_killed_with_its_group() -> None:
    code = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "kid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(os.getpid(), kid.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    host = under_guard(code)
    pids = [int(word) for word in first_line(host).split()]
    assert host.proc.stdin is not None
    host.proc.stdin.close()
    assert host.proc.wait(10) is not None  # (after 1 s, SIGTERM, 3 s, SIGKILL)
    assert all(wait_gone(pid, 2) for pid in pids)


def test_without_watching_its_input_the_guard_lets_work_read_none() -> None:
    """The first contact has no input (ssh's is /dev/null): only its output is watched."""
    host = under_guard("import time; time.sleep(0.5); print('answer')", watch_input=False)
    assert host.proc.stdin is not None
    host.proc.stdin.close()
    assert first_line(host) == "answer"
    assert host.proc.wait(10) == 0


def test_the_guard_ends_its_work_when_nobody_reads_its_output() -> None:
    host = under_guard(
        "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)", watch_input=False
    )
    child = int(first_line(host))
    assert host.proc.stdout is not None
    host.proc.stdout.close()
    assert host.proc.wait(10) is not None
    assert wait_gone(child, 1)


def test_the_guarded_command_survives_a_remote_shell() -> None:
    command = guarded(sys.executable, "import sys; print(sys.argv)", watch_input=False)
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    assert out.stdout == "['-c']\n"  # (the work sees no argument of the guard's)


def test_what_a_host_process_said_is_kept_and_passed_on() -> None:
    seen: list[bytes] = []
    lines = "".join(f"line {n}\\n" for n in range(30))
    host = HostProcess(
        [sys.executable, "-c", f"import sys; sys.stderr.write('{lines}\\rlast\\n')"],
        echo=seen.append,
    )
    assert host.proc.wait(10) == 0
    said = host.said(wait=5)
    assert said == [f"line {n}" for n in range(21, 30)] + ["last"]
    assert b"".join(seen).endswith(b"line 29\n\rlast\n")
    host.close(within=1)


def test_the_worker_command_of_each_kind_of_gateway() -> None:
    ssh = XSpec("ssh=-p 2222 root@gpu1//id=gpu1//python=/opt/py -S//ssh_config=/etc/cfg")
    argv = worker_argv(ssh, connect_timeout=7)
    assert argv is not None
    assert argv[:-1] == [
        "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=7", "-F", "/etc/cfg",
        "-p", "2222", "root@gpu1",
    ]  # fmt: skip
    assert argv[-1].startswith("/opt/py -S -c 'exec(\"import os")
    assert argv[-1].endswith(f"' 1 '{BOOTSTRAP_LINE}'")
    popen = worker_argv(XSpec("popen//id=a//env:DOCKER_CONTEXT=a"), connect_timeout=7)
    assert popen == [sys.executable, "-u", "-c", GUARD_CODE, "1", BOOTSTRAP_LINE]
    own = worker_argv(XSpec("popen//id=b//python=/opt/py/bin/python3"), connect_timeout=7)
    assert own is not None and own[0] == "/opt/py/bin/python3"
    assert worker_argv(XSpec("socket=10.0.0.1:8888//id=c"), connect_timeout=7) is None


# -- the controller's scheduling --------------------------------------------------------------


class Node:
    """What the scheduling sees of a worker."""

    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.sent: list[str] = []

    def send_runtest_all(self) -> None:
        self.sent.append("runtests_all")

    def shutdown(self) -> None:
        self.sent.append("shutdown")


def test_each_host_gets_every_check_as_soon_as_it_has_collected_them() -> None:
    sched = FleetScheduling()
    a, b = Node("a"), Node("b")
    sched.add_node(a)
    sched.add_node(b)
    sched.add_node_collection(a, ["c1", "c2", "c3"])
    assert sched.collection_is_completed
    sched.schedule()
    assert (a.sent, b.sent) == (["runtests_all", "shutdown"], [])
    assert sched.has_started(a) and not sched.has_started(b)
    assert not sched.tests_finished  # (b has not started)
    sched.add_node_collection(b, ["c1", "c2", "c3"])
    sched.schedule()
    sched.schedule()  # (nothing is sent twice)
    assert a.sent == b.sent == ["runtests_all", "shutdown"]
    for index in (0, 1):
        sched.mark_test_complete(a, index)
        sched.mark_test_complete(b, index)
    assert sched.tests_finished  # (each holds only its last check)


def test_a_host_that_goes_away_is_dropped_and_not_replaced() -> None:
    sched = FleetScheduling()
    a, b = Node("a"), Node("b")
    for n in (a, b):
        sched.add_node(n)
        sched.add_node_collection(n, ["c1", "c2", "c3"])
    sched.schedule()
    sched.mark_test_complete(b, 0)
    assert sched.remove_node(b) == "c2"  # (the check it was running)
    assert sched.nodes == [a]
    for index in (0, 1):
        sched.mark_test_complete(a, index)
    assert sched.tests_finished
    sched.add_node(Node("c"))  # a node that never collects holds the end back
    assert not sched.tests_finished


def test_two_workers_on_one_host_both_get_their_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory a worker goes to may be made by another worker of the same host between
    a look and a mkdir (seen: `FileExistsError: 'pyexecnetcache'`): the setup makes it either
    way."""
    from pytest_llem.host import gateways

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyexecnetcache").mkdir()  # made by the other worker...
    monkeypatch.setattr(os.path, "exists", lambda path: False)  # ...after this one looked
    channel = SimpleNamespace(receive=lambda: ("pyexecnetcache", 0, {}))
    exec(gateways._SETUP_SOURCE, {"channel": channel})
    assert Path.cwd() == tmp_path / "pyexecnetcache"
