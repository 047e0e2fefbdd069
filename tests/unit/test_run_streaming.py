"""`run_streaming`: a command's output as it comes, on a terminal it can see, within a limit."""

from __future__ import annotations

import sys
import time

from pytest_llem.host.proc import run_streaming

SHOW = (
    "import os, sys, time\n"
    "print('tty' if os.isatty(1) else 'pipe', flush=True)\n"
    "time.sleep(0.3)\n"
    "print('second', flush=True)\n"
    "print('an error', file=sys.stderr)\n"
    "sys.exit(3)\n"
)


def test_output_arrives_while_the_command_runs_on_a_terminal() -> None:
    seen: list[tuple[float, str]] = []
    start = time.monotonic()
    result = run_streaming(
        [sys.executable, "-c", SHOW],
        timeout=30,
        on_output=lambda text: seen.append((time.monotonic() - start, text)),
    )
    assert (result.returncode, result.timed_out) == (3, False)
    text = "".join(chunk for _, chunk in seen)
    assert text.replace("\r\n", "\n") == "tty\nsecond\n"  # a terminal turns "\n" into "\r\n"
    first_at = next(at for at, chunk in seen if "tty" in chunk)
    assert first_at < result.duration_s - 0.2  # handed over before the command ended
    assert result.stdout.replace("\r\n", "\n") == "tty\nsecond\n"
    assert result.stderr == "an error\n"  # a pipe of its own


def test_a_command_past_its_limit_is_killed() -> None:
    start = time.monotonic()
    result = run_streaming(
        [sys.executable, "-c", "import time; print('x', flush=True); time.sleep(30)"],
        timeout=1,
        on_output=lambda text: None,
    )
    assert result.timed_out and result.returncode is None
    assert time.monotonic() - start < 10


def test_a_missing_command() -> None:
    result = run_streaming(["/nonexistent/llem-x"], timeout=5, on_output=lambda text: None)
    assert result.missing and result.returncode == 127
