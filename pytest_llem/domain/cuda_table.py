"""NVIDIA's CUDA toolkit → minimum Linux driver table, and numeric version comparison.

Pure data and functions, no I/O. Used to name the driver an image needs, and to derive the CUDA
version a driver supports when ``nvidia-smi`` does not print one.
"""

from __future__ import annotations

import re
from itertools import zip_longest
from typing import NamedTuple

__all__ = [
    "CUDA_RELEASES",
    "CudaRelease",
    "compare_versions",
    "cuda_for_driver",
    "min_driver_for_cuda",
]


class CudaRelease(NamedTuple):
    """One row of NVIDIA's table: a toolkit release and the Linux driver it needs."""

    label: str  # the row's label, as NVIDIA writes it
    cuda: str  # MAJOR.MINOR of the release
    driver: str  # minimum Linux x86_64 driver (the driver packaged with that toolkit)


# "CUDA Toolkit | Toolkit Driver Version", Linux x86_64 column, copied verbatim from the
# CUDA Toolkit 13.1 release notes, section 2.2 "CUDA Driver":
#   https://docs.nvidia.com/cuda/archive/13.1.0/cuda-toolkit-release-notes/index.html
#   (current: https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/index.html)
# NVIDIA's table has no CUDA 12.7 row. Release candidates are kept but not used as minimums.
CUDA_RELEASES: tuple[CudaRelease, ...] = (
    CudaRelease("CUDA 13.1", "13.1", "590.44.01"),
    CudaRelease("CUDA 13.0 Update 2", "13.0", "580.95.05"),
    CudaRelease("CUDA 13.0 Update 1", "13.0", "580.82.07"),
    CudaRelease("CUDA 13.0 GA", "13.0", "580.65.06"),
    CudaRelease("CUDA 12.9 Update 1", "12.9", "575.57.08"),
    CudaRelease("CUDA 12.9 GA", "12.9", "575.51.03"),
    CudaRelease("CUDA 12.8 Update 1", "12.8", "570.124.06"),
    CudaRelease("CUDA 12.8 GA", "12.8", "570.26"),
    CudaRelease("CUDA 12.6 Update 3", "12.6", "560.35.05"),
    CudaRelease("CUDA 12.6 Update 2", "12.6", "560.35.03"),
    CudaRelease("CUDA 12.6 Update 1", "12.6", "560.35.03"),
    CudaRelease("CUDA 12.6 GA", "12.6", "560.28.03"),
    CudaRelease("CUDA 12.5 Update 1", "12.5", "555.42.06"),
    CudaRelease("CUDA 12.5 GA", "12.5", "555.42.02"),
    CudaRelease("CUDA 12.4 Update 1", "12.4", "550.54.15"),
    CudaRelease("CUDA 12.4 GA", "12.4", "550.54.14"),
    CudaRelease("CUDA 12.3 Update 1", "12.3", "545.23.08"),
    CudaRelease("CUDA 12.3 GA", "12.3", "545.23.06"),
    CudaRelease("CUDA 12.2 Update 2", "12.2", "535.104.05"),
    CudaRelease("CUDA 12.2 Update 1", "12.2", "535.86.09"),
    CudaRelease("CUDA 12.2 GA", "12.2", "535.54.03"),
    CudaRelease("CUDA 12.1 Update 1", "12.1", "530.30.02"),
    CudaRelease("CUDA 12.1 GA", "12.1", "530.30.02"),
    CudaRelease("CUDA 12.0 Update 1", "12.0", "525.85.12"),
    CudaRelease("CUDA 12.0 GA", "12.0", "525.60.13"),
    CudaRelease("CUDA 11.8 GA", "11.8", "520.61.05"),
    CudaRelease("CUDA 11.7 Update 1", "11.7", "515.48.07"),
    CudaRelease("CUDA 11.7 GA", "11.7", "515.43.04"),
    CudaRelease("CUDA 11.6 Update 2", "11.6", "510.47.03"),
    CudaRelease("CUDA 11.6 Update 1", "11.6", "510.47.03"),
    CudaRelease("CUDA 11.6 GA", "11.6", "510.39.01"),
    CudaRelease("CUDA 11.5 Update 2", "11.5", "495.29.05"),
    CudaRelease("CUDA 11.5 Update 1", "11.5", "495.29.05"),
    CudaRelease("CUDA 11.5 GA", "11.5", "495.29.05"),
    CudaRelease("CUDA 11.4 Update 4", "11.4", "470.82.01"),
    CudaRelease("CUDA 11.4 Update 3", "11.4", "470.82.01"),
    CudaRelease("CUDA 11.4 Update 2", "11.4", "470.57.02"),
    CudaRelease("CUDA 11.4 Update 1", "11.4", "470.57.02"),
    CudaRelease("CUDA 11.4.0 GA", "11.4", "470.42.01"),
    CudaRelease("CUDA 11.3.1 Update 1", "11.3", "465.19.01"),
    CudaRelease("CUDA 11.3.0 GA", "11.3", "465.19.01"),
    CudaRelease("CUDA 11.2.2 Update 2", "11.2", "460.32.03"),
    CudaRelease("CUDA 11.2.1 Update 1", "11.2", "460.32.03"),
    CudaRelease("CUDA 11.2.0 GA", "11.2", "460.27.03"),
    CudaRelease("CUDA 11.1.1 Update 1", "11.1", "455.32"),
    CudaRelease("CUDA 11.1 GA", "11.1", "455.23"),
    CudaRelease("CUDA 11.0.3 Update 1", "11.0", "450.51.06"),
    CudaRelease("CUDA 11.0.2 GA", "11.0", "450.51.05"),
    CudaRelease("CUDA 11.0.1 RC", "11.0", "450.36.06"),
    CudaRelease("CUDA 10.2.89", "10.2", "440.33"),
    CudaRelease("CUDA 10.1 (10.1.105 general release, and updates)", "10.1", "418.39"),
    CudaRelease("CUDA 10.0.130", "10.0", "410.48"),
    CudaRelease("CUDA 9.2 (9.2.148 Update 1)", "9.2", "396.37"),
    CudaRelease("CUDA 9.2 (9.2.88)", "9.2", "396.26"),
    CudaRelease("CUDA 9.1 (9.1.85)", "9.1", "390.46"),
    CudaRelease("CUDA 9.0 (9.0.76)", "9.0", "384.81"),
    CudaRelease("CUDA 8.0 (8.0.61 GA2)", "8.0", "375.26"),
    CudaRelease("CUDA 8.0 (8.0.44)", "8.0", "367.48"),
    CudaRelease("CUDA 7.5 (7.5.16)", "7.5", "352.31"),
    CudaRelease("CUDA 7.0 (7.0.28)", "7.0", "346.46"),
)

