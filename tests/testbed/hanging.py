"""A daemon that accepts connections and never answers."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
from pathlib import Path

from .service import Service


class HangingSocket(Service):
    """A unix socket listener that accepts every connection and never writes a byte.

    Without `path` the socket lives in a short directory of its own under /tmp (a unix socket
    path must stay under about 100 characters).
    """

    def __init__(self, path: Path | None = None) -> None:
        self._own_dir = None if path else Path(tempfile.mkdtemp(prefix="llem-", dir="/tmp"))
        self.path = path or Path(f"{self._own_dir}/hang.sock")
        self._listener: socket.socket | None = None
        self._accepted: list[socket.socket] = []

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> HangingSocket:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(self.path))
        listener.listen(16)
        self._listener = listener
        threading.Thread(
            target=self._accept, args=(listener,), daemon=True, name="llem-hanging-socket"
        ).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                self._accepted.append(listener.accept()[0])

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for conn in self._accepted:
            conn.close()
        self._accepted.clear()
        self.path.unlink(missing_ok=True)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
