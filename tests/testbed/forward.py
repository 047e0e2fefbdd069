"""A listening socket whose every connection is piped to an engine's unix socket."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class Forwarder:
    """Accepts on ``listener`` and pipes each connection to the unix socket ``target``.

    ``inspect`` sees every chunk a client sends. Half-close only: when one direction ends,
    the other is shut for writing, so a `docker run` attach stream is never cut short.
    """

    def __init__(
        self,
        listener: socket.socket,
        target: str,
        inspect: Callable[[bytes], None] | None = None,
    ) -> None:
        self._listener = listener
        self._target = target
        self._inspect = inspect
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="llem-forwarder").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            upstream = socket.socket(socket.AF_UNIX)
            try:
                upstream.connect(self._target)
            except OSError:  # the daemon is gone: the client sees the connection drop
                client.close()
                upstream.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for src, dst, seen in ((client, upstream, self._inspect), (upstream, client, None)):
                threading.Thread(target=self._pump, args=(src, dst, seen), daemon=True).start()

    @staticmethod
    def _pump(
        src: socket.socket, dst: socket.socket, inspect: Callable[[bytes], None] | None
    ) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if inspect is not None:
                    inspect(data)
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._open:
                sock.close()
            self._open.clear()