_DIGITS = re.compile(r"[0-9]*")
_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_MAJOR_MINOR = re.compile(r"v?([0-9]+)(?:\.([0-9]+))?(?:\.[0-9]+)*")


def _part_key(part: str) -> tuple[int, str, str]:
    # Leading ASCII digits compare as a number (by length, then digits: no int() on huge
    # strings); any rest ("rc1") breaks ties as text. A missing part is ("", "") i.e. 0.
    digits = _DIGITS.match(part)
    head = digits.group() if digits else ""
    number = head.lstrip("0")
    return (len(number), number, part[len(head) :])


def compare_versions(a: str, b: str) -> int:
    """Compare dotted versions numerically part by part: -1, 0 or 1.

    Missing parts count as 0 (``"12.4" == "12.4.0" < "12.4.1"``; ``"550.54.15" > "550.9"``).
    Never raises; text that is not a version still gets a consistent (antisymmetric) order.
    """
    for x, y in zip_longest(a.strip().split("."), b.strip().split("."), fillvalue=""):
        kx, ky = _part_key(x), _part_key(y)
        if kx != ky:
            return -1 if kx < ky else 1
    return 0


def _major_minor(version: str) -> str | None:
    match = _MAJOR_MINOR.fullmatch(version.strip())
    if match is None:
        return None
    return f"{int(match.group(1))}.{int(match.group(2) or 0)}"


def _ga_minimums() -> dict[str, str]:
    # The lowest driver of each MAJOR.MINOR's releases, i.e. its GA release's driver.
    minimums: dict[str, str] = {}
    for release in CUDA_RELEASES:
        if release.label.endswith(" RC"):
            continue
        known = minimums.get(release.cuda)
        if known is None or compare_versions(release.driver, known) < 0:
            minimums[release.cuda] = release.driver
    return minimums


_GA_DRIVER = _ga_minimums()
# Newest CUDA first, for cuda_for_driver.
_BY_CUDA_DESC = sorted(
    _GA_DRIVER.items(),
    key=lambda item: tuple(int(p) for p in item[0].split(".")),
    reverse=True,
)


def min_driver_for_cuda(cuda: str) -> str | None:
    """The minimum Linux driver for CUDA ``MAJOR.MINOR`` (its GA release's driver), or None.

    A patch part is ignored (``"12.4.1"`` → 12.4's ``"550.54.14"``); None for a CUDA version
    NVIDIA's table does not list, or text that is not a version.
    """
    major_minor = _major_minor(cuda)
    return None if major_minor is None else _GA_DRIVER.get(major_minor)


def cuda_for_driver(driver: str) -> str | None:
    """The highest CUDA ``MAJOR.MINOR`` that ``driver`` supports per NVIDIA's table, or None.

    For a driver newer than the table this is the newest CUDA the table knows (a lower bound);
    None for a driver older than every row, or text that is not a version.
    """
    driver = driver.strip()
    if not _VERSION.fullmatch(driver):
        return None
    for cuda, minimum in _BY_CUDA_DESC:
        if compare_versions(driver, minimum) >= 0:
            return cuda
    return None
