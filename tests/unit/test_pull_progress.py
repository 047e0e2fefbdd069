"""Progress of long work without a host: `docker pull`'s output read back, and how it is shown."""

from __future__ import annotations

import io
import re

import pytest

from pytest_llem.domain.pulls import PullProgress, human, plain_text, size_bytes
from pytest_llem.progress import Progress

# `docker pull` of a one-layer image on a pseudo-terminal (CLI 20.10, captured on the test bed).
TERMINAL = (
    "1: Pulling from llem-test/x\r\n\r\n"
    "\x1b[1A\x1b[2K\r332ce0e28fc4: Pulling fs layer \r\x1b[1B"
    "\x1b[1A\x1b[2K\r332ce0e28fc4: Downloading  32.77kB/1.065MB\r\x1b[1B"
    "\x1b[1A\x1b[2K\r332ce0e28fc4: Verifying Checksum \r\x1b[1B"
    "\x1b[1A\x1b[2K\r332ce0e28fc4: Download complete \r\x1b[1B"
    "\x1b[1A\x1b[2K\r332ce0e28fc4: Extracting  32.77kB/1.065MB\r\x1b[1B"
    "\x1b[1A\x1b[2K\r332ce0e28fc4: Extracting  1.065MB/1.065MB\r\x1b[1B"
    "\x1b[1A\x1b[2K\r332ce0e28fc4: Pull complete \r\x1b[1B"
    "Digest: sha256:2cd1ff4fdcd4bc74a7b07d31a1142073bfda7574bbe7c0036284b7c0c2f1ca6d\r\n"
    "Status: Downloaded newer image for 127.0.0.1:37527/llem-test/x:1\r\n"
    "127.0.0.1:37527/llem-test/x:1\r\n"
)
# A wide terminal: the CLI draws a bar (the form of Docker's documentation).
BARS = [
    "1f6a2f1e4b5c: Already exists",
    "a3ed95caeb02: Pulling fs layer",
    "c5e155d5a1d1: Pulling fs layer",
    "a3ed95caeb02: Downloading [==================>                              ]  12.5MB/33.6MB",
    "c5e155d5a1d1: Downloading [=>                                               ]  512kB/21.4MB",
]


def fed_in_pieces(text: str, size: int = 5) -> PullProgress:
    state = PullProgress()
    for start in range(0, len(text), size):
        state.feed(text[start : start + size])
    return state


def test_a_terminal_pull_read_back_in_any_pieces() -> None:
    for size in (1, 5, 64, len(TERMINAL)):
        state = fed_in_pieces(TERMINAL, size)
        assert (state.layers_done, len(state.layers)) == (1, 1)
        assert (state.bytes_done, state.bytes_total) == (1_065_000, 1_065_000)
        assert state.summary() == "1 of 1 layer(s), 1.1 MB of 1.1 MB"


def test_a_pull_in_progress() -> None:
    state = PullProgress()
    assert state.summary() == "starting"
    state.feed("\r\n".join(BARS[:3]) + "\r\n")
    assert state.summary() == "1 of 3 layer(s)"  # sizes not known yet
    state.feed("\r\n".join(BARS[3:]) + "\r\n")
    assert (state.bytes_done, state.bytes_total) == (12_500_000 + 512_000, 33_600_000 + 21_400_000)
    assert state.summary() == "1 of 3 layer(s), 13.0 MB of 55.0 MB"
    state.feed("a3ed95caeb02: Download complete\nc5e155d5a1d1: Retrying in 5 seconds\n")
    assert state.bytes_done == 33_600_000 + 512_000


def test_the_plain_output_of_a_cli_not_on_a_terminal_reads_the_same() -> None:
    plain = "1: Pulling from x\n332ce0e28fc4: Pulling fs layer\n332ce0e28fc4: Pull complete\n"
    state = fed_in_pieces(plain)
    assert (state.layers_done, state.bytes_total) == (1, None)
    assert state.summary() == "1 of 1 layer(s)"


def test_plain_text_is_what_the_terminal_finally_shows() -> None:
    assert plain_text(TERMINAL) == (
        "1: Pulling from llem-test/x\n"
        "332ce0e28fc4: Pull complete\n"
        "Digest: sha256:2cd1ff4fdcd4bc74a7b07d31a1142073bfda7574bbe7c0036284b7c0c2f1ca6d\n"
        "Status: Downloaded newer image for 127.0.0.1:37527/llem-test/x:1\n"
        "127.0.0.1:37527/llem-test/x:1\n"
    )
    assert plain_text("") == ""


