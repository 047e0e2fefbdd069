"""A fleet host's processes: the first contact, and the worker that pytest-xdist talks to.

The first contact asks the host, before any worker goes there, whether it can run the
pre-flight at all: the way execnet will go (ssh with the spec's arguments and ssh config, the
spec's Python), with a limit, so that a host that does not answer fails alone and at once.

The worker is then started here, not by execnet: as llem starts every command (its own
session, never through a shell), its standard error read apart (passed on, and its last
lines kept for the report of a host that fails), and execnet's bootstrap run over its pipes.

On the host, both run under a guard (`GUARD_CODE`): the Python named for the host forks, runs
the work in the child, and watches the connection. When the connection ends (this side
closed it, or ssh died) the guard ends the child and everything in its process group, so
nothing of a host's session outlives the run, even a worker that is stuck or stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from execnet.gateway_base import Popen2IO

from ..domain.records import CommandResult
from . import proc
from .proc import run

if TYPE_CHECKING:
    import execnet
    from execnet import XSpec
    from execnet.gateway_base import ExecModel

# What the host's Python is asked: can it import what a worker needs? (No single quotes: it
# travels inside them through the remote shell.)
PROBE_CODE = (
    "import sys\n"
    "try:\n"
    "    import pytest_llem, xdist\n"
    "except ImportError as exc:\n"
    "    print(exc)\n"
    "    sys.exit(3)\n"
    "print(pytest_llem.__version__)\n"
)
MISSING_PACKAGE = 3  # the probe's exit status when pytest-llem (or pytest-xdist) is missing

# The guard, run as ``PYTHON -c GUARD WATCH CODE``: CODE runs in a child (the same interpreter,
# forked: the Python's own options hold); the guard watches its standard output (and, with
# WATCH 1, its standard input) for the other end going away, without reading either. Then the
# child gets a second to end by itself, SIGTERM (a pytest session ends its own commands on
# it; SIGCONT too, for a stopped one) and three more seconds, then SIGKILL: its whole
# process group, the guard's own.
# Otherwise the guard ends with the child's exit status. (No single quotes: see PROBE_CODE.)
GUARD_CODE = """\
import os, select, signal, sys, time
watch_input, code = sys.argv[1] == "1", sys.argv[2]
try:
    os.setpgid(0, 0)
except OSError:
    pass
child = os.fork()
if child == 0:
    del sys.argv[1:]
    exec(code)
    sys.exit()


def ended(within):
    end = time.monotonic() + within
    while True:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            return status
        if time.monotonic() >= end:
            return None
        time.sleep(0.05)


poller = select.poll()
for fd in (0, 1) if watch_input else (1,):
    poller.register(fd, 0)
status = None
while status is None:
    status = ended(0)
    if status is None and poller.poll(250):
        status = ended(1)
        if status is None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.killpg(0, signal.SIGTERM)
            os.killpg(0, signal.SIGCONT)
            status = ended(3)
        if status is None:
            os.killpg(0, signal.SIGKILL)
code = os.waitstatus_to_exitcode(status)
os._exit(code if code >= 0 else 128 - code)
"""

# What execnet's bootstrap sends first is read by this line (execnet's own).
BOOTSTRAP_LINE = "import sys;exec(eval(sys.stdin.readline()))"
# The spec's directory, niceness and environment, applied as `execnet.Group.makegateway` does
# (but made whether or not a second worker on the same host makes it at the same moment).
_SETUP_SOURCE = """
import os
path, nice, env = channel.receive()
if path:
    os.makedirs(path, exist_ok=True)
    os.chdir(path)
if nice and hasattr(os, "nice"):
    os.nice(nice)
if env:
    for name, value in env.items():
        os.environ[name] = value
