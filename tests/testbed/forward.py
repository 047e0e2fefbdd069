"""A listening socket whose every connection is piped to another socket."""

from __future__ import annotations

import contextlib
import select
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
    limit) slows the answers down.

    When one side half-closes (shuts its writing end and still reads, as the docker CLI does on
    an attach stream), the other is shut for writing only, so a `docker run` attach stream is
    never cut short. When one side is gone (it closed, died, reset the connection, or can no
    longer be written to), both sides are closed at once: a daemon is never left writing to a
    client that died, nor a client waiting on a daemon that is gone. When both directions have
    ended, both sockets are closed.
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
            link = _Link(client, upstream, self._forget)
            with self._lock:
                self._open.update((client, upstream))
            for args in (
                (client, upstream, self._inspect, 0.0, link),
                (upstream, client, None, self._rate, link),
            ):
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        inspect: Callable[[bytes], None] | None,
        rate: float,
        link: _Link,
    ) -> None:
        gone = False
        try:
            while data := src.recv(self.CHUNK if rate else 65536):
                if inspect is not None:
                    inspect(data)
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:  # src reset the connection, or dst can no longer be written to
            gone = True
        if not gone and not link.over:
            gone = _hung_up(src)  # src closed: not a half-close
            if not gone:
                try:
                    dst.shutdown(socket.SHUT_WR)  # pass the half-close on
                except OSError:
                    gone = True
        link.ended(gone)

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(socks)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # (wakes its pumps)
                sock.close()
            self._open.clear()


def _hung_up(sock: socket.socket) -> bool:
    """Whether the peer of ``sock`` closed it altogether (not only its writing end).

    A unix socket tells at once; a TCP peer's close looks like a half-close until a write to
    it fails, which then ends the link.
    """
    poller = select.poll()
    try:
        poller.register(sock, select.POLLHUP)
        return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))
    except (OSError, ValueError):  # closed meanwhile
        return True


class _Link:
    """The two sockets of one forwarded connection and its two pumps.

    A pump that ends because a side is gone shuts both sockets at once (which wakes the other
    pump and tells both peers); the pump that ends last closes them.
    """

    def __init__(
        self,
        client: socket.socket,
        upstream: socket.socket,
        forget: Callable[[socket.socket, socket.socket], None],
    ) -> None:
        self._socks = (client, upstream)
        self._forget = forget
        self._running = 2
        self._lock = threading.Lock()
        self.over = False

    def ended(self, gone: bool) -> None:
        with self._lock:
            self._running -= 1
            last = self._running == 0
            shut = (gone or last) and not self.over
            self.over = self.over or shut
        if shut:
            for sock in self._socks:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if last:
            self._forget(*self._socks)
            for sock in self._socks:
                sock.close()
