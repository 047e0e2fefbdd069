"""Tier 3: will the GPUs the study uses give trustworthy energy numbers?

Judged from the host's `nvidia-smi -q`, which the pre-flight gathers anyway.
"""

from pytest_llem.checking import check
from pytest_llem.context import CheckContext
from pytest_llem.domain import measurement


@check(tier=3, id="gpu-idle")
def check_gpu_idle(llem: CheckContext) -> None:
    """No other compute process on the GPUs to measure (and no unexplained load)."""
    llem.expect(measurement.gpu_idle(llem.measured_host, llem.settings.gpus, local=llem.local))


@check(tier=3, id="persistence-mode")
def check_persistence_mode(llem: CheckContext) -> None:
    """Persistence mode keeps the driver (and its energy counter) loaded between experiments."""
    llem.expect(
        measurement.persistence_mode(llem.measured_host, llem.settings.gpus, local=llem.local)
    )


@check(tier=3, id="mig-mode")
def check_mig_mode(llem: CheckContext) -> None:
    """MIG off: with MIG, power and energy are the whole GPU's, not the instance's."""
    llem.expect(measurement.mig_mode(llem.measured_host, llem.settings.gpus, local=llem.local))


@check(tier=3, id="clock-events")
def check_clock_events(llem: CheckContext) -> None:
    """No thermal or power slowdown active right now."""
    llem.expect(measurement.clock_events(llem.measured_host, llem.settings.gpus, local=llem.local))


@check(tier=3, id="energy-counter")
def check_energy_counter(llem: CheckContext) -> None:
    """Volta or newer: NVML's total-energy counter exists."""
    llem.expect(
        measurement.energy_counter(llem.measured_host, llem.settings.gpus, local=llem.local)
    )


@check(tier=3, id="power-limit")
def check_power_limit(llem: CheckContext) -> None:
    """The power limit is the default one: energy and speed depend on it."""
    llem.expect(measurement.power_limit(llem.measured_host, llem.settings.gpus, local=llem.local))


@check(tier=3, id="gpu-health")
def check_gpu_health(llem: CheckContext) -> None:
    """No memory fault: pending row remapping or page retirement, remapping failure, volatile
    uncorrectable ECC errors."""
    llem.expect(measurement.gpu_health(llem.measured_host, llem.settings.gpus, local=llem.local))
