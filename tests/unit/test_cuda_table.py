"""NVIDIA's CUDA → minimum driver table and numeric version comparison."""

from __future__ import annotations

from itertools import pairwise

import pytest

from pytest_llem.domain.cuda_table import (
    CUDA_RELEASES,
    CudaRelease,
    compare_versions,
    cuda_for_driver,
    min_driver_for_cuda,
)


@pytest.mark.parametrize(
    ("cuda", "driver"),
    [
        pytest.param("13.1", "590.44.01", id="13.1"),
        pytest.param("13.0", "580.65.06", id="13.0-GA-not-update-2"),
        pytest.param("12.9", "575.51.03", id="12.9"),
        pytest.param("12.8", "570.26", id="12.8-GA"),
        pytest.param("12.6", "560.28.03", id="12.6"),
        pytest.param("12.5", "555.42.02", id="12.5"),
        pytest.param("12.4", "550.54.14", id="12.4-GA-not-update-1"),
        pytest.param("12.4.1", "550.54.14", id="patch-ignored"),
        pytest.param("12.3", "545.23.06", id="12.3"),
        pytest.param("12.2", "535.54.03", id="12.2"),
        pytest.param("12.1", "530.30.02", id="12.1"),
        pytest.param("12.0", "525.60.13", id="12.0"),
        pytest.param("12", "525.60.13", id="major-only-is-.0"),
        pytest.param("11.8", "520.61.05", id="11.8"),
        pytest.param("11.4", "470.42.01", id="11.4"),
        pytest.param("11.0", "450.51.05", id="11.0-GA-not-RC"),
        pytest.param("9.2", "396.26", id="9.2-first-release"),
        pytest.param("8.0", "367.48", id="8.0-first-release"),
        pytest.param("7.0", "346.46", id="oldest"),
        pytest.param("v12.8", "570.26", id="v-prefix"),
        pytest.param(" 12.4 ", "550.54.14", id="whitespace"),
    ],
)
def test_min_driver_for_cuda(cuda: str, driver: str) -> None:
    assert min_driver_for_cuda(cuda) == driver


@pytest.mark.parametrize(
    "cuda",
    [
        pytest.param("12.7", id="12.7-not-in-nvidia-table"),
        pytest.param("14.0", id="future"),
        pytest.param("6.5", id="too-old"),
        pytest.param("", id="empty"),
        pytest.param("abc", id="text"),
        pytest.param("12.x", id="half-version"),
    ],
)
def test_min_driver_for_unknown_cuda_is_none(cuda: str) -> None:
    assert min_driver_for_cuda(cuda) is None


@pytest.mark.parametrize(
    ("driver", "cuda"),
    [
        pytest.param("590.44.01", "13.1", id="590"),
        pytest.param("600.1", "13.1", id="newer-than-table-is-newest-known"),
        pytest.param("580.65.06", "13.0", id="580-GA"),
        pytest.param("575.57.08", "12.9", id="575"),
        pytest.param("570.124.06", "12.8", id="570-update-1"),
        pytest.param("570.26", "12.8", id="570-GA"),
        pytest.param("565.57.01", "12.6", id="565-no-12.7-row"),
        pytest.param("560.35.03", "12.6", id="560"),
        pytest.param("550.54.15", "12.4", id="550.54.15"),
        pytest.param("550.54.14", "12.4", id="550.54.14-exact-GA"),
        pytest.param("550.54.13", "12.3", id="just-below-12.4"),
        pytest.param("545.23.08", "12.3", id="545"),
        pytest.param("535.104.05", "12.2", id="535"),
        pytest.param("525.85.12", "12.0", id="525"),
        pytest.param("520.61.05", "11.8", id="520"),
        pytest.param("470.82.01", "11.4", id="470"),
        pytest.param("450.80.02", "11.0", id="450"),
        pytest.param("450.36.06", "10.2", id="11.0-RC-driver-not-counted"),
        pytest.param("346.46", "7.0", id="oldest"),
        pytest.param(" 550.54.15\n", "12.4", id="whitespace"),
    ],
)
def test_cuda_for_driver(driver: str, cuda: str) -> None:
    assert cuda_for_driver(driver) == cuda


