"""Text from tools made safe for a terminal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_llem.domain.text import printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, ünïcode — ok", "plain text, ünïcode — ok"),
        ("\x1b]0;pwned\x07title", "\\x1b]0;pwned\\x07title"),
        ("\x1b[2Jcleared", "\\x1b[2Jcleared"),
        ("progress\rover", "progress\\rover"),
        ("a\tb", "a\tb"),
        ("nul\x00del\x7fcsi\x9b", "nul\\x00del\\x7fcsi\\x9b"),
        ("abc\u202edcba", "abc\\u202edcba"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("bad byte \udcff", "bad byte \\udcff"),
    ],
)
def test_controls_are_escaped(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert printable(raw, lines=True) == shown


def test_newlines_stay_only_where_lines_are_meant() -> None:
    assert printable("one\ntwo") == "one\\ntwo"
    assert printable("one\ntwo\x1b[0m", lines=True) == "one\ntwo\\x1b[0m"


@given(st.text())
def test_nothing_unsafe_survives(text: str) -> None:
    for shown in (printable(text), printable(text, lines=True)):
        assert not any(ord(c) < 0x20 and c not in "\t\n" for c in shown)
        assert not any(0x7F <= ord(c) <= 0x9F for c in shown)
        assert "\n" not in printable(text)
