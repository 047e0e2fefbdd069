"""A real image registry on 127.0.0.1 (Debian's `docker-registry`), and a slow road to it.

The machines this runs on reach no public registry, so a pull that lasts is made here: the
engine pushes a test image to a private registry, then the product pulls it back through
`SlowLink`, a TCP forwarder that lets the registry's answers through at a set rate. The
engine treats 127.0.0.0/8 registries as insecure (plain HTTP) by default.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .engine import SYSTEM_PATH
from .forward import Forwarder, tcp_target
from .service import Service

REGISTRY_PACKAGE = "docker-registry"


def registry_unavailable_reason() -> str | None:
    if shutil.which("docker-registry", path=SYSTEM_PATH) is None:
        return f"no registry here: run scripts/provision.sh as root (installs {REGISTRY_PACKAGE})"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Registry(Service):
    """`docker-registry serve` on 127.0.0.1:PORT, storing under its own directory."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="llem-registry-", dir="/tmp"))
        self.port = _free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Registry:
        config = self.dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: error}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.dir}/data}}}}\n"
            f"http: {{addr: '{self.address}'}}\n"
        )
        binary = shutil.which("docker-registry", path=SYSTEM_PATH) or "docker-registry"
        with open(self.dir / "registry.log", "wb") as log:
            self._proc = subprocess.Popen(
                [binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={"PATH": SYSTEM_PATH, "HOME": str(self.dir)},
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log_text = (self.dir / "registry.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"docker-registry did not start:\n{log_text}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
            return True
        return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class SlowLink(Forwarder):
    """127.0.0.1:PORT -> the registry, its answers let through at ``bytes_per_s``."""

    def __init__(self, target_port: int, bytes_per_s: float) -> None:
        self.target_port = target_port
        self.bytes_per_s = bytes_per_s
        listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = listener.getsockname()[1]
        super().__init__(listener, tcp_target(target_port), answer_rate=bytes_per_s)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"