@pytest.mark.parametrize(
    ("text", "n"),
    [("512B", 512), ("32.77kB", 32_770), ("1.065MB", 1_065_000), ("4.2GB", 4_200_000_000),
     ("2KiB", 2048), ("1.5 MB", 1_500_000)],
)  # fmt: skip
def test_sizes(text: str, n: int) -> None:
    assert size_bytes(text) == n


def test_human_sizes() -> None:
    assert [human(n) for n in (0, 999, 36_450, 1_065_000, 450_000_000, 4_200_000_000)] == [
        "0 B", "999 B", "36.5 kB", "1.1 MB", "450 MB", "4.2 GB",
    ]  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def shown(stream: io.StringIO) -> list[str]:
    """What a terminal showed, redraw by redraw (repeats of the same line once)."""
    parts = [p for p in re.split(r"\r\x1b\[K|\n", stream.getvalue()) if p]
    return [p for i, p in enumerate(parts) if i == 0 or p != parts[i - 1]]


def test_without_a_terminal_a_pull_gets_a_line_at_its_start_and_end() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, clock=clock)
    assert not progress.live  # a StringIO is no terminal
    pull = progress.pull("cuda-compat[x/y:1]", "x/y:1", 600)
    pull.feed(TERMINAL)
    probe = progress.probe("gpu-in-container[x/y:1]", 30)
    clock.now = 12.34
    probe.end()
    pull.finish(ok=True)
    failed = progress.pull("cuda-compat[x/z:1]", "x/z:1", 600)
    failed.finish(ok=False)
    late = progress.pull("cuda-compat[x/w:1]", "x/w:1", 5)
    clock.now = 17.4
    late.finish(ok=False, timed_out=True)
    assert out.getvalue() == (
        "pulling x/y:1 for cuda-compat[x/y:1] (limit 600 s)\n"
        "pulled x/y:1 in 12.3 s (1 of 1 layer(s), 1.1 MB of 1.1 MB)\n"
        "pulling x/z:1 for cuda-compat[x/z:1] (limit 600 s)\n"
        "pull of x/z:1 failed after 0.0 s\n"
        "pulling x/w:1 for cuda-compat[x/w:1] (limit 5 s)\n"
        "pull of x/w:1 stopped after 5 s (limit 5 s)\n"
    )


def test_on_a_terminal_one_live_line_is_redrawn_and_erased() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, live=True, clock=clock, refresh_s=3600)  # redrawn as asked only
    probe = progress.probe("g[i]", 30)
    progress.say("a kept line")  # a probe under 2 s is not shown
    assert out.getvalue() == "a kept line\n"
    pull = progress.pull("c[x]", "x/z:1", 600)
    pull.feed("\n".join(BARS) + "\n")
    clock.now = 2.6
    progress.say("another")
    probe.end()
    pull.finish(ok=True)
    progress.close()
    both = "g[i]: GPU probe running (limit 30 s), 3 s | c[x]: pulling, 1 of 3 layer(s), 13.0 MB"
    assert shown(out) == [
        "a kept line",
        "another",
        both[:76] + "...",  # 80 columns where the width is unknown
        "c[x]: pulling, 1 of 3 layer(s), 13.0 MB of 55.0 MB, 3 s",
        "pulled x/z:1 in 2.6 s (1 of 3 layer(s), 13.0 MB of 55.0 MB)",
    ]
    assert out.getvalue().endswith("\n")  # nothing left on the live line


def test_a_live_line_never_wraps() -> None:
    out = io.StringIO()
    progress = Progress(out, live=True, refresh_s=3600)
    progress.pull("cuda-compat[" + "r/" * 60 + "i:1]", "r/i:1", 600)
    progress.say("x")
    line = shown(out)[-1]
    assert len(line) == 79 and line.endswith("...")
    progress.close()


def test_a_fast_pull_on_a_terminal_leaves_nothing() -> None:
    out = io.StringIO()
    progress = Progress(out, live=True, refresh_s=3600)
    progress.pull("cuda-compat[x/y:1]", "x/y:1", 600).finish(ok=True)  # never drawn
    assert out.getvalue() == ""
