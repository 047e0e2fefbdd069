"""Parsers of what ``nvidia-smi`` prints (and the summary of ``nvidia-container-cli info``).

Every parser takes the raw text, tolerates lines around the part it knows (pull progress,
prompts, log lines) and never raises: what it cannot read stays ``None`` / empty.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .text import ascii_int

__all__ = [
    "GpuInfo",
    "MigDevice",
    "SmiInfo",
    "parse_any",
    "parse_banner",
    "parse_container_cli_info",
    "parse_list",
    "parse_q",
    "parse_query",
    "parse_query_csv",
    "parse_version",
]


@dataclass(frozen=True)
class MigDevice:
    """One MIG instance of a GPU, as ``nvidia-smi -L`` lists it."""

    profile: str
    index: int
    uuid: str


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str = ""
    brand: str | None = None
    """``Product Brand`` (``-q``) or ``Brand`` (container-cli), as printed (``Tesla``)."""
    architecture: str | None = None
    """``Product Architecture`` of ``-q`` (``Turing``)."""
    compute_capability: str | None = None
    """``Architecture`` of ``nvidia-container-cli info`` / ``compute_cap`` (``8.6``)."""
    minor: int | None = None
    bus_id: str | None = None
    mig: tuple[MigDevice, ...] = ()

    def summary(self) -> dict[str, Any]:
        """The ``{index, name, uuid}`` record of reports and diagnoses."""
        return {"index": self.index, "name": self.name, "uuid": self.uuid}


@dataclass(frozen=True)
class SmiInfo:
    driver_version: str | None
    cuda_version: str | None
    """The highest CUDA version the driver supports (``None`` when not printed or N/A)."""
    gpus: list[GpuInfo] = field(default_factory=list)
    smi_version: str | None = None
    """The ``nvidia-smi`` binary's own version (banner); it may differ from the driver."""
    attached_gpus: int | None = None
    """``Attached GPUs`` of ``-q``: the count even when the text is cut short."""
    source: str = ""
    """The format read: ``banner``, ``query``, ``list``, ``q``, ``version``, ``container-cli``."""


_V = r"\d+(?:\.\d+)+"
_BUS_ID = r"[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]"

_SMI_VERSION = re.compile(rf"NVIDIA-SMI\s+({_V})")
_DRIVER_VERSION = re.compile(rf"Driver\s+Version\s*:\s*({_V})", re.I)
_CUDA_VERSION = re.compile(rf"CUDA\s+Version\s*:\s*({_V})", re.I)
# "|   0  NVIDIA GeForce RTX 4070        Off |   00000000:2D:00.0  On |" (all generations).
_BANNER_ROW = re.compile(
    rf"^\|\s*(\d+)\s+(\S.*?)\s+(?:On|Off|WDDM|TCC|N/A)\s*\|\s*({_BUS_ID})\b", re.M
)
_LIST_GPU = re.compile(r"^\s*GPU\s+(\d+):\s+(.+?)\s*(?:\(UUID:\s*([^)\s]+)\s*\))?\s*$")
_LIST_MIG = re.compile(r"^\s+MIG\s+(\S+)\s+Device\s+(\d+):\s*\(UUID:\s*([^)\s]+)\s*\)")
_Q_MARK = re.compile(r"==\s*NVSMI LOG\s*==|^\s*Attached GPUs\s*:", re.M)
_Q_GPU = re.compile(rf"^GPU\s+({_BUS_ID})\s*$")
_KEY_VALUE = re.compile(r"^\s*([A-Za-z][\w /.-]*?)\s*:\s*(.*?)\s*$")
_CLI_MARK = re.compile(rf"^\s*NVRM version:\s*{_V}", re.M | re.I)
_LIST_MARK = re.compile(r"^\s*GPU\s+\d+:\s+.+\(UUID:\s*GPU-", re.M)
_BANNER_MARK = re.compile(rf"NVIDIA-SMI\s+{_V}.*Driver\s+Version:")
_VERSION_MARK = re.compile(rf"^\s*NVIDIA-SMI\s+version\s*:\s*({_V})", re.M | re.I)

