"""What to do about each cause: the default fix line and its documentation link.

``diagnose()`` and the checks start from these and specialise them when the output says more
(the image, the CUDA version, the socket, ...).
"""

from __future__ import annotations

from typing import NamedTuple

DOCKER_INSTALL_URL = "https://docs.docker.com/engine/install/"
DOCKER_POSTINSTALL_URL = "https://docs.docker.com/engine/install/linux-postinstall/"
DOCKER_START_URL = "https://docs.docker.com/engine/daemon/start/"
DOCKER_TROUBLESHOOT_URL = "https://docs.docker.com/engine/daemon/troubleshoot/"
DOCKER_PROXY_URL = "https://docs.docker.com/engine/daemon/proxy/"
DOCKER_PULL_URL = "https://docs.docker.com/reference/cli/docker/image/pull/"
DOCKER_CONTEXT_URL = "https://docs.docker.com/engine/manage-resources/contexts/"
DOCKER_RM_URL = "https://docs.docker.com/reference/cli/docker/container/rm/"
DOCKER_REMOTE_TLS_URL = "https://docs.docker.com/engine/security/protect-access/"
DOCKER_REMOTE_SSH_URL = "https://docs.docker.com/engine/security/protect-access/#use-ssh-to-protect-the-docker-daemon-socket"
DESKTOP_WSL_URL = "https://docs.docker.com/desktop/features/wsl/"
PODMAN_INSTALL_URL = "https://podman.io/docs/installation"
PODMAN_CONNECTION_URL = "https://docs.podman.io/en/latest/markdown/podman-system-connection.1.html"
CONTAINERD_URL = "https://github.com/containerd/containerd/blob/main/docs/getting-started.md"
TOOLKIT_INSTALL_URL = (
    "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/install-guide.html"
)
TOOLKIT_CONFIGURE_URL = (
    "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/"
    "install-guide.html#configuring-docker"
)
TOOLKIT_CDI_URL = (
    "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/cdi-support.html"
)
TOOLKIT_TROUBLESHOOT_URL = (
    "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/troubleshooting.html"
)
TOOLKIT_SPECIALIZED_URL = (
    "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/"
    "docker-specialized.html"
)
PYTEST_XDIST_TX_URL = "https://pytest-xdist.readthedocs.io/en/stable/remote.html"
DRIVER_INSTALL_URL = "https://docs.nvidia.com/datacenter/tesla/driver-installation-guide/index.html"
CUDA_COMPAT_URL = "https://docs.nvidia.com/deploy/cuda-compatibility/index.html"
WSL_CUDA_URL = "https://docs.nvidia.com/cuda/wsl-user-guide/index.html"
PYTEST_OUTPUT_URL = "https://docs.pytest.org/en/stable/how-to/output.html"
DOCKER_BIND_MOUNTS_URL = "https://docs.docker.com/engine/storage/bind-mounts/"
NVIDIA_SMI_URL = "https://docs.nvidia.com/deploy/nvidia-smi/index.html"
PERSISTENCE_URL = "https://docs.nvidia.com/deploy/driver-persistence/index.html"
MIG_URL = "https://docs.nvidia.com/datacenter/tesla/mig-user-guide/index.html"
NVML_ENERGY_URL = "https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html"
GPU_MEMORY_ERRORS_URL = "https://docs.nvidia.com/deploy/a100-gpu-mem-error-mgmt/index.html"

GENERATE_CDI_SPEC = (
    "sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml, then check the device names "
    "with `nvidia-ctk cdi list`"
)
CONFIGURE_DOCKER = (
    "sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker"
)
RELOAD_NVIDIA_MODULES = (
    "sudo rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia && sudo modprobe nvidia"
)


class Remedy(NamedTuple):
    fix: str
    url: str


