"""Parsers of nvidia-smi output (banner, --query-gpu CSV, -L, -q) and nvidia-container-cli info."""

from __future__ import annotations

from pathlib import Path

import pytest
from testbed.captures import verbatim as captured_output

from pytest_llem.domain.nvidia_smi import (
    GpuInfo,
    MigDevice,
    SmiInfo,
    parse_any,
    parse_banner,
    parse_container_cli_info,
    parse_list,
    parse_q,
    parse_query,
    parse_query_csv,
    parse_version,
)

REFERENCE = Path(__file__).parent.parent / "data" / "reference"


def verbatim(name: str) -> str:
    return captured_output(REFERENCE / name)


# -- banner -----------------------------------------------------------------------------------

# file -> (smi version, driver, CUDA, [(index, name, bus id)])
BANNERS = {
    "nvidia-smi_390.48-vs-driver-390.59_2x-m40_incontainer.txt": (
        "390.48",
        "390.59",
        None,
        [(0, "Tesla M40 24GB", "00000000:02:00.0"), (1, "Tesla M40 24GB", "00000000:82:00.0")],
    ),
    "nvidia-smi_440.64_tesla-v100.txt": (
        "440.64",
        "440.64",
        "10.2",
        [(0, "Tesla V100-PCIE...", "00000000:61:00.0")],
    ),
    "nvidia-smi_535.86.10_a100-80gb-mig_docker.txt": (
        "535.86.10",
        "535.86.10",
        "12.2",
        [(0, "NVIDIA A100 80GB PCIe", "00000000:CA:00.0")],
    ),
    "nvidia-smi_550.40.07_rtx-4070.txt": (
        "550.40.07",
        "550.40.07",
        "12.4",
        [(0, "NVIDIA GeForce RTX 4070", "00000000:2D:00.0")],
    ),
    "nvidia-smi_551.78_windows-wddm.txt": ("551.78", "551.78", "12.4", []),
}


@pytest.mark.parametrize("name", sorted(BANNERS))
def test_banner_of_each_driver_generation(name: str) -> None:
    smi, driver, cuda, gpus = BANNERS[name]
    info = parse_banner(verbatim(name))
    assert (info.smi_version, info.driver_version, info.cuda_version) == (smi, driver, cuda)
    assert [(g.index, g.name, g.bus_id) for g in info.gpus] == gpus
    assert info.source == "banner"
    assert parse_any(verbatim(name)) == info


RULE = "+" + "-" * 89 + "+"
NEW_LAYOUT_8_GPUS = "\n".join(
    [
        RULE,
        "| NVIDIA-SMI 570.86.15              Driver Version: 570.86.15      "
        "CUDA Version: N/A      |",
        "+-----------------------------------------+------------------------+"
        "----------------------+",
        "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | "
        "Volatile Uncorr. ECC |",
        "|=========================================+========================+"
        "======================|",
    ]
    + [
        f"|   {i}  NVIDIA H100 80GB HBM3          On  |   00000000:{i + 0x18:02X}:00.0 Off |"
        "                    0 |"
        for i in range(8)
    ]
    + [
        RULE,
        "| Processes:" + " " * 78 + "|",
        "|  GPU   GI   CI        PID   Type   Process name" + " " * 30 + "GPU Memory |",
        "|    0   N/A  N/A     12345      C   python" + " " * 37 + "70000MiB |",
    ]
)


def test_banner_with_cuda_not_available_and_a_process_table() -> None:
    info = parse_banner(NEW_LAYOUT_8_GPUS)
    assert info.driver_version == "570.86.15"
    assert info.cuda_version is None
    assert [g.index for g in info.gpus] == list(range(8))
    assert {g.name for g in info.gpus} == {"NVIDIA H100 80GB HBM3"}


def test_banner_lines_after_pull_progress() -> None:
    text = "Status: Downloaded newer image for nvidia/cuda:12.4.1-base\n" + verbatim(
        "nvidia-smi_550.40.07_rtx-4070.txt"
    )
    assert parse_banner(text).driver_version == "550.40.07"


# A driver 580 host (values other than versions and names replaced).
BANNER_580 = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0     |
+-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA H200                    On  |   00000000:00:06.0 Off |                    0 |
| N/A   40C    P0             83W /  700W |       0MiB / 143771MiB |      0%      Default |
|                                         |                        |             Disabled |
+-----------------------------------------+------------------------+----------------------+