_UNIT = re.compile(
    r"^([-+]?\d+(?:\.\d+)?)\s*(?:%|W|mW|MiB|GiB|KiB|MB|GB|KB|MHz|GHz|C|°C|s|ms|us|V|mV|A)$"
)
_HEADER_CELL = re.compile(r"^[A-Za-z][\w.]*(?:\s*\[[^\]]*\])?$")
_PLAIN_FIELDS = frozenset({"name", "index", "uuid", "count", "pstate", "serial", "timestamp"})
_UUID_CELL = re.compile(r"^(?:GPU|MIG)-[0-9A-Fa-f][\w/-]*$")
_DRIVER_CELL = re.compile(r"^\d{3}\.\d{1,3}(?:\.\d{1,3})?$")
_NAME_CELL = re.compile(
    r"^(?:NVIDIA|Tesla|GeForce|Quadro|TITAN|GRID|RTX|Jetson|Orin|[AHLTV]\d{1,3}\b)", re.I
)
_NOT_AVAILABLE = frozenset({"n/a", "[n/a]", "[not supported]", "not supported", ""})


def _version(pattern: re.Pattern[str], text: str) -> str | None:
    m = pattern.search(text)
    return m.group(1) if m else None


def _index(value: str | None, position: int) -> int:
    number = ascii_int(value)
    return position if number is None else number


def _lines(text: str) -> list[str]:
    return text.splitlines() if isinstance(text, str) else []


# ---- banner -------------------------------------------------------------------------------


def parse_banner(text: str) -> SmiInfo:
    """Plain ``nvidia-smi``: versions from the header, one GPU per row of the device table.

    Drivers before 410 print no ``CUDA Version``; some print ``CUDA Version: N/A``: both give
    ``cuda_version=None``.
    """
    if not isinstance(text, str):
        return SmiInfo(None, None, [], source="banner")
    gpus = [
        GpuInfo(index=int(m.group(1)), name=m.group(2).strip(), bus_id=m.group(3))
        for m in _BANNER_ROW.finditer(text)
    ]
    return SmiInfo(
        driver_version=_version(_DRIVER_VERSION, text),
        cuda_version=_version(_CUDA_VERSION, text),
        gpus=_unique(gpus),
        smi_version=_version(_SMI_VERSION, text),
        source="banner",
    )


# ---- --version ----------------------------------------------------------------------------


def parse_version(text: str) -> SmiInfo:
    """``nvidia-smi --version`` (drivers 525+): ``NVIDIA-SMI version``, ``DRIVER version`` and
    ``CUDA Version`` lines; no GPUs."""
    if not isinstance(text, str):
        return SmiInfo(None, None, [], source="version")
    return SmiInfo(
        driver_version=_version(_DRIVER_VERSION, text),
        cuda_version=_version(_CUDA_VERSION, text),
        smi_version=_version(_VERSION_MARK, text),
        source="version",
    )


# ---- -L -----------------------------------------------------------------------------------


def parse_list(text: str) -> SmiInfo:
    """``nvidia-smi -L``: ``GPU N: NAME (UUID: GPU-...)`` lines, MIG lines under their GPU."""
    gpus: list[GpuInfo] = []
    migs: list[list[MigDevice]] = []
    for line in _lines(text):
        mig = _LIST_MIG.match(line)
        if mig and migs:
            migs[-1].append(MigDevice(mig.group(1), int(mig.group(2)), mig.group(3)))
            continue
        m = _LIST_GPU.match(line)
        if m:
            gpus.append(GpuInfo(index=int(m.group(1)), name=m.group(2), uuid=m.group(3) or ""))
            migs.append([])
    with_mig = [
        GpuInfo(g.index, g.name, g.uuid, mig=tuple(devices)) if devices else g
        for g, devices in zip(gpus, migs, strict=True)
    ]
    return SmiInfo(None, None, _unique(with_mig), source="list")


# ---- -q -----------------------------------------------------------------------------------

_Q_KEYS = {
    "Product Name": "name",
    "Product Brand": "brand",
    "Product Architecture": "architecture",
    "GPU UUID": "uuid",
    "Minor Number": "minor",
}


_Q_READ = frozenset({*_Q_KEYS, "Driver Version", "CUDA Version", "Attached GPUs"})


