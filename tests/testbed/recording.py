"""A unix socket in front of an engine that records every API request made through it."""

from __future__ import annotations

import contextlib
import re
import socket
import tempfile
import threading
from pathlib import Path

from .forward import Forwarder

_REQUEST_LINE = re.compile(rb"^(GET|HEAD|POST|PUT|DELETE) (\S+) HTTP/1\.[01]\r$", re.M)


class RecordingSocket:
    """`unix://PATH` forwarding to ``target`` (a unix socket path); `requests` lists the
    "METHOD /path" of each API call, the version prefix (/v1.47) removed."""

    def __init__(self, target: str) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="llem-rec-", dir="/tmp"))
        self._dir.chmod(0o755)
        self.path = str(self._dir / "docker.sock")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(self.path)
        Path(self.path).chmod(0o666)
        listener.listen(64)
        self._lock = threading.Lock()
        self.requests: list[str] = []
        self._forwarder = Forwarder(listener, target, inspect=self._record)

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

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
        self._forwarder.close()
        with contextlib.suppress(OSError):
            Path(self.path).unlink()
            self._dir.rmdir()

    def __enter__(self) -> RecordingSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