@pytest.mark.parametrize(
    "driver",
    [
        pytest.param("346.45", id="older-than-table"),
        pytest.param("", id="empty"),
        pytest.param("N/A", id="not-available"),
        pytest.param("550.54.15-open", id="suffix"),
        pytest.param("550..54", id="empty-part"),
    ],
)
def test_cuda_for_unknown_driver_is_none(driver: str) -> None:
    assert cuda_for_driver(driver) is None


@pytest.mark.parametrize(
    "release", [r for r in CUDA_RELEASES if not r.label.endswith(" RC")], ids=lambda r: r.label
)
def test_each_release_driver_supports_its_cuda(release: CudaRelease) -> None:
    # The driver packaged with a toolkit supports that toolkit's CUDA (or a later one).
    derived = cuda_for_driver(release.driver)
    assert derived is not None
    assert compare_versions(derived, release.cuda) >= 0


def test_min_driver_round_trips_through_cuda_for_driver() -> None:
    for cuda in {r.cuda for r in CUDA_RELEASES}:
        driver = min_driver_for_cuda(cuda)
        assert driver is not None
        assert cuda_for_driver(driver) == cuda


def test_newer_cuda_needs_newer_driver() -> None:
    cudas = sorted({r.cuda for r in CUDA_RELEASES}, key=lambda v: tuple(map(int, v.split("."))))
    drivers = [min_driver_for_cuda(c) or "" for c in cudas]
    assert all(compare_versions(a, b) < 0 for a, b in pairwise(drivers))


@pytest.mark.parametrize(
    ("label", "driver"),
    [
        pytest.param("CUDA 12.4 GA", "550.54.14", id="12.4-GA"),
        pytest.param("CUDA 12.4 Update 1", "550.54.15", id="12.4-update-1"),
        pytest.param("CUDA 12.8 GA", "570.26", id="12.8-GA"),
        pytest.param("CUDA 12.8 Update 1", "570.124.06", id="12.8-update-1"),
        pytest.param("CUDA 12.0 GA", "525.60.13", id="12.0-GA"),
        pytest.param("CUDA 13.0 GA", "580.65.06", id="13.0-GA"),
        pytest.param("CUDA 11.0.1 RC", "450.36.06", id="11.0-RC-kept-as-data"),
    ],
)
def test_table_rows_are_nvidias(label: str, driver: str) -> None:
    assert {r.label: r.driver for r in CUDA_RELEASES}[label] == driver


def test_table_labels_are_unique_and_cuda_is_major_minor() -> None:
    labels = [r.label for r in CUDA_RELEASES]
    assert len(labels) == len(set(labels))
    for release in CUDA_RELEASES:
        major, minor = release.cuda.split(".")
        assert release.label.startswith(f"CUDA {major}.{minor}")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param("12.4", "12.4.1", -1, id="missing-part-is-zero"),
        pytest.param("12.4", "12.4.0", 0, id="trailing-zero-equal"),
        pytest.param("550.54.15", "550.9", 1, id="numeric-not-lexical"),
        pytest.param("570.26", "570.124.06", -1, id="26-before-124"),
        pytest.param("10.0", "9.2", 1, id="major-numeric"),
        pytest.param("535.104.05", "535.104.5", 0, id="leading-zero"),
        pytest.param("12.10", "12.9", 1, id="two-digit-minor"),
        pytest.param("12.4", "12.4", 0, id="equal"),
        pytest.param(" 12.4 ", "12.4", 0, id="whitespace"),
        pytest.param("", "0", 0, id="empty-is-zero"),
        pytest.param("1" * 5000, "9", 1, id="huge-number"),
        pytest.param("12.4rc1", "12.4", 1, id="suffix-after-number"),
        pytest.param("N/A", "550.54.15", -1, id="text-below-versions"),
    ],
)
def test_compare_versions(a: str, b: str, expected: int) -> None:
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected
