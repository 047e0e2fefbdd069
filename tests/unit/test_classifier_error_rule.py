"""The one rule for "ok": an output with an error line is never "ok", with or without an exit
status; "ok" is for outputs that show no failure (nvidia-smi tables and lists, or a command
that printed no error words)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from testbed.captures import verbatim

from pytest_llem.domain.diagnosis import (
    _BENIGN_LINE,
    _ERROR_CLUES,
    _ERROR_WORDS,
    _HEAD,
    _TAIL,
    _error_lines,
    diagnose,
)

DATA = Path(__file__).parent.parent / "data"
REFERENCE = DATA / "reference"
# Word boundaries are not generated; every match of the words is a match of this too.
_ERROR_WORDS_WITHOUT_BOUNDARIES = _ERROR_WORDS.pattern.replace(r"\b", "")


def _transcript(m: dict[str, object]) -> str:
    return "\n".join(str(part) for part in (m["stdout"], m["stderr"]) if part)


MESSAGES = [
    json.loads(line)
    for path in sorted(REFERENCE.glob("*.jsonl"))
    for line in path.read_text().splitlines()
    if line.strip()
]
# Captures of a failure say so in their header ("# expect: unknown").
CAPTURED_FAILURES = {
    p.name for p in (DATA / "captured").glob("*.txt") if "\n# expect: " in p.read_text()
}
# Real healthy outputs: the reference's and the ones captured on an H200 host.
SUCCESSES = sorted(
    {_transcript(m) for m in MESSAGES if m["category"] == "ok"}
    | {verbatim(p) for p in REFERENCE.glob("*.txt")}
    | {verbatim(p) for p in (DATA / "captured").glob("*.txt") if p.name not in CAPTURED_FAILURES}
)
# What the issue calls error-ish: any of these words or phrases on a line.
ERROR_PHRASES = (
    "Error",
    "error:",
    "failed",
    "Failed",
    "could not",
    "cannot",
    "not found",
    "denied",
    "unable to",
    "exit status 1",
    "exited with code 2",
    "permission denied",
    "connection refused",
    "no such file or directory",
    "invalid argument",
    "returned non-zero exit status 1",
    "is not a valid field",
    "Insufficient Permissions",
)
# Lines a log labels as info, warning or debug (glog's I/W prefix, logrus' DEBU[): notes
# beside a failure, never the failure itself.
LABELLED_NOTE = re.compile(r"\s*(?:[IW]\d{4} |DEBU\[|INFO\[)")
# Real failure lines of the corpus that carry such a phrase.
REAL_ERROR_LINES = sorted(
    {
        line.strip()
        for m in MESSAGES
        if m["category"] != "ok"
        for line in _transcript(m).splitlines()
        if any(p.lower() in line.lower() for p in ERROR_PHRASES)
        and not line.lstrip().lower().startswith(("unable to find image", "warn", "time="))
        and not LABELLED_NOTE.match(line)
    }
)
PREFIXES = (
    "",
    "docker: ",
    "Error: ",
    "ERRO[0000] ",
    "nvidia-container-cli: ",
    "crun: ",
    "bash: ",
    "Error response from daemon: ",
    "E0101 12:00:00.000000 1 main.go:42] ",
    "Traceback (most recent call last): ",
)
words = st.lists(
    st.sampled_from(["probe", "container", "the", "gpu", "device", "llem", "run", "/dev/nvidia0"]),
    max_size=4,
).map(" ".join)
tails = st.lists(
    st.sampled_from(["model", "weights", "cuda", "socket", "request", "driver", "x", "42"]),
    min_size=1,
    max_size=4,
).map(" ".join)
made_error_lines = st.builds(
    lambda prefix, head, phrase, tail: f"{prefix}{head} {phrase} {tail}".replace("  ", " "),
    st.sampled_from(PREFIXES),
    words,
    st.sampled_from(ERROR_PHRASES),
    tails,
)
error_lines = st.sampled_from(REAL_ERROR_LINES) | made_error_lines


def test_the_material_is_there() -> None:
    assert len(SUCCESSES) >= 25
    assert len(REAL_ERROR_LINES) >= 80


@pytest.mark.parametrize("index", range(len(SUCCESSES)))
def test_real_healthy_outputs_are_ok(index: int) -> None:
    for returncode in (0, None):
        assert diagnose(SUCCESSES[index], returncode).cause == "ok"


@settings(max_examples=500, deadline=None)
@given(
    success=st.sampled_from(SUCCESSES),
    line=error_lines,
    where=st.floats(0, 1),
    returncode=st.sampled_from([0, None]),
    crlf=st.booleans(),
)
def test_an_error_line_added_to_a_success_is_never_ok(
    success: str, line: str, where: float, returncode: int | None, crlf: bool
) -> None:
    lines = success.splitlines()
    at = round(where * len(lines))
    text = "\n".join([*lines[:at], line, *lines[at:]])
    if crlf:
        text = text.replace("\n", "\r\n")
    d = diagnose(text, returncode)
    assert d.cause != "ok", (line, d)
    if d.cause == "unknown":
        assert d.details["output"]


@settings(max_examples=300, deadline=None)
@given(line=error_lines, returncode=st.sampled_from([0, None]))
def test_an_error_line_alone_is_never_ok(line: str, returncode: int | None) -> None:
    assert diagnose(line, returncode).cause != "ok"


@settings(max_examples=100, deadline=None)
@given(line=error_lines, filler=st.integers(1_000, 40_000))
def test_an_error_line_in_the_middle_of_a_long_success_is_never_ok(line: str, filler: int) -> None:
    """The classified window is the head and the tail; the rest is still read for errors."""
    step = "step 100 loss 0.25 tokens/s 5210.7\n"
    text = step * filler + line + "\n" + step * filler
    assert diagnose(text, None).cause != "ok"


@pytest.mark.parametrize("edge", ["head", "tail"])
@pytest.mark.parametrize("offset", [1, 3, 7, 12])
def test_an_error_line_cut_by_the_windows_edge_is_read_whole(edge: str, offset: int) -> None:
    """Hypothesis found " Error weights" cut in two at the tail's edge: neither half reads as
    an error. The line is read whole."""
    line, size = " Error weights", 100 * 1024
    at = (_HEAD if edge == "head" else size - _TAIL) - offset
    text = "x" * (at - 1) + "\n" + line + "\n"
    text += "x" * (size - len(text) - 1) + "\n"
    assert diagnose(text, None).cause != "ok"


@pytest.mark.parametrize(
    "text",
    [
        "Error: something unexpected happened while starting the probe",
        "failed to start the experiment",
        "could not open /dev/nvidia-uvm",
        "cannot allocate memory",
        "unable to open the model directory",
        "access denied by policy",
        "process exited with status 3",
        "subprocess.CalledProcessError: Command '['python3', 'bench.py']' returned non-zero "
        "exit status 1.",
        "panic: runtime error: invalid memory address or nil pointer dereference",
    ],
)
def test_without_an_exit_status_error_text_is_unknown_with_its_text(text: str) -> None:
    d = diagnose(text, None)
    assert d.cause == "unknown"
    assert d.details["output"] == text
    assert d.message.startswith("Unrecognised failure: ")


def test_the_message_of_an_unknown_failure_names_its_last_error_line() -> None:
    text = "loading model\nError: out of disk space on /models\nshutting down cleanly\n"
    assert diagnose(text, None).message == (
        "Unrecognised failure: Error: out of disk space on /models"
    )


@pytest.mark.parametrize(
    "text",
    [
        "hello from the container",
        "groups: cannot find name for group ID 993",  # documented as cosmetic by NVIDIA
        "        Correctable Error                              : 0\n"
        "        Remapping Failure Occurred                     : No\n"
        "    ECC Errors\n",
        "WARNING: bridge-nf-call-iptables is disabled",
        'WARN[0000] Failed to decode the keys ["storage.options.override_kernel_check"]',
        'time="2024-05-01T10:00:00Z" level=info msg="trying next host" error="failed to do '
        'request"\nGPU 0: NVIDIA H200 (UUID: GPU-00000000-1111-2222-3333-444444444444)',
        "|   0  NVIDIA H200  On  | 00000000:19:00.0 Off |  0 |\n"
        "|    0   N/A  N/A  4242  C  python error_analysis.py  1200MiB |",
        "build flags: -O2 -Werror=format-security -Wall",
        "Unable to find image 'nvidia/cuda:12.4.1-base-ubuntu22.04' locally\n"
        "12.4.1-base-ubuntu22.04: Pulling from nvidia/cuda\n"
        "Status: Downloaded newer image for nvidia/cuda:12.4.1-base-ubuntu22.04",
    ],
)
def test_words_that_are_no_error_leave_a_success_ok(text: str) -> None:
    for returncode in (0, None):
        assert diagnose(text, returncode).cause == "ok"


def test_a_nonzero_exit_without_error_words_stays_unknown() -> None:
    d = diagnose("hello from the container", 3)
    assert d.cause == "unknown"


def test_the_capture_of_an_unknown_field_is_a_failure() -> None:
    [name] = CAPTURED_FAILURES
    text = verbatim(DATA / "captured" / name)
    assert diagnose(text, None).cause == "unknown"


@settings(max_examples=300, deadline=None)
@given(st.from_regex(_ERROR_WORDS_WITHOUT_BOUNDARIES, fullmatch=True))
def test_every_error_word_holds_a_clue(words: str) -> None:
    """The lines judged are found by their clues: a match without one would go unseen."""
    assert any(clue in words for clue in _ERROR_CLUES), words


def test_an_error_word_alone_is_found() -> None:
    for words in REAL_ERROR_LINES:
        low = words.lower()
        assert (next(_error_lines(low), None) is not None) == bool(
            _ERROR_WORDS.search(low) and not _BENIGN_LINE.match(low)
        ), words


@pytest.mark.parametrize("edge", ["head", "tail"])
@pytest.mark.parametrize("offset", [5, 20, 40])
def test_a_message_at_the_windows_edge_is_classified_whole(edge: str, offset: int) -> None:
    message = (
        'docker: Error response from daemon: could not select device driver "" with '
        "capabilities: [[gpu]]."
    )
    size = 100 * 1024
    at = (_HEAD if edge == "head" else size - _TAIL) - offset
    text = "x" * (at - 1) + "\n" + message + "\n"
    text += "x" * (size - len(text) - 1) + "\n"
    assert diagnose(text, 125).cause == "gpu_driver_not_configured"
