"""`nvidia-smi -q` read for measurement readiness: the real H200 capture, real outputs of
drivers 470, 535 and 550 from public sources, and layouts assembled from NVIDIA's own binaries."""

from __future__ import annotations

import pytest
from testbed.captures import verbatim, with_value

from pytest_llem.domain.gpu_state import (
    ClockReasons,
    GpuProcess,
    GpuState,
    MemoryHealth,
    parse_states,
    watts,
)
from pytest_llem.domain.measurement import architecture_of


def test_h200_capture_driver_580() -> None:
    [gpu] = parse_states(verbatim("captured/h200-580.159.04_smi-q.txt"))
    assert (gpu.index, gpu.bus_id, gpu.name) == (0, "00000000:00:06.0", "NVIDIA H200")
    assert gpu.uuid == "GPU-00000000-1111-2222-3333-444444444444"
    assert (gpu.architecture, gpu.persistence_mode, gpu.mig_mode) == (
        "Hopper",
        "Enabled",
        "Disabled",
    )
    assert gpu.clock_reasons == ClockReasons("Clocks Event Reasons", ("Idle",))
    assert gpu.clock_reasons.slowdowns() == ()
    assert (gpu.utilization_gpu, gpu.power_limit, gpu.processes) == (0, "700.00 W", ())


def test_h200_with_a_spinning_kernel() -> None:
    """Driver 580 prints the Processes block with its own column (39, not the 55 of the
    other labels): a real capture with a CUDA kernel running."""
    [gpu] = parse_states(verbatim("captured/h200-580.159.04_smi-q_busy.txt"))
    assert gpu.processes == (GpuProcess(556, "C", "python3", "1542 MiB"),)
    assert gpu.compute_processes == gpu.processes
    assert gpu.utilization_gpu == 100
    assert gpu.clock_reasons == ClockReasons("Clocks Event Reasons", ())
    # The section after Processes is not taken for a process.
    assert gpu.mig_mode == "Disabled"


def test_h200_with_an_idle_cuda_context() -> None:
    """A process that holds a context but runs nothing: 0 % utilization, still a process."""
    [gpu] = parse_states(verbatim("captured/h200-580.159.04_smi-q_context.txt"))
    assert gpu.processes == (GpuProcess(532, "C", "python3", "1542 MiB"),)
    assert gpu.utilization_gpu == 0
    # The driver stops reporting the GPU idle once a context exists.
    assert gpu.clock_reasons == ClockReasons("Clocks Event Reasons", ())


def test_driver_470_layout() -> None:
    """Clocks Throttle Reasons, no Product Architecture, Power Readings / Power Limit, Gpu."""
    first, second = parse_states(verbatim("assembled/nvidia-smi-q_470.256.02_2x-tesla-p100.txt"))
    assert [g.index for g in (first, second)] == [0, 1]
    assert first.name == second.name == "Tesla P100-PCIE-16GB"
    assert first.architecture is None
    assert architecture_of(first) == ("Pascal", "product name")
    assert (first.persistence_mode, second.persistence_mode) == ("Disabled", "Enabled")
    assert first.mig_mode is None  # "N/A"
    assert first.clock_reasons == ClockReasons(
        "Clocks Throttle Reasons", ("HW Slowdown", "HW Thermal Slowdown")
    )
    assert first.clock_reasons.slowdowns() == ("HW Thermal Slowdown",)
    assert second.clock_reasons is not None and second.clock_reasons.active == ()
    assert (first.utilization_gpu, second.utilization_gpu) == (0, 100)
    assert first.power_limit == "250.00 W"
    assert first.processes == ()
    assert second.processes == (GpuProcess(48213, "C", "/usr/bin/python3", "15281 MiB"),)


def test_driver_535_layout_with_mig() -> None:
    [gpu] = parse_states(verbatim("assembled/nvidia-smi-q_535.261.03_a100-mig.txt"))
    assert (gpu.name, gpu.architecture, gpu.mig_mode) == (
        "NVIDIA A100-SXM4-80GB",
        "Ampere",
        "Enabled",
    )
    assert gpu.clock_reasons == ClockReasons("Clocks Event Reasons", ("SW Power Cap",))
    assert gpu.clock_reasons.slowdowns() == ("SW Power Cap",)
    assert gpu.utilization_gpu is None  # N/A with MIG on
    assert gpu.power_limit == "400.00 W"  # GPU Power Readings, not Module Power Readings
    assert gpu.processes == (GpuProcess(3021, "C", "python3", "9856 MiB"),)


