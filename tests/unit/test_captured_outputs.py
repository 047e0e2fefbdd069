"""Parsers and classifier over outputs captured on a real NVIDIA H200 host (driver 580.159.04).

These are the exact texts this project reads on a host: `nvidia-smi -q` for the driver, CUDA
version and brand, and `--query-gpu` CSV as the container probe asks for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from testbed.captures import verbatim

from pytest_llem import diagnose
from pytest_llem.domain.nvidia_smi import (
    parse_any,
    parse_banner,
    parse_list,
    parse_q,
    parse_query_csv,
)

DATA = Path(__file__).parents[1] / "data" / "captured"
UUID = "GPU-00000000-1111-2222-3333-444444444444"


def _output(name: str) -> str:
    return verbatim(DATA / f"h200-580.159.04_{name}.txt")


def test_q_gives_driver_cuda_brand_and_architecture() -> None:
    info = parse_q(_output("smi-q"))
    assert (info.driver_version, info.cuda_version) == ("580.159.04", "13.0")
    assert len(info.gpus) == 1
    gpu = info.gpus[0]
    assert (gpu.name, gpu.uuid, gpu.brand, gpu.architecture) == (
        "NVIDIA H200",
        UUID,
        "NVIDIA",
        "Hopper",
    )


def test_banner_and_list() -> None:
    banner = parse_banner(_output("smi"))
    assert (banner.driver_version, banner.cuda_version) == ("580.159.04", "13.0")
    listed = parse_list(_output("smi-L"))
    assert [(g.index, g.name, g.uuid) for g in listed.gpus] == [(0, "NVIDIA H200", UUID)]


def test_probe_csv_as_the_probe_asks_for_it() -> None:
    rows = parse_query_csv(_output("query"), ["index", "name", "driver_version", "uuid"])
    assert rows == [
        {"index": "0", "name": "NVIDIA H200", "driver_version": "580.159.04", "uuid": UUID}
    ]
    wide = parse_query_csv(
        _output("query2"),
        ["index", "name", "driver_version", "uuid", "pci.bus_id", "memory.total", "compute_cap"],
    )
    assert wide[0]["compute_cap"] == "9.0"


@pytest.mark.parametrize("name", ["smi", "smi-q", "smi-L", "query"])
def test_healthy_outputs_are_ok_with_versions(name: str) -> None:
    d = diagnose(_output(name), 0)
    assert d.cause == "ok"
    assert parse_any(_output(name)) is not None


def test_an_unknown_query_field_is_not_mistaken_for_a_gpu_failure() -> None:
    d = diagnose(_output("querybrand"), 2)
    assert d.cause == "unknown"
    assert "not a valid field" in d.details["output"]
