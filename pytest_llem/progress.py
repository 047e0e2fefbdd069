"""Signs of life during long work, on stderr, never on stdout.

On a terminal, a pull (at once) and a GPU probe (once it has run for 2 s) show one live status
line, redrawn in place and erased when the work ends: the check the work is for, the image,
the layers done and the bytes, the time. Elsewhere (a CI log) each pull gets one line at its
start and one at its end, and probes say nothing. A pull that a person watched ends with one
kept line. The `--wait` lines go through here too, so that they never tear a live line.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import TextIO

PROBE_SHOWN_AFTER_S = 2.0
REFRESH_S = 0.25
_CLEAR = "\r\x1b[K"


class Task:
    """One piece of long work: shown live after ``shown_after_s``."""

    def __init__(self, progress: Progress, check: str, what: str, shown_after_s: float) -> None:
        self.progress = progress
        self.check = check
        self.what = what
        self.shown_after_s = shown_after_s
        self.start = progress.clock()
        self.seen = False  # shown on the live line at least once

    def elapsed(self) -> float:
        return self.progress.clock() - self.start

    def status(self) -> str:
        return f"{self.check}: {self.what}, {self.elapsed():.0f} s"

    def end(self) -> None:
        self.progress.ended(self, None)


class PullTask(Task):
    """A pull, fed the CLI's output as it comes."""

    def __init__(self, progress: Progress, check: str, image: str, limit_s: float) -> None:
        from .domain.pulls import PullProgress  # (only a pull needs its parser)

        super().__init__(progress, check, "pulling", 0.0)
        self.image = image
        self.limit_s = limit_s
        self.state = PullProgress()

    def feed(self, text: str) -> None:
        with self.progress.lock:
            self.state.feed(text)

    def status(self) -> str:
        return f"{self.check}: pulling, {self.state.summary()}, {self.elapsed():.0f} s"

    def finish(self, ok: bool, timed_out: bool = False) -> None:
        took = self.elapsed()
        if ok:
            line = f"pulled {self.image} in {took:.1f} s"
            if self.state.layers:
                line += f" ({self.state.summary()})"
        elif timed_out:
            line = f"pull of {self.image} stopped after {took:.0f} s (limit {self.limit_s:g} s)"
        else:
            line = f"pull of {self.image} failed after {took:.1f} s"
        self.progress.ended(self, line if self.seen or not self.progress.live else None)


class Progress:
    """Where long work reports itself: one stream (stderr), live when it is a terminal."""

    def __init__(
        self,
        stream: TextIO,
        *,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        refresh_s: float = REFRESH_S,
    ) -> None:
        self.stream = stream
        self.live = _is_terminal(stream) if live is None else live
        self.clock = clock
        self.refresh_s = refresh_s
        self.lock = threading.RLock()
        self._tasks: list[Task] = []
        self._drawn = False  # a live line is on the screen
        self._ticker: threading.Thread | None = None
        self._wake = threading.Event()

    @classmethod
    def to_stderr_fd(cls) -> Progress:
        """Progress on this process's stderr as it is now, even if it is redirected later
        (pytest's capture replaces file descriptor 2 while each test runs)."""
        try:
            stream: TextIO = open(  # noqa: SIM115 # lives as long as the process
                os.dup(2), "w", encoding="utf-8", errors="replace", buffering=1
            )
        except OSError:
            import sys

            stream = sys.stderr
        return cls(stream)

    # --- what the work calls ----------------------------------------------------------------

    def say(self, line: str) -> None:
        """A line to keep (above a live line, which is redrawn under it)."""
        with self.lock:
            self._erase()
            self._write(line + "\n")
            self._draw()

    def pull(self, check: str, image: str, limit_s: float) -> PullTask:
        task = PullTask(self, check, image, limit_s)
        if not self.live:
            self.say(f"pulling {image} for {check} (limit {limit_s:g} s)")
        self._add(task)
        return task

    def probe(self, check: str, limit_s: float) -> Task:
        return self._add(
            Task(self, check, f"GPU probe running (limit {limit_s:g} s)", PROBE_SHOWN_AFTER_S)
        )

    def ended(self, task: Task, line: str | None) -> None:
        with self.lock:
            if task in self._tasks:
                self._tasks.remove(task)
            self._erase()
            if line is not None:
                self._write(line + "\n")
            self._draw()

    def close(self) -> None:
        """End every task still shown (the session is over or interrupted); erase the line."""
        with self.lock:
            self._tasks.clear()
            self._erase()
        self._wake.set()

    # --- the live line ----------------------------------------------------------------------

    def _add(self, task: Task) -> Task:
        with self.lock:
            self._tasks.append(task)
            if self.live and (self._ticker is None or not self._ticker.is_alive()):
                self._wake.clear()
                self._ticker = threading.Thread(
                    target=self._tick, daemon=True, name="llem-progress"
                )
                self._ticker.start()
        return task

    def _tick(self) -> None:
        while not self._wake.wait(self.refresh_s):
            with self.lock:
                if not self._tasks:
                    return
                self._erase()
                self._draw()

    def _draw(self) -> None:
        if not self.live:
            return
        shown = [t for t in self._tasks if t.elapsed() >= t.shown_after_s]
        if not shown:
            return
        for task in shown:
            task.seen = True
        text = " | ".join(task.status() for task in shown)
        width = _width(self.stream)
        if len(text) >= width:
            text = text[: max(width - 4, 0)] + "..."
        self._write(text)
        self._drawn = True

    def _erase(self) -> None:
        if self._drawn:
            self._write(_CLEAR)
            self._drawn = False

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text)
            self.stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False


def _width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        return 80
