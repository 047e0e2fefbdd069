"""A listening socket whose every connection is piped to another socket."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable


def unix_target(path: str) -> Callable[[], socket.socket]:
    """Connects to the unix socket ``path`` (an engine's)."""

    def connect() -> socket.socket:
        upstream = socket.socket(socket.AF_UNIX)
        try:
            upstream.connect(path)
        except OSError:
            upstream.close()
            raise
        return upstream

    return connect


def tcp_target(port: int) -> Callable[[], socket.socket]:
    """Connects to 127.0.0.1:``port``."""

    def connect() -> socket.socket:
        upstream = socket.create_connection(("127.0.0.1", port), 5)
        upstream.settimeout(None)
        return upstream

    return connect


class Forwarder:
    """Accepts on ``listener`` and pipes each connection to a socket ``connect()`` opens.

    ``inspect`` sees every chunk a client sends; ``answer_rate`` (bytes per second, 0: no
    limit) slows the answers down. Half-close only: when one direction ends, the other is shut
    for writing, so a `docker run` attach stream is never cut short.
    """

    CHUNK = 16 * 1024

    def __init__(
        self,
        listener: socket.socket,
        connect: str | Callable[[], socket.socket],
        inspect: Callable[[bytes], None] | None = None,
        answer_rate: float = 0.0,
    ) -> None:
        self._listener = listener
        self._connect = unix_target(connect) if isinstance(connect, str) else connect
        self._inspect = inspect
        self._rate = answer_rate
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="llem-forwarder").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            try:
                upstream = self._connect()
            except OSError:  # the server is gone: the client sees the connection drop
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for args in (
                (client, upstream, self._inspect, 0.0),
                (upstream, client, None, self._rate),
            ):
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        inspect: Callable[[bytes], None] | None,
        rate: float,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(self.CHUNK if rate else 65536):
                if inspect is not None:
                    inspect(data)
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._open:
                sock.close()
            self._open.clear()