def parse_q(text: str) -> SmiInfo:
    """``nvidia-smi -q``: driver and CUDA versions, and per ``GPU <bus id>`` section the
    product name, brand, architecture, UUID and minor number.

    ``index`` is the position of the section (``-q`` lists GPUs in index order); the minor
    number (``N/A`` on WSL2) is kept apart in ``minor``.
    """
    driver = cuda = None
    attached: int | None = None
    sections: list[dict[str, str]] = []
    for line in _lines(text):
        gpu = _Q_GPU.match(line) if line.startswith("GPU") else None
        if gpu:
            sections.append({"bus_id": gpu.group(1)})
            continue
        # Most of the thousands of lines name a field not read here: skipped before a regex.
        if line.partition(":")[0].strip() not in _Q_READ:
            continue
        kv = _KEY_VALUE.match(line)
        if not kv:
            continue
        key, value = kv.group(1), kv.group(2)
        if sections and key in _Q_KEYS and _Q_KEYS[key] not in sections[-1]:
            sections[-1][_Q_KEYS[key]] = value
        elif key == "Driver Version" and driver is None:
            driver = value if re.fullmatch(_V, value) else None
        elif key == "CUDA Version" and cuda is None:
            cuda = value if re.fullmatch(_V, value) else None
        elif key == "Attached GPUs":
            attached = ascii_int(value)
    gpus = [
        GpuInfo(
            index=position,
            name=s.get("name", ""),
            uuid=s.get("uuid", ""),
            brand=_available(s.get("brand")),
            architecture=_available(s.get("architecture")),
            minor=ascii_int(s.get("minor")),
            bus_id=s["bus_id"],
        )
        for position, s in enumerate(sections)
    ]
    return SmiInfo(driver, cuda, gpus, attached_gpus=attached, source="q")


# ---- nvidia-container-cli info ------------------------------------------------------------


def parse_container_cli_info(text: str) -> SmiInfo:
    """The summary of ``nvidia-container-cli info``: ``NVRM version``, ``CUDA version`` and
    ``Device Index`` blocks (``Model``, ``Brand``, ``GPU UUID``, ``Architecture``)."""
    driver = cuda = None
    blocks: list[dict[str, str]] = []
    for line in _lines(text):
        kv = _KEY_VALUE.match(line)
        if not kv:
            continue
        key, value = kv.group(1).lower(), kv.group(2)
        if key == "nvrm version" and driver is None:
            driver = value if re.fullmatch(_V, value) else None
        elif key == "cuda version" and cuda is None:
            cuda = value if re.fullmatch(_V, value) else None
        elif key == "device index":
            blocks.append({"index": value})
        elif blocks and key in ("device minor", "model", "brand", "gpu uuid", "architecture"):
            blocks[-1].setdefault(key, value)
    gpus = [
        GpuInfo(
            index=_index(b["index"], position),
            name=b.get("model", ""),
            uuid=b.get("gpu uuid", ""),
            brand=_available(b.get("brand")),
            compute_capability=_available(b.get("architecture")),
            minor=ascii_int(b.get("device minor")),
        )
        for position, b in enumerate(blocks)
    ]
    return SmiInfo(driver, cuda, gpus, source="container-cli")


# ---- --query-gpu --------------------------------------------------------------------------


def _field_name(cell: str) -> str:
    """``utilization.gpu [%]`` -> ``utilization.gpu``."""
    return cell.split("[", 1)[0].strip().lower()


def _is_header(cells: Sequence[str]) -> bool:
    return all(_HEADER_CELL.match(c) for c in cells) and any(
        "." in c or "_" in c or _field_name(c) in _PLAIN_FIELDS for c in cells
    )


def _strip_unit(value: str) -> str:
    m = _UNIT.match(value)
    return m.group(1) if m else value


def parse_query_csv(
    text: str, fields: Sequence[str] | None = None, *, keep_units: bool = False
) -> list[dict[str, str]]:
    """Rows of ``nvidia-smi --query-gpu=F1,F2,... --format=csv[,noheader][,nounits]``.

    ``fields`` is the list passed to ``--query-gpu`` (any order); without it the header line
    of ``--format=csv`` names the columns. A header line is skipped either way; lines whose
    column count differs (error messages, log lines) are ignored. Values lose their unit
    (``83.92 W`` -> ``83.92``) unless ``keep_units``.
    """
    names = [_field_name(f) for f in fields] if fields else None
    rows: list[dict[str, str]] = []
    for line in _lines(text):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if _is_header(cells):
            if names is None:
                names = [_field_name(c) for c in cells]
                continue
            if [_field_name(c) for c in cells] == names:
                continue
        if names is None or len(cells) != len(names):
            continue
        values = cells if keep_units else [_strip_unit(c) for c in cells]
        rows.append(dict(zip(names, values, strict=True)))
    return rows


