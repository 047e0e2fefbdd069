"""proc.run: a limit on time, and on the memory a tool's output may cost."""

from __future__ import annotations

import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path

from pytest_llem.host.proc import MAX_OUTPUT, PARSED_OUTPUT_MAX, run, start

FLOOD = (
    "import sys\n"
    "sys.stdout.write('HEAD\\n')\n"
    "block = 'x' * 65535 + '\\n'\n"
    "for _ in range({n}): sys.stdout.write(block)\n"
    "sys.stdout.write('TAIL\\n'); sys.stderr.write('err\\n')\n"
)


def test_output_is_read_through_a_bounded_buffer() -> None:
    """40 MiB of output: the head and the tail are kept, and memory stays far below that."""
    tracemalloc.start()
    try:
        result = run([sys.executable, "-c", FLOOD.format(n=640)], timeout=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.returncode == 0
    assert result.stdout.startswith("HEAD\nxxx") and result.stdout.endswith("xxx\nTAIL\n")
    assert " bytes of output clipped ...]" in result.stdout
    assert len(result.stdout) < MAX_OUTPUT + 100
    assert result.stderr == "err\n"
    assert peak < 4 * 1024 * 1024, peak


def test_small_output_is_kept_whole() -> None:
    result = run([sys.executable, "-c", "print('a' * 1000); print('b')"], timeout=30)
    assert result.stdout == "a" * 1000 + "\nb\n"


def test_endless_output_stops_at_the_timeout() -> None:
    start = time.monotonic()
    endless = "import sys\nwhile True: sys.stdout.write('y' * 65536)\n"
    tracemalloc.start()
    try:
        result = run([sys.executable, "-c", endless], timeout=1.5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.timed_out and result.returncode is None
    assert time.monotonic() - start < 10
    assert len(result.stdout) < MAX_OUTPUT + 100
    assert peak < 4 * 1024 * 1024, peak


def test_a_grandchild_holding_the_pipe_does_not_block_a_timeout() -> None:
    """The group is killed at the timeout; a process that left it cannot keep run() waiting."""
    escape = (
        "import os, subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'],"
        " start_new_session=True)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    start = time.monotonic()
    result = run([sys.executable, "-c", escape], timeout=1)
    took = time.monotonic() - start
    os.kill(int(result.stdout.split()[0]), signal.SIGKILL)
    assert result.timed_out
    assert took < 6


def test_a_started_command_runs_while_the_caller_goes_on(tmp_path: Path) -> None:
    """`start()` returns once the command runs (the early host queries rely on it), and
    `finish()` collects what it printed, however much later."""
    gate = tmp_path / "gate"
    waits = (
        f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.01)\nprint('done')"
    )
    started = start([sys.executable, "-c", waits])
    assert started.proc is not None and started.proc.poll() is None  # running, not waited for
    gate.touch()
    result = started.finish(60)
    assert result.ok and result.stdout == "done\n" and not result.missing


def test_a_started_commands_limit_counts_from_its_start() -> None:
    """Time spent before `finish()` is part of the limit: a query started early cannot take
    longer than a query started late."""
    started = start([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(1.0)
    begin = time.monotonic()
    result = started.finish(1.0)
    assert result.timed_out and result.returncode is None
    assert time.monotonic() - begin < 0.9  # the limit had passed: no second wait


def test_a_missing_executable_is_a_result_not_an_error(tmp_path: Path) -> None:
    started = start([str(tmp_path / "no-such-tool"), "--version"])
    result = started.finish(10)
    assert result.missing and result.returncode == 127 and "no-such-tool" in result.stderr


# `limit=`: output that llem parses, read whole up to the limit and never in part.
BLOCKS = "import sys\nfor n in range({n}): sys.stdout.write(f'{{n:09}}' + 'x' * 1014 + '\\n')\n"


def test_parsed_output_is_read_whole() -> None:
    """200 kB, three times what the head and the tail of other output keep: all of it."""
    result = run([sys.executable, "-c", BLOCKS.format(n=200)], timeout=30, limit=PARSED_OUTPUT_MAX)
    assert result.ok and not result.too_large
    lines = result.stdout.splitlines()
    assert [int(line[:9]) for line in lines] == list(range(200))
    assert len(result.stdout) == 200 * 1024 > MAX_OUTPUT


def test_parsed_output_past_the_limit_is_too_large_not_partial() -> None:
    """20 MiB against a 16 MiB limit: no output at all, an error that says why, and the
    memory of the limit at most."""
    tracemalloc.start()
    try:
        flood = BLOCKS.format(n=20 * 1024) + "sys.stderr.write('done\\n')\n"
        result = run([sys.executable, "-c", flood], timeout=60, limit=PARSED_OUTPUT_MAX)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.too_large and not result.ok and not result.timed_out
    assert result.stdout == ""
    assert result.stderr.startswith(f"`{sys.executable} -c import sys")
    assert "printed more than 16 MiB: too large to read" in result.stderr
    assert peak < PARSED_OUTPUT_MAX + 8 * 1024 * 1024, peak


def test_endless_parsed_output_is_stopped_at_the_limit_not_the_timeout() -> None:
    endless = "import sys\nwhile True: sys.stdout.write('y' * 65536)\n"
    begin = time.monotonic()
    result = run([sys.executable, "-c", endless], timeout=60, limit=1024 * 1024)
    assert time.monotonic() - begin < 10
    assert result.too_large and not result.timed_out and result.stdout == ""
    assert "printed more than 1 MiB" in result.stderr


def test_a_started_command_takes_its_limit() -> None:
    code = "import sys; sys.stdout.write('z' * 5000); sys.stderr.write('e' * 5000)"
    assert start([sys.executable, "-c", code], limit=4096).finish(30).too_large
    whole = start([sys.executable, "-c", code], limit=5000).finish(30)
    assert whole.ok and whole.stdout == "z" * 5000 and whole.stderr == "e" * 5000
