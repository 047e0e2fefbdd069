"""What `docker pull` shows a terminal, read back: layers done, bytes, and its plain text.

On a terminal the docker CLI redraws one line per layer (`ID: Downloading  1.2MB/4.5MB`,
with a bar when the terminal has a width) using cursor movements; elsewhere it prints only the
layers' state changes. Both read the same here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CURSOR_DOWN = re.compile(r"\x1b\[\d*B")
_LAYER = re.compile(
    r"^(?P<id>[0-9a-f]{12,64}): (?P<status>[A-Za-z][A-Za-z ]*?)"
    r"(?:\s+\[[=> ]*\])?"
    r"(?:\s+(?P<done>[\d.]+\s?[kKMGTP]?i?B)/(?P<total>[\d.]+\s?[kKMGTP]?i?B))?\s*$"
)
_UNITS = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_DOWNLOADED = ("Verifying Checksum", "Download complete", "Extracting", "Pull complete")


def size_bytes(text: str) -> int:
    """`1.065MB` -> 1065000 (the CLI's decimal units; `KiB` style too)."""
    number = re.match(r"[\d.]+", text)
    unit = text[number.end() :].strip() if number else ""
    scale = 1024 ** "_KMGTP".index(unit[0]) if unit.endswith("iB") else _UNITS[unit[:-1]]
    return int(float(number.group()) * scale) if number else 0


def human(n: int) -> str:
    """Bytes as a person reads them: `512 B`, `36 kB`, `1.1 MB`, `4.2 GB`."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n} B"


@dataclass
class Layer:
    status: str = ""
    downloaded: int = 0
    total: int | None = None
    done: bool = False


class PullProgress:
    """The state of one pull, fed its output as it comes (in any pieces)."""

    def __init__(self) -> None:
        self.layers: dict[str, Layer] = {}
        self._partial = ""

    def feed(self, text: str) -> None:
        lines = re.split(r"[\r\n]", self._partial + text)
        self._partial = lines.pop()
        for line in lines:
            self._read(_CSI.sub("", line).strip())

    def _read(self, line: str) -> None:
        match = _LAYER.match(line)
        if match is None:
            return
        layer = self.layers.setdefault(match["id"], Layer())
        status = match["status"]
        layer.status = status
        if match["total"] and status == "Downloading":
            layer.downloaded, layer.total = size_bytes(match["done"]), size_bytes(match["total"])
        elif match["total"] and layer.total is None:
            layer.total = size_bytes(match["total"])
        if status in _DOWNLOADED and layer.total is not None:
            layer.downloaded = layer.total
        if status in ("Pull complete", "Already exists"):
            layer.done = True

    @property
    def layers_done(self) -> int:
        return sum(layer.done for layer in self.layers.values())

    @property
    def bytes_done(self) -> int:
        return sum(layer.downloaded for layer in self.layers.values())

    @property
    def bytes_total(self) -> int | None:
        """The bytes to download, once every layer still to download has said its size."""
        sizes = [layer.total for layer in self.layers.values() if layer.status != "Already exists"]
        return None if not sizes or None in sizes else sum(s for s in sizes if s is not None)

    def summary(self) -> str:
        """`1 of 3 layers, 1.2 of 4.5 MB` (what is known so far)."""
        if not self.layers:
            return "starting"
        text = f"{self.layers_done} of {len(self.layers)} layer(s)"
        total = self.bytes_total
        if total:
            text += f", {human(self.bytes_done)} of {human(total)}"
        elif self.bytes_done:
            text += f", {human(self.bytes_done)}"
        return text


def plain_text(raw: str) -> str:
    """A terminal's output as plain lines: cursor movements gone, and each layer's line once,
    with its last state (as the CLI prints it when not on a terminal)."""
    lines: list[str] = []
    layer_line: dict[str, int] = {}
    for line in re.split(r"[\r\n]", _CSI.sub("", _CURSOR_DOWN.sub("\n", raw))):
        line = line.strip()
        match = _LAYER.match(line)
        if not line:
            continue
        if match is not None and match["id"] in layer_line:
            lines[layer_line[match["id"]]] = line
            continue
        if match is not None:
            layer_line[match["id"]] = len(lines)
        lines.append(line)
    return "".join(line + "\n" for line in lines)
