"""Text from tools and containers made safe for a terminal: control characters shown escaped.

A host tool, a Docker error or a container's error file may carry terminal escapes
(``\\x1b]0;title\\x07``, ``\\x1b[2J``) or a carriage return that overwrites the line before it.
What llem prints goes through ``printable()``; what it writes as JSON keeps the raw text.
"""

from __future__ import annotations

import re

# Besides the C0 controls: DEL, the C1 controls, the Unicode format characters that reorder or
# hide text (bidirectional overrides and isolates, zero-width characters, the BOM), and lone
# surrogates (undecodable bytes kept by ``surrogateescape``).
_OTHERS = "\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ud800-\udfff\ufeff"
_UNSAFE = re.compile(f"[\x00-\x08\x0a-\x1f{_OTHERS}]")
_UNSAFE_KEEP_LINES = re.compile(f"[\x00-\x08\x0b-\x1f{_OTHERS}]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\u202e``).

    Tabs stay. Newlines stay only with ``lines=True`` (text meant to span lines); in a
    one-line field they are escaped too, so that a message cannot start a line of its own.
    """
    return (_UNSAFE_KEEP_LINES if lines else _UNSAFE).sub(_escape, text)


def ascii_int(text: str | None, max_digits: int = 18) -> int | None:
    """The number ``text`` spells in ASCII digits, blanks around it allowed; None for anything
    else: a sign, another script's digits (``"²"`` passes ``str.isdigit`` and fails ``int``),
    or more than ``max_digits`` digits (a tool's or a file's value is never that long)."""
    text = (text or "").strip()
    if not text or len(text) > max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def is_decimal(text: str) -> bool:
    """``text`` is ASCII digits with at most one point in them (``"9.0"``, ``"20480"``)."""
    digits = text.replace(".", "", 1)
    return bool(digits) and digits.isascii() and digits.isdigit()