+-----------------------------------------------------------------------------------------+
| Processes:                                                                              |
|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |
|        ID   ID                                                               Usage      |
|=========================================================================================|
|  No running processes found                                                             |
+-----------------------------------------------------------------------------------------+
"""
Q_580 = """\
==============NVSMI LOG==============

Timestamp                                              : Sat Nov 28 17:38:50 2026
Driver Version                                         : 580.159.04
CUDA Version                                           : 13.0

Attached GPUs                                          : 1
GPU 00000000:00:06.0
    Product Name                                       : NVIDIA H200
    Product Brand                                      : NVIDIA
    Product Architecture                               : Hopper
    Display Mode                                       : Requested functionality has been deprecated
    Addressing Mode                                    : None
    MIG Mode
        Current                                        : Disabled
        Pending                                        : Disabled
    Serial Number                                      : 0000000000000
    GPU UUID                                           : GPU-00000000-1111-2222-3333-444444444444
    GPU PDI                                            : 0x0000000000000000
    Minor Number                                       : 0
    GSP Firmware Version                               : 580.159.04
"""
VERSION_580 = """\
NVIDIA-SMI version  : 580.159.04
NVML version        : 580.159
DRIVER version      : 580.159.04
CUDA Version        : 13.0
"""


def test_driver_580_formats() -> None:
    banner = parse_any(BANNER_580)
    assert banner is not None
    assert (banner.driver_version, banner.cuda_version) == ("580.159.04", "13.0")
    assert [(g.index, g.name) for g in banner.gpus] == [(0, "NVIDIA H200")]
    q = parse_any(Q_580)
    assert q is not None and q.source == "q"
    assert q.gpus[0].summary() == {
        "index": 0,
        "name": "NVIDIA H200",
        "uuid": "GPU-00000000-1111-2222-3333-444444444444",
    }
    assert (q.gpus[0].brand, q.gpus[0].architecture, q.gpus[0].minor) == ("NVIDIA", "Hopper", 0)
    version = parse_version(VERSION_580)
    assert version == SmiInfo("580.159.04", "13.0", [], smi_version="580.159.04", source="version")
    assert parse_any(VERSION_580) == version


# -- -L ---------------------------------------------------------------------------------------


def test_list_with_mig_devices_under_their_gpu() -> None:
    info = parse_list(verbatim("nvidia-smi-L_4x-a100-mig-on-gpu0.txt"))
    assert [g.index for g in info.gpus] == [0, 1, 2, 3]
    first = info.gpus[0]
    assert first.uuid == "GPU-513536b6-7d19-9063-b049-1e69664bb298"
    assert first.mig[1] == MigDevice("1g.20gb", 1, "MIG-a45882f0-9215-5733-a0c1-49286ab31cb5")
    assert len(first.mig) == 4
    assert all(not g.mig for g in info.gpus[1:])
    assert (info.driver_version, info.cuda_version, info.source) == (None, None, "list")


def test_list_with_the_old_mig_uuid_format_and_no_uuid() -> None:
    text = (
        "GPU 0: A100-SXM4-40GB (UUID: GPU-5f1fb4bf-5a2d-4a4f-8c1c-1b6a2d4e8f21)\n"
        "  MIG 3g.20gb Device 0: (UUID: MIG-GPU-5f1fb4bf-5a2d-4a4f-8c1c-1b6a2d4e8f21/1/0)\n"
        "GPU 1: Tesla K80\n"
    )
    info = parse_list(text)
    assert info.gpus[0].mig == (
        MigDevice("3g.20gb", 0, "MIG-GPU-5f1fb4bf-5a2d-4a4f-8c1c-1b6a2d4e8f21/1/0"),
    )
    assert info.gpus[1] == GpuInfo(1, "Tesla K80")


def test_repeated_list_lines_count_once() -> None:
    line = "GPU 0: NVIDIA A100-PCIE-40GB (UUID: GPU-551720f0-caf0-22b7-f525-2a51a6ab478d)\r\n"
    assert len(parse_list(line * 3).gpus) == 1


# -- -q ---------------------------------------------------------------------------------------


def test_q_of_wsl2() -> None:
    info = parse_q(verbatim("nvidia-smi-q_wsl2_titan-rtx_wddm.txt"))
    assert (info.driver_version, info.cuda_version, info.attached_gpus) == ("510.06", "11.6", 4)
    assert info.gpus == [
        GpuInfo(
            index=0,
            name="NVIDIA TITAN RTX",
            uuid="GPU-f9825843-2134-3ac5-55be-460ae94d1cb5",
            brand="Titan",
            architecture="Turing",
            minor=None,
            bus_id="00000000:19:00.0",
        )
    ]


Q_TWO_TESLAS = """
==============NVSMI LOG==============