def test_driver_550_graphics_processes_are_not_compute() -> None:
    [gpu] = parse_states(verbatim("assembled/nvidia-smi-q_550.163.01_rtx-4070-desktop.txt"))
    assert gpu.architecture == "Ada Lovelace"
    assert [(p.pid, p.type, p.name) for p in gpu.processes] == [
        (1875, "G", "/usr/lib/xorg/Xorg"),
        (2301, "G", "/usr/bin/gnome-shell"),
    ]
    assert gpu.compute_processes == ()
    assert (gpu.utilization_gpu, gpu.persistence_mode) == (37, "Disabled")


def test_wsl2_capture_cut_short() -> None:
    """A real excerpt that ends early: what it shows is read, the rest stays unknown."""
    states = parse_states(verbatim("reference/nvidia-smi-q_wsl2_titan-rtx_wddm.txt"))
    assert [(g.name, g.architecture, g.persistence_mode, g.mig_mode) for g in states] == [
        ("NVIDIA TITAN RTX", "Turing", "Enabled", None)
    ]
    assert states[0].clock_reasons is None and states[0].processes == ()


@pytest.mark.parametrize(
    "process_type, compute",
    [("C", True), ("G", False), ("C+G", True), ("M+C", True), ("M", False)],
)
def test_process_types(process_type: str, compute: bool) -> None:
    assert GpuProcess(1, process_type, "x", None).compute is compute


@pytest.mark.parametrize(
    "text",
    ["", "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", "\x00"],
)
def test_not_q_output_gives_no_gpu(text: str) -> None:
    assert parse_states(text) == ()


def test_a_parent_slowdown_alone_is_named() -> None:
    assert ClockReasons("x", ("HW Slowdown",)).slowdowns() == ("HW Slowdown",)
    assert ClockReasons(
        "x", ("HW Slowdown", "HW Power Brake Slowdown", "SW Power Cap")
    ).slowdowns() == (
        "HW Power Brake Slowdown",
        "SW Power Cap",
    )


@pytest.mark.parametrize(
    "name, arch",
    [
        ("Tesla P100-PCIE-16GB", "Pascal"),
        ("TITAN Xp", "Pascal"),  # reference/nvidia-container-cli_info_2x-titan-xp.txt: 6.1
        ("GeForce GTX 1080 Ti", "Pascal"),
        ("Tesla M40 24GB", "Maxwell"),  # reference/nvidia-smi_390.48-...-2x-m40_incontainer.txt
        ("Tesla K80", "Kepler"),
        ("GeForce GTX 1660 SUPER", "Turing"),
        ("Tesla T4", "Turing"),
        ("Tesla V100-PCIE-16GB", "Volta"),
        ("NVIDIA H100 80GB HBM3", None),
    ],
)
def test_architecture_from_the_product_name(name: str, arch: str | None) -> None:
    assert architecture_of(GpuState(0, "", name=name))[0] == arch


def test_product_architecture_wins_over_the_name() -> None:
    gpu = GpuState(0, "", name="Tesla P100-PCIE-16GB", architecture="Pascal")
    assert architecture_of(gpu) == ("Pascal", "Product Architecture")


# -- power limits and memory health, on real outputs of drivers 470 to 580 ----------------------

V100_470 = "smi-q/nvidia-smi-q_470.129.06_v100-pcie-32gb.txt"
GTX680_470 = "smi-q/nvidia-smi-q_470.256.02_gtx-680.txt"
A100_535 = "smi-q/nvidia-smi-q_535.129.03_8x-a100-sxm4-40gb.txt"
V100_550 = "smi-q/nvidia-smi-q_550.127.05_8x-v100-sxm2-16gb.txt"
H200_550 = "smi-q/nvidia-smi-q_550.90.12_h200.txt"
H200_580 = "captured/h200-580.159.04_smi-q.txt"
# Healthy, as reported: pre-Ampere GPUs report ECC by bit count and retired pages, not rows;
# Ampere and newer report rows, and print N/A for retired pages.
BEFORE_AMPERE = MemoryHealth(volatile_uncorrectable=(), pages_pending=False)
AMPERE_ON = MemoryHealth(remap_pending=False, remap_failure=False, volatile_uncorrectable=())


@pytest.mark.parametrize(
    ("path", "count", "limits", "memory"),
    [
        (V100_470, 1, ("250.00 W", "250.00 W"), BEFORE_AMPERE),
        (A100_535, 8, ("400.00 W", "400.00 W"), AMPERE_ON),
        (V100_550, 8, ("300.00 W", "300.00 W"), BEFORE_AMPERE),
        (H200_550, 1, ("700.00 W", "700.00 W"), AMPERE_ON),
        (H200_580, 1, ("700.00 W", "700.00 W"), AMPERE_ON),
    ],
    ids=["470-v100", "535-a100", "550-v100", "550-h200", "580-h200"],
)
def test_power_limits_and_memory_health_of_real_layouts(
    path: str, count: int, limits: tuple[str, str], memory: MemoryHealth
) -> None:
    states = parse_states(verbatim(path))
    assert len(states) == count
    for gpu in states:
        assert (gpu.power_limit, gpu.default_power_limit) == limits
        assert gpu.memory == memory and gpu.memory.reported and gpu.memory.faults() == ()


