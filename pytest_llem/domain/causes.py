"""The cause vocabulary (DESIGN §3): one word for every way a GPU container can fail."""

from __future__ import annotations

from typing import Literal, get_args

Cause = Literal[
    "docker_cli_missing",
    "daemon_unreachable",
    "daemon_permission_denied",
    "toolkit_missing",
    "toolkit_hook_missing",
    "host_driver_unavailable",
    "gpu_driver_not_configured",
    "nvidia_runtime_unknown",
    "cdi_injection_failed",
    "cgroup_device_setup_failed",
    "nvml_driver_library_mismatch",
    "driver_not_loaded",
    "cuda_requirement_unsatisfied",
    "nvml_unknown_error_cgroups",
    "no_devices",
    "image_not_found",
    "registry_unreachable",
    "container_command_not_found",
    "container_name_conflict",
    "probe_timeout",
    "gpu_count_mismatch",
    "unsafe_run_file",
    "experiment_timeout",
    "check_error",
    "gpu_busy",
    "persistence_mode_off",
    "mig_enabled",
    "gpu_throttled",
    "energy_counter_unsupported",
    "power_limit_changed",
    "gpu_hardware_fault",
    "driver_reloaded",
    "host_unreachable",
    "podman_cli_missing",
    "cdi_spec_missing",
    "cdi_spec_stale",
    "unknown",
    "ok",
]

CAUSES: tuple[str, ...] = get_args(Cause)