def _first(row: dict[str, str], *keys: str) -> str | None:
    for key in keys:
        value = row.get(key)
        if value is not None and value.lower() not in _NOT_AVAILABLE:
            return value
    return None


def parse_query(text: str, fields: Sequence[str] | None = None) -> SmiInfo:
    """``--query-gpu`` output as an :class:`SmiInfo` (index, name, uuid, driver version).

    Repeated rows of one GPU (``-l`` loops) count once.
    """
    rows = parse_query_csv(text, fields)
    return _info_from_rows(rows)


def _info_from_rows(rows: Iterable[dict[str, str]]) -> SmiInfo:
    driver: str | None = None
    gpus: list[GpuInfo] = []
    for position, row in enumerate(rows):
        driver = driver or _first(row, "driver_version")
        gpus.append(
            GpuInfo(
                index=_index(_first(row, "index"), position),
                name=_first(row, "name", "gpu_name") or "",
                uuid=_first(row, "uuid", "gpu_uuid") or "",
                compute_capability=_first(row, "compute_cap"),
                bus_id=_first(row, "pci.bus_id", "gpu_bus_id"),
            )
        )
    return SmiInfo(driver, None, _unique(gpus), source="query")


def _guess_rows(text: str) -> list[dict[str, str]]:
    """Rows of a ``noheader`` query whose field list is unknown, read by the shape of the
    values. Lines showing a GPU UUID or a driver version count (other lines, such as pull
    progress, are passed over); failing those, the text must be GPU names only."""
    rows: list[dict[str, str]] = []
    names: list[dict[str, str]] = []
    width = 0
    lines = [line.strip() for line in _lines(text) if line.strip()]
    for line in lines:
        cells = [c.strip() for c in line.split(",")]
        row: dict[str, str] = {}
        for position, cell in enumerate(cells):
            if _UUID_CELL.match(cell):
                row.setdefault("uuid", cell)
            elif _DRIVER_CELL.match(cell):
                row.setdefault("driver_version", cell)
            elif position == 0 and ascii_int(cell) is not None and len(cells) > 1:
                row["index"] = cell
            elif re.search(r"[A-Za-z]", cell) and not re.match(_BUS_ID, cell):
                row.setdefault("name", cell)
        if "uuid" in row or "driver_version" in row:
            if width in (0, len(cells)):
                width = len(cells)
                rows.append(row)
        elif len(cells) == 1 and _NAME_CELL.match(cells[0]):
            names.append(row)
    if rows:
        return rows
    return names if len(names) == len(lines) else []


# ---- detection ----------------------------------------------------------------------------


def parse_any(text: str) -> SmiInfo | None:
    """Recognise the format (``-q``, banner, ``--version``, ``-L``, container-cli info,
    ``--query-gpu``) and parse it; ``None`` when the text is none of them."""
    if not isinstance(text, str) or not text.strip():
        return None
    if _Q_MARK.search(text):
        return parse_q(text)
    if _BANNER_MARK.search(text):
        return parse_banner(text)
    if _VERSION_MARK.search(text):
        return parse_version(text)
    if _LIST_MARK.search(text):
        return parse_list(text)
    if _CLI_MARK.search(text):
        return parse_container_cli_info(text)
    rows = parse_query_csv(text) or _guess_rows(text)
    return _info_from_rows(rows) if rows else None


# ---- helpers ------------------------------------------------------------------------------


def _available(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() in _NOT_AVAILABLE else value


def _unique(gpus: list[GpuInfo]) -> list[GpuInfo]:
    """Drop repeats of the same GPU (looping output), keeping the first."""
    seen: set[str] = set()
    out: list[GpuInfo] = []
    for gpu in gpus:
        key = gpu.uuid or f"#{gpu.index}"
        if key not in seen:
            seen.add(key)
            out.append(gpu)
    return out