Timestamp                                 : Mon Jan  6 10:00:00 2020
Driver Version                            : 390.116

Attached GPUs                             : 2
GPU 00000000:02:00.0
    Product Name                          : Tesla P100-PCIE-16GB
    Product Brand                         : Tesla
    MIG Mode
        Current                           : N/A
    GPU UUID                              : GPU-11111111-2222-3333-4444-555555555555
    Minor Number                          : 1
GPU 00000000:82:00.0
    Product Name                          : Tesla P100-PCIE-16GB
    Product Brand                         : Tesla
    GPU UUID                              : GPU-66666666-7777-8888-9999-000000000000
    Minor Number                          : 0
"""


def test_q_of_an_old_driver_without_cuda_version() -> None:
    info = parse_q(Q_TWO_TESLAS)
    assert (info.driver_version, info.cuda_version, info.attached_gpus) == ("390.116", None, 2)
    assert [(g.index, g.minor, g.brand, g.architecture) for g in info.gpus] == [
        (0, 1, "Tesla", None),
        (1, 0, "Tesla", None),
    ]
    assert parse_any(Q_TWO_TESLAS) == info


# -- nvidia-container-cli info -----------------------------------------------------------------


def test_container_cli_info() -> None:
    info = parse_container_cli_info(verbatim("nvidia-container-cli_info_2x-titan-xp.txt"))
    assert (info.driver_version, info.cuda_version) == ("410.104", "10.0")
    assert [(g.index, g.name, g.brand, g.compute_capability, g.minor) for g in info.gpus] == [
        (0, "TITAN Xp", "GeForce", "6.1", 0),
        (1, "TITAN Xp", "GeForce", "6.1", 1),
    ]


def test_container_cli_info_after_debug_lines() -> None:
    info = parse_any(verbatim("nvidia-container-cli_info_8x-rtx2080ti_debug-tail.txt"))
    assert info is not None and info.source == "container-cli"
    assert info.driver_version == "465.19.01"
    assert info.gpus == [
        GpuInfo(
            0,
            "NVIDIA GeForce RTX 2080 Ti",
            "GPU-5d49bdf4-b8d0-21ce-9260-a89c66748d92",
            brand="GeForce",
            minor=0,
        )
    ]


# -- --query-gpu CSV ----------------------------------------------------------------------------


def test_query_csv_with_header_and_units() -> None:
    rows = parse_query_csv(verbatim("nvidia-smi-query-gpu_with-units_loop.csv.txt"))
    assert len(rows) == 13
    assert rows[0] == {
        "index": "0",
        "temperature.gpu": "56",
        "utilization.gpu": "26",
        "utilization.memory": "4",
        "fan.speed": "34",
        "pstate": "P3",
        "power.draw": "83.92",
        "clocks.current.sm": "1320",
        "clocks.current.memory": "5001",
        "clocks.current.graphics": "1320",
    }


def test_query_csv_can_keep_units() -> None:
    rows = parse_query_csv(
        verbatim("nvidia-smi-query-gpu_with-units_loop.csv.txt"), keep_units=True
    )
    assert rows[0]["power.draw"] == "83.92 W"
    assert rows[0]["utilization.gpu"] == "26 %"


def test_query_csv_noheader_in_the_callers_field_order() -> None:
    text = (
        "GPU-513536b6-7d19-9063-b049-1e69664bb298, 550.54.15, NVIDIA A100-SXM4-80GB, 1\n"
        "GPU-d8594bd4-0fc3-8595-e355-7c98138f3b95, 550.54.15, NVIDIA A100-SXM4-80GB, 0\n"
    )
    fields = ["uuid", "driver_version", "name", "index"]
    rows = parse_query_csv(text, fields)
    assert [r["index"] for r in rows] == ["1", "0"]
    info = parse_query(text, fields)
    assert info.driver_version == "550.54.15"
    assert [(g.index, g.uuid[:12]) for g in info.gpus] == [(1, "GPU-513536b6"), (0, "GPU-d8594bd4")]


def test_query_csv_skips_a_header_and_foreign_lines_when_fields_are_given() -> None:
    text = (
        "index, name, memory.total [MiB]\n"
        "Failed to initialize NVML: Unknown Error\n"
        "0, NVIDIA L4, 23034 MiB\n"
        "1, NVIDIA L4, [N/A]\n"
    )
    rows = parse_query_csv(text, ["index", "name", "memory.total"])
    assert rows == [
        {"index": "0", "name": "NVIDIA L4", "memory.total": "23034"},
        {"index": "1", "name": "NVIDIA L4", "memory.total": "[N/A]"},
    ]


def test_query_of_a_header_named_csv_and_aliases() -> None:
    info = parse_query("gpu_name, gpu_uuid\nNVIDIA L4, GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee\n")
    assert info.gpus == [GpuInfo(0, "NVIDIA L4", "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")]


def test_query_loop_counts_each_gpu_once() -> None:
    info = parse_query(verbatim("nvidia-smi-query-gpu_with-units_loop.csv.txt"))
    assert [g.index for g in info.gpus] == [0]


def test_query_name_only() -> None:
    info = parse_any(verbatim("nvidia-smi-query-gpu_name.csv.txt"))
    assert info is not None and info.source == "query"
    assert info.gpus == [GpuInfo(0, "NVIDIA GeForce GTX 1080 Ti")]


# -- detection ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("nvidia-smi-L_4x-a100-mig-on-gpu0.txt", "list"),
        ("nvidia-smi-q_wsl2_titan-rtx_wddm.txt", "q"),
        ("nvidia-smi-query-gpu_with-units_loop.csv.txt", "query"),
        ("nvidia-smi_535.86.10_a100-80gb-mig_docker.txt", "banner"),
        ("nvidia-container-cli_info_2x-titan-xp.txt", "container-cli"),
        ("docker-version_29.4.0.txt", None),
        ("docker-info_20.10.21_cgroupv2_nvidia-runtime.txt", None),
        ("docker-info-grep-nvidia_cdi-and-runtime.txt", None),
        ("nvidia-ctk_cdi-list_nvidia-docs-example.txt", None),
        ("nvidia-ctk_--version_1.14.3.txt", None),
        ("nvidia-container-cli_-V_1.11.0_distro-build.txt", None),
    ],
)
def test_parse_any_recognises_the_format(name: str, source: str | None) -> None:
    info = parse_any(verbatim(name))
    assert (info.source if info else None) == source


def test_parse_any_of_a_noheader_probe_after_pull_progress() -> None:
    text = (
        "Unable to find image 'nvidia/cuda:12.4.1-base-ubuntu22.04' locally\n"
        "Status: Downloaded newer image for nvidia/cuda:12.4.1-base-ubuntu22.04\n"
        "0, NVIDIA H100 80GB HBM3, GPU-0f2a5e1c-2b5d-4c1e-9e7b-3a1f0c9d8e7f, 570.86.15\n"
    )
    info = parse_any(text)
    assert info == SmiInfo(
        "570.86.15",
        None,
        [GpuInfo(0, "NVIDIA H100 80GB HBM3", "GPU-0f2a5e1c-2b5d-4c1e-9e7b-3a1f0c9d8e7f")],
        source="query",
    )


def test_parse_any_of_two_identical_gpu_names() -> None:
    info = parse_any("NVIDIA GeForce RTX 4090\nNVIDIA GeForce RTX 4090\n")
    assert info is not None and [g.index for g in info.gpus] == [0, 1]


@pytest.mark.parametrize(
    "text",
    ["", "   \n", "hello world", "groups: cannot find name for group ID 993", "name\n", "0, 1, 2"],
)
def test_parse_any_of_something_else(text: str) -> None:
    assert parse_any(text) is None


def test_gpu_summary() -> None:
    gpu = GpuInfo(2, "NVIDIA L4", "GPU-1", brand="NVIDIA")
    assert gpu.summary() == {"index": 2, "name": "NVIDIA L4", "uuid": "GPU-1"}
