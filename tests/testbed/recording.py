"""A unix socket in front of an engine that records every API request made through it."""

from __future__ import annotations

import contextlib
import re
import socket
import tempfile
import threading
from pathlib import Path
from types import TracebackType

_REQUEST_LINE = re.compile(rb"^(GET|HEAD|POST|PUT|DELETE) (\S+) HTTP/1\.[01]\r$", re.M)


class RecordingSocket:
    """`unix://PATH` forwarding to ``target`` (a unix socket path); `requests` lists the
    "METHOD /path" of each API call, the version prefix (/v1.47) removed."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._dir = Path(tempfile.mkdtemp(prefix="llem-rec-", dir="/tmp"))
        self._dir.chmod(0o755)
        self.path = str(self._dir / "docker.sock")
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(self.path)
        Path(self.path).chmod(0o666)
        self._listener.listen(64)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.requests: list[str] = []
        threading.Thread(target=self._accept, daemon=True, name="llem-recorder").start()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            upstream = socket.socket(socket.AF_UNIX)
            try:
                upstream.connect(self._target)
            except OSError:
                client.close()
                upstream.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if record:
                    self._record(data)
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _record(self, data: bytes) -> None:
        for match in _REQUEST_LINE.finditer(data):
            path = re.sub(r"^/v[0-9.]+", "", match[2].decode("latin-1"))
            with self._lock:
                self.requests.append(f"{match[1].decode()} {path}")

    def touching_images_or_containers(self) -> list[str]:
        """The requests that inspect, pull or create anything (not /version, /info, /_ping)."""
        with self._lock:
            return [r for r in self.requests if re.match(r"\S+ /(images|containers)/", r)]

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._open:
                sock.close()
            self._open.clear()
        with contextlib.suppress(OSError):
            Path(self.path).unlink()
            self._dir.rmdir()

    def __enter__(self) -> RecordingSocket:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
