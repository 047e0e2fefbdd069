"""A private OpenSSH server on 127.0.0.1 that stands in for a remote GPU host.

Its own host key and client key are generated per server; only that client key may log in (as
root). Every session gets the environment the server was given (`SetEnv`), so a "remote"
pre-flight sees the simulated host: its PATH of fake NVIDIA tools, and a test-bed engine; and
it starts in the server's own `home` directory, so nothing is left in root's.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from .service import Service

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# In the environment of every session (and what it starts): which server's session it is.
SESSION_MARKER = "LLEM_TEST_SSHD"


class SshdError(RuntimeError):
    pass


@functools.cache
def sshd_unavailable_reason() -> str | None:
    """Why no private sshd can be started here, or None when one can."""
    missing = [t for t in ("sshd", "ssh", "ssh-keygen") if not shutil.which(t, path=SYSTEM_PATH)]
    if missing:
        return f"the ssh test bed needs {', '.join(missing)}: run scripts/provision.sh as root"
    return None


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Sshd(Service):
    """`sshd -D` on 127.0.0.1:PORT with generated keys; `client_config` logs in as root."""

    def __init__(self, env: Mapping[str, str], start_timeout: float = 15.0) -> None:
        self.session_env = dict(env)
        self.start_timeout = start_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="llem-ssh-", dir="/tmp"))
        self.port = 0
        self.client_config = self.dir / "ssh_config"
        self.log = self.dir / "sshd.log"
        self.home = self.dir / "home"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    def start(self) -> Sshd:
        keygen = shutil.which("ssh-keygen", path=SYSTEM_PATH) or "ssh-keygen"
        for key in ("host_key", "client_key"):
            subprocess.run(
                [keygen, "-q", "-t", "ed25519", "-N", "", "-C", key, "-f", str(self.dir / key)],
                check=True,
                capture_output=True,
            )
        shutil.copy(self.dir / "client_key.pub", self.dir / "authorized_keys")
        self.home.mkdir()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation directory
        self.port = free_port()
        marked = {**self.session_env, SESSION_MARKER: str(self.dir)}  # (see session_processes)
        setenv = " ".join(f"{k}={v}" for k, v in marked.items())
        config = self.dir / "sshd_config"
        config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.dir}/host_key\n"
            f"AuthorizedKeysFile {self.dir}/authorized_keys\n"
            f"PidFile {self.dir}/sshd.pid\n"
            "StrictModes no\n"
            "UsePAM no\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            "AllowUsers root\n"
            "LogLevel VERBOSE\n"
            # Sessions start in a directory of the server's (execnet creates its working
            # directory, pyexecnetcache, relative to where a session starts), not root's home.
            f'ForceCommand cd {self.home} && eval "$SSH_ORIGINAL_COMMAND"\n'
            + (f"SetEnv {setenv}\n" if setenv else "")
        )
        self.client_config.write_text(
            "Host *\n"
            "  User root\n"
            f"  IdentityFile {self.dir}/client_key\n"
            "  IdentitiesOnly yes\n"
            "  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n"
            "  BatchMode yes\n"
            "  LogLevel ERROR\n"
        )
        sshd = shutil.which("sshd", path=SYSTEM_PATH) or "/usr/sbin/sshd"
        self._proc = subprocess.Popen(
            [sshd, "-D", "-f", str(config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                raise SshdError(f"sshd exited with {self._proc.returncode}: {self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
            ):
                if sock.recv(64).startswith(b"SSH-2.0"):
                    return
            if time.monotonic() > deadline:
                raise SshdError(f"sshd did not answer: {self.log_tail()}")
            time.sleep(0.05)

    def session_processes(self) -> list[str]:
        """Every process of its sessions still there ("PID ARGS"): the server's descendants
        (its own per-connection processes, ``sshd: ...``, among them), and every process that
        carries the sessions' environment, wherever it went (an orphan is adopted by init)."""
        if self._proc is None:
            return []
        table = subprocess.run(
            ["ps", "-ww", "-e", "-o", "pid=,ppid=,args="],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        children: dict[int, list[int]] = {}
        args: dict[int, str] = {}
        for line in table.splitlines():
            pid, ppid, *rest = line.split(None, 2)
            children.setdefault(int(ppid), []).append(int(pid))
            args[int(pid)] = " ".join(rest)
        found: set[int] = set()
        todo = [self._proc.pid]
        while todo:
            for pid in children.get(todo.pop(), []):
                found.add(pid)
                todo.append(pid)
        marker = f"{SESSION_MARKER}={self.dir}".encode() + b"\0"
        for pid in args:
            with contextlib.suppress(OSError):
                if marker in Path(f"/proc/{pid}/environ").read_bytes():
                    found.add(pid)
        return [f"{pid} {args[pid]}" for pid in sorted(found) if pid in args]

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        for line in self.session_processes():  # (what a failed test may have left)
            with contextlib.suppress(OSError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
