"""The one way llem turns SIGTERM into an interrupt, and tells Ctrl-C and SIGTERM apart.

Within `sigterm_interrupts()`, SIGTERM raises `Terminated` (a KeyboardInterrupt) where the
main thread is, so that both signals unwind the same way: every `finally` runs, every child
is killed, and the exit status says which signal it was (130 Ctrl-C, 143 SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so it unwinds like Ctrl-C."""


class Signals:
    """The SIGTERM seen inside `sigterm_interrupts()` (code that turns a KeyboardInterrupt
    into its own exception, as pytest does, loses the kind)."""

    def __init__(self, received: int | None = None) -> None:
        self.received = received

    def exit_status(self, exc: BaseException) -> int:
        """128 + the signal: 143 for SIGTERM, 130 for Ctrl-C."""
        return 128 + int(self.signal_of(exc))

    def signal_of(self, exc: BaseException) -> signal.Signals:
        terminated = self.received is not None or isinstance(exc, Terminated)
        return signal.SIGTERM if terminated else signal.SIGINT


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def sigterm_interrupts(*, keep_others: bool = False) -> Iterator[Signals]:
    """Within the block, SIGTERM raises `Terminated` (main thread only; elsewhere a no-op).

    With ``keep_others``, a handler someone else installed stays (pytest inside a program
    that handles SIGTERM itself); the block then only reports what it sees.
    """
    seen = Signals()
    current = signal.getsignal(signal.SIGTERM) if _main_thread() else None
    if not _main_thread() or (keep_others and current not in (signal.SIG_DFL, None)):
        yield seen
        return

    def raise_terminated(signum: int, frame: FrameType | None) -> None:
        seen.received = signum
        raise Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def shielded() -> Iterator[None]:
    """Ignore further Ctrl-C / SIGTERM while a stopped workload is cleaned up."""
    if not _main_thread():
        yield
        return
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
