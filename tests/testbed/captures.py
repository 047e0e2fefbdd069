"""The real outputs under tests/data: each file starts with `# source`, `# command`... lines,
then the marker line, then the output verbatim."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
VERBATIM = "# ---- verbatim output below ----\n"


def verbatim(path: str | Path) -> str:
    """The output of a file under tests/data (``captured/x.txt``, or an absolute path),
    without its header."""
    return (DATA / path).read_text().split(VERBATIM, 1)[1]
