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


def with_value(text: str, gpu: int, path: tuple[str, ...], value: str) -> str:
    """``nvidia-smi -q`` output ``text`` with the value at ``path`` (section labels, then the
    label) of its ``gpu``-th GPU section replaced, at the column the line already has: a real
    layout with one value injected. Raises ``LookupError`` when the line is not there."""
    lines = text.split("\n")
    section = -1
    found: list[str] = []
    for number, line in enumerate(lines):
        if line.startswith("GPU ") and not line.startswith(" "):
            section += 1
            found = []
            continue
        if section != gpu or not line.startswith("    "):
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 4
        label, colon, _ = line.strip().partition(":")
        del found[depth - 1 :]
        found.append(label.strip())
        if tuple(found) == path and colon:
            head = line[: line.index(":") + 1]
            lines[number] = f"{head} {value}"
            return "\n".join(lines)
    raise LookupError(f"no {' / '.join(path)} in GPU section {gpu}")