"""
SAID_LINES = 10  # the last lines of a host's standard error kept for its report
_SAID_BYTES = 16 * 1024


def guarded(python: str, code: str, *, watch_input: bool) -> str:
    """The remote command that runs ``code`` with ``python`` under the guard."""
    assert "'" not in code
    # The guard as one line (a string literal that Python unescapes), for any remote shell.
    return f"{python} -c 'exec({json.dumps(GUARD_CODE)})' {int(watch_input)} '{code}'"


def ssh_argv(ssh: str, ssh_config: str | None, command: str, *, timeout: float) -> list[str]:
    """``ssh ARGS COMMAND`` without a prompt (exit status 255 is ssh's own failure)."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(timeout))}"]
    if ssh_config:
        argv += ["-F", ssh_config]
    return [*argv, *ssh.split(), command]


# --- the first contact ---------------------------------------------------------------------


def probe_ssh(
    ssh: str,
    python: str,
    *,
    ssh_config: str | None,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """``ssh ARGS PYTHON -c PROBE``, under the guard (a probe that hangs over there ends
    when this side gives up on it)."""
    command = guarded(python, PROBE_CODE, watch_input=False)
    return run(ssh_argv(ssh, ssh_config, command, timeout=timeout), timeout=timeout + 5, env=env)


def probe_local(
    python: list[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> CommandResult:
    """``PYTHON -c PROBE`` on this machine (a popen gateway with a Python of its own)."""
    return run([*python, "-c", PROBE_CODE], timeout=timeout, env=env)


def probe_context(
    context: str, *, timeout: float, env: Mapping[str, str] | None = None
) -> CommandResult:
    """``docker context inspect CONTEXT``: does the Docker context of a popen gateway exist?"""
    return run(["docker", "context", "inspect", context], timeout=timeout, env=env)


# --- the worker ----------------------------------------------------------------------------


def worker_argv(spec: XSpec, *, connect_timeout: float) -> list[str] | None:
    """The command that starts the worker of ``spec`` (a popen or ssh gateway) under the
    guard; None for a kind of gateway that execnet must start itself (socket, via)."""
    if spec.via:
        return None
    if spec.popen:
        python = shlex.split(spec.python) if spec.python else [sys.executable]
        flags = ["-u", *(["-B"] if spec.dont_write_bytecode else [])]
        return [*python, *flags, "-c", GUARD_CODE, "1", BOOTSTRAP_LINE]
    if spec.ssh:
        command = guarded(spec.python or "python", BOOTSTRAP_LINE, watch_input=True)
        return ssh_argv(spec.ssh, spec.ssh_config, command, timeout=connect_timeout)
    return None


class WorkerNotStarted(Exception):
    """The worker's process ended, or broke the protocol, before its gateway was up."""

    def __init__(self, why: str, returncode: int | None) -> None:
        super().__init__(why)
        self.returncode = returncode


class HostProcess:
    """The local end of one host's worker (ssh, or a Python of this machine), started the way
    llem starts commands; what it writes on standard error goes to ``echo`` and its last
    lines are kept (`said`). OSError when it cannot be started."""

    def __init__(self, argv: Sequence[str], *, echo: Callable[[bytes], None] | None = None) -> None:
        self.argv = list(argv)
        self.proc = proc.spawn_talking(self.argv)
        self._echo = echo
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._read_all = threading.Event()
        self._closing = threading.Lock()
        threading.Thread(target=self._read_stderr, daemon=True, name="llem-host-stderr").start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        try:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                if self._echo is not None:
                    with contextlib.suppress(OSError):
                        self._echo(chunk)
                with self._lock:
                    self._tail += chunk
                    del self._tail[:-_SAID_BYTES]
        finally:
            self._read_all.set()

    def said(self, wait: float = 0.0) -> list[str]:
        """The last lines it wrote on standard error, after waiting up to ``wait`` seconds for
        the end of that stream (the last words of a process that is ending)."""
        self._read_all.wait(wait)
        with self._lock:
            text = self._tail.decode("utf-8", errors="replace")
        lines = [line.strip() for line in re.split(r"[\r\n]+", text)]
        return [line for line in lines if line][-SAID_LINES:]

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        proc.kill_group(self.proc)

    def close(self, gateway: execnet.Gateway | None = None, *, within: float) -> None:
        """End it and reap it: ask first (execnet's exit over ``gateway``, else the end of its
        input: the guard over there ends the worker), and kill its process group if it has
        not ended within ``within`` seconds. Closing twice waits for the first."""
        with self._closing:
            timer = threading.Timer(within, self.kill)
            timer.daemon = True
            timer.start()
            try:
                if gateway is not None:
                    gateway.exit()  # (a write that blocks on a stuck host ends with the kill)
                elif self.proc.stdin is not None:
                    with contextlib.suppress(OSError, ValueError):
                        self.proc.stdin.close()
                end = time.monotonic() + within + 5
                while self.proc.poll() is None and time.monotonic() < end:
                    time.sleep(0.05)
            finally:
                timer.cancel()
                if self.proc.poll() is None:
                    self.kill()
                    self.proc.wait()
                self._read_all.wait(1.0)


class _ProcessIO(Popen2IO):
    """execnet's pipe IO over a `HostProcess` (what `execnet.Group.makegateway` would start
    itself)."""

    def __init__(self, host: HostProcess, execmodel: ExecModel, remoteaddress: str | None):
        super().__init__(host.proc.stdin, host.proc.stdout, execmodel=execmodel)
        self.host = host
        if remoteaddress is not None:
            self.remoteaddress = remoteaddress  # (ssh's exit status 255 names it)

    def wait(self) -> int | None:
        return self.host.proc.wait()

    def kill(self) -> None:
        self.host.kill()


def start_gateway(group: execnet.Group, spec: XSpec, host: HostProcess) -> execnet.Gateway:
    """The execnet gateway of ``spec`` over ``host``'s process, made as
    `execnet.Group.makegateway` makes one (bootstrap; then the spec's directory, niceness and
    environment), and in ``group``. WorkerNotStarted when the process ended first."""
    from execnet import gateway_bootstrap

    io = _ProcessIO(host, group.execmodel, spec.ssh)
    try:
        gateway = gateway_bootstrap.bootstrap(io, spec)
    except gateway_bootstrap.HostNotFound:
        raise WorkerNotStarted("ssh failed", 255) from None
    except (EOFError, OSError, AssertionError, ValueError) as exc:
        host.proc.wait()  # (its streams are gone: it is ending)
        raise WorkerNotStarted(str(exc) or type(exc).__name__, host.returncode) from None
    if host.returncode is not None:  # (execnet's bootstrap returns after an early end too)
        raise WorkerNotStarted("it ended before its worker started", host.returncode)
    gateway.spec = spec
    group._register(gateway)  # (what makegateway does: the group ends it at the end)
    if spec.chdir or spec.nice or spec.env:
        channel = gateway.remote_exec(_SETUP_SOURCE)
        channel.send((spec.chdir, int(spec.nice or 0), spec.env))
        channel.waitclose()
    gateway._rinfo()  # (pytest-xdist asks it in the main thread: asked here, it is known)
    return gateway


def echo_to_stderr(chunk: bytes) -> None:
    """``chunk`` written whole on this process's standard error."""
    view = memoryview(chunk)
    while view:
        view = view[os.write(2, view) :]
