"""The test bed's socket forwarder (tests/testbed/forward.py), between a client and a stand-in
daemon: a client that dies must not leave the daemon side open (a daemon writing to it would
block, and a test could then hide an engine hang, or cause one); a half-close passes on."""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from testbed.forward import Forwarder

SOON_S = 3.0  # "within a short time": the forwarder's own reaction is immediate
CLIENT = """
import socket, sys, time
family, address = sys.argv[1], sys.argv[2]
if family == "unix":
    s = socket.socket(socket.AF_UNIX)
    s.connect(address)
else:
    s = socket.create_connection(("127.0.0.1", int(address)))
s.sendall(b"POST /containers/x/attach HTTP/1.1\\r\\n\\r\\n")
print("sent", flush=True)
time.sleep(600)
"""


class Daemon:
    """A stand-in daemon: a listening unix socket whose connections the test handles itself."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        self.listener.listen(4)
        self.listener.settimeout(SOON_S)

    def accept(self) -> socket.socket:
        conn, _ = self.listener.accept()
        conn.settimeout(SOON_S)
        return conn


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    stand_in = Daemon(tmp_path / "daemon.sock")
    yield stand_in
    stand_in.listener.close()


def forwarder(kind: str, daemon: Daemon, tmp_path: Path) -> tuple[Forwarder, str]:
    """A forwarder to ``daemon`` listening on a unix socket or on 127.0.0.1 (as the TCP
    stand-in of a remote daemon does); and the address a client connects to."""
    if kind == "unix":
        listener = socket.socket(socket.AF_UNIX)
        address = str(tmp_path / "front.sock")
        listener.bind(address)
        listener.listen(4)
    else:
        listener = socket.create_server(("127.0.0.1", 0))
        address = str(listener.getsockname()[1])
    return Forwarder(listener, daemon.path), address


def hung_up_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the peer of ``sock`` closed it altogether within ``seconds``."""
    poller = select.poll()
    poller.register(sock, select.POLLHUP)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if poller.poll(50):
            return True
    return False


def write_until_refused(sock: socket.socket, seconds: float) -> type[BaseException] | None:
    """The daemon keeps writing (an attach stream): the error that stops it, None if its writes
    blocked instead (nobody reads them any more)."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"x" * 65536)
        except (BrokenPipeError, ConnectionResetError) as exc:
            return type(exc)
        except TimeoutError:
            return None  # the daemon is blocked on a connection no one will read again
        time.sleep(0.01)
    return None


@contextlib.contextmanager
def client_process(kind: str, address: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, kind, address], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "sent\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_a_client_that_dies_leaves_no_daemon_side_open(
    kind: str, daemon: Daemon, tmp_path: Path
) -> None:
    front, address = forwarder(kind, daemon, tmp_path)
    try:
        with client_process(kind, address) as client:
            conn = daemon.accept()
            assert conn.recv(1024).startswith(b"POST /containers/x/attach")
            client.send_signal(signal.SIGKILL)
            client.wait()
        if kind == "unix":  # the forwarder sees at once that the client is gone
            assert hung_up_within(conn, SOON_S), "the daemon side is still open"
        # A daemon that writes on (an attach stream) is told the connection is gone, at once,
        # instead of blocking when the socket's buffer is full.
        assert write_until_refused(conn, SOON_S) in (BrokenPipeError, ConnectionResetError)
        conn.close()
    finally:
        front.close()


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_a_half_close_passes_on_and_the_answer_comes_back_whole(
    kind: str, daemon: Daemon, tmp_path: Path
) -> None:
    """As `docker run` does on its attach stream: the client shuts its writing end at once
    and reads the container's output to the end."""
    front, address = forwarder(kind, daemon, tmp_path)
    try:
        if kind == "unix":
            client = socket.socket(socket.AF_UNIX)
            client.connect(address)
        else:
            client = socket.create_connection(("127.0.0.1", int(address)))
        client.settimeout(SOON_S)
        client.sendall(b"request")
        client.shutdown(socket.SHUT_WR)
        conn = daemon.accept()
        got = b""
        while chunk := conn.recv(1024):
            got += chunk
        assert got == b"request"  # the end of the request reached the daemon as an EOF
        answer = bytes(range(256)) * 4096  # 1 MiB: more than the sockets' buffers hold
        writer = threading.Thread(target=lambda: (conn.sendall(answer), conn.close()))
        writer.start()
        received = b""
        while chunk := client.recv(65536):
            received += chunk
        writer.join()
        assert received == answer
        client.close()
    finally:
        front.close()


def test_a_daemon_that_goes_away_closes_the_client_side(daemon: Daemon, tmp_path: Path) -> None:
    front, address = forwarder("unix", daemon, tmp_path)
    try:
        client = socket.socket(socket.AF_UNIX)
        client.connect(address)
        client.sendall(b"GET /events HTTP/1.1\r\n\r\n")
        conn = daemon.accept()
        assert conn.recv(1024).startswith(b"GET /events")
        conn.close()  # the daemon is gone; the client has not finished its side
        assert hung_up_within(client, SOON_S), "the client side is still open"
        client.close()
    finally:
        front.close()