_REMEDIES: dict[str, Remedy] = {
    "docker_cli_missing": Remedy("Install Docker Engine", DOCKER_INSTALL_URL),
    "daemon_unreachable": Remedy(
        "Start the Docker daemon (sudo systemctl start docker), or point DOCKER_HOST / "
        "`docker context use` at a running one",
        DOCKER_START_URL,
    ),
    "daemon_permission_denied": Remedy(
        "sudo usermod -aG docker $USER, then log in again", DOCKER_POSTINSTALL_URL
    ),
    "toolkit_missing": Remedy("Install the NVIDIA Container Toolkit", TOOLKIT_INSTALL_URL),
    "toolkit_hook_missing": Remedy(
        "Reinstall the NVIDIA Container Toolkit packages (nvidia-container-toolkit and "
        "libnvidia-container-tools), then sudo systemctl restart docker",
        TOOLKIT_INSTALL_URL,
    ),
    "host_driver_unavailable": Remedy(
        "Install the NVIDIA driver on the host so that `nvidia-smi` runs", DRIVER_INSTALL_URL
    ),
    "gpu_driver_not_configured": Remedy(CONFIGURE_DOCKER, TOOLKIT_CONFIGURE_URL),
    "nvidia_runtime_unknown": Remedy(CONFIGURE_DOCKER, TOOLKIT_CONFIGURE_URL),
    "cdi_injection_failed": Remedy(
        "sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml, then check the device "
        "names with `nvidia-ctk cdi list`",
        TOOLKIT_CDI_URL,
    ),
    "cgroup_device_setup_failed": Remedy(
        "Upgrade the NVIDIA Container Toolkit (cgroup v2 needs 1.8 or newer); for rootless "
        "Docker or Podman set `no-cgroups = true` in /etc/nvidia-container-runtime/config.toml",
        TOOLKIT_TROUBLESHOOT_URL,
    ),
    "nvml_driver_library_mismatch": Remedy(
        f"Reboot the host, or reload the NVIDIA kernel modules: {RELOAD_NVIDIA_MODULES}",
        DRIVER_INSTALL_URL,
    ),
    "driver_not_loaded": Remedy(
        "Install the NVIDIA driver and load its kernel module (sudo modprobe nvidia); "
        "`nvidia-smi` on the host must work",
        DRIVER_INSTALL_URL,
    ),
    "cuda_requirement_unsatisfied": Remedy(
        "Upgrade the host NVIDIA driver to one that supports the image's CUDA version, or use "
        "an image built for an older CUDA",
        CUDA_COMPAT_URL,
    ),
    "nvml_unknown_error_cgroups": Remedy(
        "Restart the container; to stop it recurring run "
        "`sudo nvidia-ctk system create-dev-char-symlinks --create-all` (or use Docker's "
        "cgroupfs cgroup driver)",
        TOOLKIT_TROUBLESHOOT_URL,
    ),
    "no_devices": Remedy(
        "Check that the host sees the GPU (`nvidia-smi`, `lspci | grep -i nvidia`) and that "
        "--gpus / NVIDIA_VISIBLE_DEVICES names devices that exist",
        TOOLKIT_SPECIALIZED_URL,
    ),
    "image_not_found": Remedy(
        "Check the image name and tag (`docker pull IMAGE`); run `docker login` for a private "
        "registry",
        DOCKER_PULL_URL,
    ),
    "registry_unreachable": Remedy(
        "Check the network, DNS and proxy settings of the Docker daemon (or configure a "
        "registry mirror), then `docker pull IMAGE`",
        DOCKER_PROXY_URL,
    ),
    "container_command_not_found": Remedy(
        "Use an image that provides the command, or correct the command",
        TOOLKIT_SPECIALIZED_URL,
    ),
    "container_name_conflict": Remedy(
        "docker rm -f NAME (removes the container left with that name), or choose another name",
        DOCKER_RM_URL,
    ),
    "probe_timeout": Remedy(
        "Re-run with a longer --llem-timeout; look for a stuck container (`docker ps`) and "
        "at the daemon log (`journalctl -u docker`)",
        DOCKER_TROUBLESHOOT_URL,
    ),
    "gpu_count_mismatch": Remedy(
        "Run with --gpus all and check NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES and the "
        "MIG configuration",
        TOOLKIT_SPECIALIZED_URL,
    ),
    "unsafe_run_file": Remedy(
        "Let the image write <id>_result.json / <id>_error.json as regular JSON files of at most "
        "a few MiB; an image that plants links or FIFOs in the run directory is not to be trusted",
        DOCKER_BIND_MOUNTS_URL,
    ),
    "experiment_timeout": Remedy(
        "Raise execution.experiment_timeout_s in the study, or find out why the experiment "
        "hangs: its log (<id>.log in the run directory), `nvidia-smi` for a GPU that is stuck",
        NVIDIA_SMI_URL,
    ),
    "check_error": Remedy(
        "Re-run `pytest --llem-preflight -v` to see the check's full traceback",
        PYTEST_OUTPUT_URL,
    ),
    "gpu_busy": Remedy(
        "Stop the other processes on the GPU or wait until they end (`nvidia-smi` lists them), "
        "or give the study idle GPUs with `gpus:`",
        NVIDIA_SMI_URL,
    ),
    "persistence_mode_off": Remedy(
        "sudo nvidia-smi -pm 1, or enable the persistence daemon "
        "(sudo systemctl enable --now nvidia-persistenced)",
        PERSISTENCE_URL,
    ),
    "mig_enabled": Remedy(
        "sudo nvidia-smi -i N -mig 0 for GPU N (no process may use it; a GPU reset or reboot "
        "may be needed)",
        MIG_URL,
    ),
    "gpu_throttled": Remedy(
        "Check the cooling, the power supply and the power limit "
        "(`nvidia-smi -q -d PERFORMANCE,TEMPERATURE,POWER`); wait until the GPU has cooled down",
        NVIDIA_SMI_URL,
    ),
    "energy_counter_unsupported": Remedy(
        "Measure on Volta or newer GPUs (compute capability 7.0+) for counter-based energy",
        NVML_ENERGY_URL,
    ),
    "power_limit_changed": Remedy(
        "sudo nvidia-smi -i N -pl DEFAULT for GPU N (its Default Power Limit, in W), or keep the "
        "limit and record it with the results",
        NVIDIA_SMI_URL,
    ),
    "gpu_hardware_fault": Remedy(
        "Drain GPU N (no experiment or job may use it); once it is idle, reset it with "
        "sudo nvidia-smi -r -i N and check the counters again (`nvidia-smi -q -d "
        "ECC,PAGE_RETIREMENT,ROW_REMAPPER -i N`); a remapping failure or errors that recur call "
        "for NVIDIA's field diagnostic",
        GPU_MEMORY_ERRORS_URL,
    ),
    "driver_reloaded": Remedy(
        "Run the experiment again once the driver is settled: find what reloaded it or changed "
        "the GPUs (a driver upgrade, a GPU reset, `nvidia-smi -r`) in the kernel log (`dmesg`)",
        NVIDIA_SMI_URL,
    ),
    "host_unreachable": Remedy(
        "Check that `ssh HOST` logs in without a prompt and that pytest-llem is installed for "
        "the Python named on that host (llem preflight --remote-python PATH)",
        PYTEST_XDIST_TX_URL,
    ),
    "podman_cli_missing": Remedy("Install Podman on this host", PODMAN_INSTALL_URL),
    "cdi_spec_missing": Remedy(GENERATE_CDI_SPEC, TOOLKIT_CDI_URL),
    "cdi_spec_stale": Remedy(
        "Regenerate the spec for the driver and GPUs the host has now: " + GENERATE_CDI_SPEC,
        TOOLKIT_CDI_URL,
    ),
    "unknown": Remedy(
        "Read the output kept in details.output and the NVIDIA Container Toolkit "
        "troubleshooting guide",
        TOOLKIT_TROUBLESHOOT_URL,
    ),
    "ok": Remedy("", ""),
}


def remedy(cause: str) -> Remedy:
    """The default ``(fix, url)`` for ``cause``; ``("", "")`` for ``ok``.

    Raises ``KeyError`` for a word outside the cause vocabulary.
    """
    try:
        return _REMEDIES[cause]
    except KeyError:
        raise KeyError(f"not a cause of the vocabulary: {cause!r}") from None