def test_driver_470_reads_power_readings_and_old_counters() -> None:
    """The real V100 of driver 470 has one retired page and three aggregate single-bit errors:
    history, corrected, no fault. `Remapped Rows : N/A` (before Ampere) is not reported."""
    text = verbatim(V100_470)
    assert "    Remapped Rows                         : N/A" in text
    assert "        Single Bit ECC                    : 1" in text
    [gpu] = parse_states(text)
    assert (gpu.memory.remap_pending, gpu.memory.remap_failure) == (None, None)
    lowered = with_value(text, 0, ("Power Readings", "Power Limit"), "200.00 W")
    [gpu] = parse_states(lowered)
    assert (gpu.power_limit, gpu.default_power_limit) == ("200.00 W", "250.00 W")


def test_a_geforce_without_ecc_reports_nothing() -> None:
    """Driver 470, GTX 680: every power limit and memory counter prints N/A."""
    [gpu] = parse_states(verbatim(GTX680_470))
    assert (gpu.power_limit, gpu.default_power_limit) == (None, None)
    assert gpu.memory == MemoryHealth() and not gpu.memory.reported


@pytest.mark.parametrize(
    ("path", "changes", "fault"),
    [
        (
            V100_470,
            [
                (("ECC Errors", "Volatile", "Double Bit", "Device Memory"), "2"),
                (("ECC Errors", "Volatile", "Double Bit", "Total"), "2"),
            ],
            ("volatile uncorrectable ECC errors", "ECC Errors / Volatile / Double Bit / Total: 2"),
        ),
        (
            V100_550,
            [(("Retired Pages", "Pending Page Blacklist"), "Yes")],
            ("pages pending retirement", "Retired Pages / Pending Page Blacklist: Yes"),
        ),
        (
            A100_535,
            [(("ECC Errors", "Volatile", "SRAM Uncorrectable"), "1")],
            ("volatile uncorrectable ECC errors", "ECC Errors / Volatile / SRAM Uncorrectable: 1"),
        ),
        (
            H200_550,
            [(("ECC Errors", "Volatile", "SRAM Uncorrectable SEC-DED"), "4")],
            (
                "volatile uncorrectable ECC errors",
                "ECC Errors / Volatile / SRAM Uncorrectable SEC-DED: 4",
            ),
        ),
        (
            H200_580,
            [(("Remapped Rows", "Remapping Failure Occurred"), "Yes")],
            ("row remapping failure", "Remapped Rows / Remapping Failure Occurred: Yes"),
        ),
    ],
    ids=["470-double-bit", "550-pending-page", "535-sram", "550-sram-sec-ded", "580-failure"],
)
def test_each_fault_is_read_where_the_driver_prints_it(
    path: str, changes: list[tuple[tuple[str, ...], str]], fault: tuple[str, str]
) -> None:
    text = verbatim(path)
    for where, value in changes:
        text = with_value(text, 0, where, value)
    assert parse_states(text)[0].memory.faults() == (fault,)


def test_only_volatile_uncorrectable_counts() -> None:
    """Corrected errors, aggregate (lifetime) counts and rows remapped in the past are history:
    the GPU already dealt with them."""
    text = verbatim(A100_535)
    for where, value in [
        (("ECC Errors", "Volatile", "DRAM Correctable"), "12"),
        (("ECC Errors", "Aggregate", "DRAM Uncorrectable"), "3"),
        (("Remapped Rows", "Correctable Error"), "2"),
        (("Remapped Rows", "Uncorrectable Error"), "1"),
    ]:
        text = with_value(text, 0, where, value)
    memory = parse_states(text)[0].memory
    assert memory.faults() == () and memory.volatile_uncorrectable == ()


def test_other_retired_pages_labels() -> None:
    """`Pending Page Retirement`, another form of the label, is read as well (no real output
    printing it is at hand: this renames the label in a copy of a real one)."""
    text = verbatim(V100_550).replace("Pending Page Blacklist    ", "Pending Page Retirement   ")
    text = with_value(text, 3, ("Retired Pages", "Pending Page Retirement"), "Yes")
    states = parse_states(text)
    assert [g.index for g in states if g.memory.faults()] == [3]
    assert states[3].memory.faults() == (
        ("pages pending retirement", "Retired Pages / Pending Page Retirement: Yes"),
    )


@pytest.mark.parametrize(
    ("value", "expected"), [("450.00 W", 450.0), ("312.5 W", 312.5), (None, None), ("", None)]
)
def test_watts(value: str | None, expected: float | None) -> None:
    assert watts(value) == expected
