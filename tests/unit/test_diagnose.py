"""diagnose(): the real messages of the reference set, and families of our own variants.

The variants wrap the same inner nvidia-container-cli / NVML / engine messages the way the
docker CLI, runc, crun, containerd, podman and compose of many versions do: the cause must not
depend on the wrapper.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from testbed.captures import verbatim as captured_output

from pytest_llem.domain.causes import CAUSES
from pytest_llem.domain.diagnosis import Diagnosis, diagnose
from pytest_llem.domain.remedies import remedy

REFERENCE = Path(__file__).parent.parent / "data" / "reference"
MESSAGES: list[dict[str, Any]] = [
    json.loads(line)
    for line in (REFERENCE / "docker-gpu-messages.dev.jsonl").read_text().splitlines()
    if line.strip()
]


def transcript(message: dict[str, Any]) -> str:
    """stdout and stderr as a terminal shows them."""
    return "\n".join(part for part in (message["stdout"], message["stderr"]) if part)


def verbatim(name: str) -> str:
    """A real-output file without its ``# source`` header."""
    return captured_output(REFERENCE / name)


def check_shape(d: Diagnosis) -> None:
    assert d.cause in CAUSES
    assert "\n" not in d.message and d.message
    if d.cause != "ok":
        assert d.fix and d.url.startswith("https://"), d


# -- the reference messages ------------------------------------------------------------------


def test_reference_set_is_complete() -> None:
    assert len(MESSAGES) == 66
    causes = {m["category"] for m in MESSAGES}
    assert len(causes) == 17  # 16 failure causes and ok


@pytest.mark.parametrize("message", MESSAGES, ids=[m["id"] for m in MESSAGES])
def test_reference_message_is_classified_as_its_category(message: dict[str, Any]) -> None:
    d = diagnose(transcript(message), message["returncode"])
    assert d.cause == message["category"], d
    check_shape(d)


# keys of the reference set's "versions" -> keys of Diagnosis.details
VERSION_KEYS = {
    "driver": "driver_version",
    "host_cuda": "cuda_version",
    "required_cuda": "required_cuda",
    "image": "image",
    "nvidia_smi": "nvidia_smi_version",
    "nvidia_container_cli": "nvidia_container_cli_version",
    "nvidia_ctk": "nvidia_ctk_version",
}
NAMED_VERSIONS = [
    pytest.param(m, key, value, id=f"{m['id']}-{key}")
    for m in MESSAGES
    for key, value in m["versions"].items()
    if key in VERSION_KEYS and value in transcript(m)
]


def test_some_versions_are_named_in_the_texts() -> None:
    assert len(NAMED_VERSIONS) >= 12


@pytest.mark.parametrize(("message", "key", "value"), NAMED_VERSIONS)
def test_versions_the_text_names_are_in_details(
    message: dict[str, Any], key: str, value: str
) -> None:
    d = diagnose(transcript(message), message["returncode"])
    assert d.details.get(VERSION_KEYS[key]) == value


def test_in_container_smi_version_is_not_taken_for_the_driver() -> None:
    m = next(m for m in MESSAGES if m["id"] == "ok-nvdocker-759-incontainer")
    d = diagnose(transcript(m), 0)
    assert d.details["driver_version"] == "390.59"
    assert d.details["nvidia_smi_version"] == "390.48"
    assert "cuda_version" not in d.details


# -- the real outputs: parsed and "ok" -------------------------------------------------------

# file -> (driver_version, cuda_version, number of GPUs in the details, other details)
REAL_OUTPUTS: dict[str, tuple[str | None, str | None, int | None, dict[str, str]]] = {
    "docker-info-grep-nvidia_cdi-and-runtime.txt": (None, None, None, {}),
    "docker-info_20.10.21_cgroupv2_nvidia-runtime.txt": (
        None,
        None,
        None,
        {"docker_server_version": "20.10.21"},
    ),
    "docker-version_29.4.0.txt": (None, None, None, {}),
    "nvidia-container-cli_-V_1.11.0_distro-build.txt": (
        None,
        None,
        None,
        {"nvidia_container_cli_version": "1.11.0"},
    ),
    "nvidia-container-cli_info_2x-titan-xp.txt": ("410.104", "10.0", 2, {}),
    "nvidia-container-cli_info_8x-rtx2080ti_debug-tail.txt": ("465.19.01", "11.3", 1, {}),
    "nvidia-ctk_--version_1.14.3.txt": (None, None, None, {"nvidia_ctk_version": "1.14.3"}),
    "nvidia-ctk_cdi-list_nvidia-docs-example.txt": (None, None, None, {}),
    "nvidia-smi-L_4x-a100-mig-on-gpu0.txt": (None, None, 4, {}),
    "nvidia-smi-q_wsl2_titan-rtx_wddm.txt": ("510.06", "11.6", 1, {}),
    "nvidia-smi-query-gpu_name.csv.txt": (None, None, 1, {}),
    "nvidia-smi-query-gpu_with-units_loop.csv.txt": (None, None, 1, {}),
    "nvidia-smi_390.48-vs-driver-390.59_2x-m40_incontainer.txt": ("390.59", None, 2, {}),
    "nvidia-smi_440.64_tesla-v100.txt": ("440.64", "10.2", 1, {}),
    "nvidia-smi_535.86.10_a100-80gb-mig_docker.txt": ("535.86.10", "12.2", 1, {}),
    "nvidia-smi_550.40.07_rtx-4070.txt": ("550.40.07", "12.4", 1, {}),
    "nvidia-smi_551.78_windows-wddm.txt": ("551.78", "12.4", 0, {}),
}


def test_every_real_output_has_an_expectation() -> None:
    assert set(REAL_OUTPUTS) == {p.name for p in REFERENCE.glob("*.txt")}


@pytest.mark.parametrize("name", sorted(REAL_OUTPUTS))
def test_real_output_is_ok_with_its_versions(name: str) -> None:
    driver, cuda, count, extra = REAL_OUTPUTS[name]
    for returncode in (0, None):
        d = diagnose(verbatim(name), returncode)
        assert d.cause == "ok", d
        assert d.details.get("driver_version") == driver
        assert d.details.get("cuda_version") == cuda
        assert (len(d.details["gpus"]) if "gpus" in d.details else None) == count
        for key, value in extra.items():
            assert d.details[key] == value
        check_shape(d)


def test_ok_details_list_gpus_with_index_name_uuid() -> None:
    d = diagnose(verbatim("nvidia-smi-L_4x-a100-mig-on-gpu0.txt"), 0)
    assert d.details["gpus"][3] == {
        "index": 3,
        "name": "NVIDIA A100-SXM4-80GB",
        "uuid": "GPU-69ec2344-ebac-b028-f88f-452abb3d7f11",
    }
    assert d.message == "No failure: 4 GPU(s)"


# -- families: one inner message under many wrappers ------------------------------------------

INNER: dict[str, tuple[str, str, dict[str, str]]] = {
    "requirement": (
        "nvidia-container-cli: requirement error: unsatisfied condition: cuda>=12.6, please "
        "update your driver to a newer version, or use an earlier cuda container",
        "cuda_requirement_unsatisfied",
        {"required_cuda": "12.6"},
    ),
    "mismatch": (
        "nvidia-container-cli: initialization error: nvml error: driver/library version mismatch",
        "nvml_driver_library_mismatch",
        {},
    ),
    "not-loaded": (
        "nvidia-container-cli: initialization error: nvml error: driver not loaded",
        "driver_not_loaded",
        {},
    ),
    "no-libnvml": (
        "nvidia-container-cli: initialization error: load library failed: libnvidia-ml.so.1: "
        "cannot open shared object file: no such file or directory",
        "driver_not_loaded",
        {},
    ),
    "hook-driver-error": (
        "nvidia-container-cli: initialization error: driver error: failed to process request",
        "driver_not_loaded",
        {},
    ),
    "cgroup-v2": (
        "nvidia-container-cli: container error: cgroup subsystem devices not found",
        "cgroup_device_setup_failed",
        {},
    ),
    "rootless-bpf": (
        "nvidia-container-cli: mount error: failed to add device rules: unable to find any "
        "existing device filters attached to the cgroup: bpf_prog_query(BPF_CGROUP_DEVICE) "
        "failed: operation not permitted",
        "cgroup_device_setup_failed",
        {},
    ),
    "no-device": (
        "nvidia-container-cli: initialization error: cuda error: no cuda-capable device is "
        "detected",
        "no_devices",
        {},
    ),
    "unknown-device": (
        "nvidia-container-cli: device error: 3: unknown device",
        "no_devices",
        {},
    ),
}

# How each engine generation wraps the hook's stderr ({inner}); Docker 19.03 nests quotes.
WRAPPERS: dict[str, str] = {
    "docker-18.09-runtime-v2": (
        "docker: Error response from daemon: OCI runtime create failed: container_linux.go:348: "
        'starting container process caused "process_linux.go:402: container init caused '
        '\\"process_linux.go:385: running prestart hook 1 caused \\\\\\"error running hook: '
        "exit status 1, stdout: , stderr: exec command: [/usr/bin/nvidia-container-cli "
        "--load-kmods configure --ldconfig=@/sbin/ldconfig.real --device=all --compute "
        "--utility --require=cuda>=10.0 brand=tesla,driver>=384,driver<385 --pid=4242 "
        '/var/lib/docker/overlay2/3f1c/merged]\\\\\\\\n{inner}\\\\\\\\n\\\\\\"\\"": unknown.'
    ),
    "docker-19.03": (
        "docker: Error response from daemon: OCI runtime create failed: container_linux.go:349: "
        'starting container process caused "process_linux.go:449: container init caused '
        '\\"process_linux.go:432: running prestart hook 0 caused \\\\\\"error running hook: '
        'exit status 1, stdout: , stderr: {inner}\\\\\\\\n\\\\\\"\\"": unknown.'
    ),
    "docker-20.10": (
        "docker: Error response from daemon: OCI runtime create failed: container_linux.go:380: "
        "starting container process caused: process_linux.go:545: container init caused: "
        "Running hook #0:: error running hook: exit status 1, stdout: , stderr: {inner}: "
        "unknown.\nERRO[0000] error waiting for container: context canceled"
    ),
    "docker-23-24": (
        "docker: Error response from daemon: failed to create shim task: OCI runtime create "
        "failed: runc create failed: unable to start container process: error during container "
        "init: error running hook #0: error running hook: exit status 1, stdout: , stderr: "
        "Auto-detected mode as 'legacy'\n{inner}: unknown.\n"
        "ERRO[0000] error waiting for container: context canceled"
    ),
    "docker-25-27": (
        "docker: Error response from daemon: failed to create task for container: failed to "
        "create shim task: OCI runtime create failed: runc create failed: unable to start "
        "container process: error during container init: error running prestart hook #0: exit "
        "status 1, stdout: , stderr: Auto-detected mode as 'legacy'\n{inner}: unknown."
    ),
    "docker-28-cli": (
        "docker: Error response from daemon: failed to create task for container: failed to "
        "create shim task: OCI runtime create failed: runc create failed: unable to start "
        "container process: error during container init: error running prestart hook #0: exit "
        "status 1, stdout: , stderr: Auto-detected mode as 'legacy'\n{inner}: unknown\n\n"
        "Run 'docker run --help' for more information"
    ),
    "rootless-docker-with-pull": (
        "Unable to find image 'nvidia/cuda:12.6.3-base-ubuntu24.04' locally\n"
        "12.6.3-base-ubuntu24.04: Pulling from nvidia/cuda\n"
        "de44b265507a: Pull complete\nDigest: sha256:1f0bd3fe4b1e\n"
        "Status: Downloaded newer image for nvidia/cuda:12.6.3-base-ubuntu24.04\n"
        "docker: Error response from daemon: failed to create task for container: failed to "
        "create shim task: OCI runtime create failed: runc create failed: unable to start "
        "container process: error during container init: error running prestart hook #0: exit "
        "status 1, stdout: , stderr: {inner}: unknown."
    ),
    "containerd-k8s": (
        "Error: failed to create containerd task: failed to create shim task: OCI runtime "
        "create failed: runc create failed: unable to start container process: error during "
        "container init: error running prestart hook #0: exit status 1, stdout: , stderr: "
        "Auto-detected mode as 'legacy'\n{inner}: unknown"
    ),
    "podman-runc": (
        "Error: runc: runc create failed: unable to start container process: error during "
        "container init: error running hook #0: error running hook: exit status 1, stdout: , "
        "stderr: Auto-detected mode as 'legacy'\n{inner}: OCI runtime error"
    ),
    "podman-crun": (
        "{inner}\nError: OCI runtime error: crun: error executing hook "
        "`/usr/bin/nvidia-container-toolkit` (exit code: 1)"
    ),
    "compose": (
        "ERROR: for trainer  Cannot start service trainer: failed to create shim: OCI runtime "
        "create \nfailed: runc create failed: unable to start container process: error during "
        "container init: error running \nhook #0: error running hook: exit status 1, stdout: , "
        "stderr: {inner}: unknown\nERROR: Encountered errors while bringing up the project."
    ),
    "wsl2-docker-desktop": (
        "\x1b[31mdocker: Error response from daemon: failed to create task for container: "
        "failed to create shim task: OCI runtime create failed: runc create failed: unable to "
        "start container process: error during container init: error running hook #0: error "
        "running hook: exit status 1, stdout: , stderr: Auto-detected mode as 'legacy'\r\n"
        "{inner}: unknown.\x1b[0m\r\n"
    ),
    "bare-hook": "{inner}",
}

FAMILY_CASES = [
    pytest.param(inner, wrapper, id=f"{inner}@{wrapper}") for inner in INNER for wrapper in WRAPPERS
]


@pytest.mark.parametrize(("inner", "wrapper"), FAMILY_CASES)
def test_inner_message_is_recognised_under_every_wrapper(inner: str, wrapper: str) -> None:
    message, cause, details = INNER[inner]
    for returncode in (125, None, 1):
        d = diagnose(WRAPPERS[wrapper].format(inner=message), returncode)
        assert d.cause == cause, (d, returncode)
        for key, value in details.items():
            assert d.details.get(key) == value
        check_shape(d)


def test_docker_19_requirement_error_from_the_report() -> None:
    text = (
        "docker: Error response from daemon: OCI runtime create failed: container_linux.go:349: "
        'starting container process caused "process_linux.go:449: container init caused '
        '\\"process_linux.go:432: running prestart hook 0 caused \\\\\\"error running hook: exit '
        "status 1, stdout: , stderr: nvidia-container-cli: requirement error: unsatisfied "
        "condition: cuda>=11.6, please update your driver to a newer version, or use an earlier "
        'cuda container\\\\\\\\n\\\\\\"\\"": unknown'
    )
    d = diagnose(text, 125)
    assert d.cause == "cuda_requirement_unsatisfied"
    assert d.details["required_cuda"] == "11.6"
    assert "11.6" in d.message and "11.6" in d.fix


def test_pulled_image_is_named_in_a_gpu_failure() -> None:
    message = INNER["requirement"][0]
    d = diagnose(WRAPPERS["rootless-docker-with-pull"].format(inner=message), 125)
    assert d.cause == "cuda_requirement_unsatisfied"
    assert d.details["image"] == "nvidia/cuda:12.6.3-base-ubuntu24.04"


# -- our own variants, one by one -------------------------------------------------------------

# (id, output, returncode, cause, details that must be there)
VARIANTS: list[tuple[str, str, int | None, str, dict[str, Any]]] = [
    # the docker CLI itself
    ("cli-dash", "sh: 1: docker: not found", 127, "docker_cli_missing", {}),
    ("cli-bin-sh", "/bin/sh: docker: not found", 127, "docker_cli_missing", {}),
    ("cli-zsh", "zsh: command not found: docker", 127, "docker_cli_missing", {}),
    ("cli-fish", "fish: Unknown command: docker", 127, "docker_cli_missing", {}),
    (
        "cli-cmd-exe",
        "'docker' is not recognized as an internal or external command,\n"
        "operable program or batch file.",
        1,
        "docker_cli_missing",
        {},
    ),
    (
        "cli-powershell",
        "docker : The term 'docker' is not recognized as the name of a cmdlet, function, script "
        "file, or operable program.",
        1,
        "docker_cli_missing",
        {},
    ),
    (
        "cli-go-exec",
        'exec: "docker": executable file not found in $PATH',
        None,
        "docker_cli_missing",
        {},
    ),
    (
        "cli-python",
        "FileNotFoundError: [Errno 2] No such file or directory: 'docker'",
        1,
        "docker_cli_missing",
        {},
    ),
    ("cli-which", "which: no docker in (/usr/local/bin:/usr/bin)", 1, "docker_cli_missing", {}),
    ("cli-127-silent", "", 127, "docker_cli_missing", {}),
    (
        "cli-timeout-wrapper",
        "timeout: failed to run command \u2018docker\u2019: No such file or directory",
        127,
        "docker_cli_missing",
        {},
    ),
    # the daemon
    (
        "daemon-cli-29",
        "failed to connect to the docker API at unix:///var/run/docker.sock; check if the path "
        "is correct and if the daemon is running: dial unix /var/run/docker.sock: connect: no "
        "such file or directory",
        1,
        "daemon_unreachable",
        {"endpoint": "unix:///var/run/docker.sock"},
    ),
    (
        "daemon-rootless",
        "docker: Cannot connect to the Docker daemon at unix:///run/user/1000/docker.sock. Is "
        "the docker daemon running?\nSee 'docker run --help'.",
        125,
        "daemon_unreachable",
        {"endpoint": "unix:///run/user/1000/docker.sock"},
    ),
    (
        "daemon-remote-tcp",
        "Cannot connect to the Docker daemon at tcp://10.0.0.5:2376. Is the docker daemon running?",
        1,
        "daemon_unreachable",
        {"endpoint": "tcp://10.0.0.5:2376"},
    ),
    (
        "daemon-remote-refused",
        'error during connect: Get "http://10.0.0.5:2375/v1.47/containers/json": dial tcp '
        "10.0.0.5:2375: connect: connection refused",
        1,
        "daemon_unreachable",
        {},
    ),
    (
        "daemon-windows-pipe",
        "error during connect: this error may indicate that the docker daemon is not running: "
        'Get "http://%2F%2F.%2Fpipe%2Fdocker_engine/v1.24/containers/json": open '
        "//./pipe/docker_engine: The system cannot find the file specified.",
        1,
        "daemon_unreachable",
        {},
    ),
    (
        "daemon-refused-socket",
        "dial unix /var/run/docker.sock: connect: connection refused",
        1,
        "daemon_unreachable",
        {},
    ),
    (
        "daemon-stale-context",
        'Current context "gpu-box" is not found on the file system, please check your config '
        "file at /home/ada/.docker/config.json",
        1,
        "daemon_unreachable",
        {},
    ),
    (
        "daemon-podman-shim",
        "Cannot connect to Podman. Please verify your connection to the Linux system using "
        "`podman system connection list`, or try `podman machine init` and `podman machine "
        "start` to manage a new Linux VM\nError: unable to connect to Podman socket: Get "
        '"http://d/v5.0.0/libpod/_ping": dial unix /run/user/1000/podman/podman.sock: connect: '
        "no such file or directory",
        125,
        "daemon_unreachable",
        {},
    ),
    (
        "permission-api-wording",
        "permission denied while trying to connect to the docker API at "
        "unix:///var/run/docker.sock",
        1,
        "daemon_permission_denied",
        {"endpoint": "unix:///var/run/docker.sock"},
    ),
    (
        "permission-rootless-socket",
        'docker: Get "http://%2Frun%2Fuser%2F1001%2Fdocker.sock/v1.45/containers/json": dial '
        "unix /run/user/1001/docker.sock: connect: permission denied.",
        125,
        "daemon_permission_denied",
        {},
    ),
    # engine / toolkit setup
    (
        "toolkit-ctk-missing",
        "bash: nvidia-ctk: command not found",
        127,
        "toolkit_missing",
        {},
    ),
    ("toolkit-wrapper-missing", "nvidia-docker: command not found", 127, "toolkit_missing", {}),
    (
        "hook-runtime-binary-missing",
        "docker: Error response from daemon: failed to create task for container: failed to "
        "create shim task: OCI runtime create failed: unable to retrieve OCI runtime error (open "
        "/run/containerd/io.containerd.runtime.v2.task/moby/4e2f/log.json: no such file or "
        'directory): exec: "nvidia-container-runtime": executable file not found in $PATH: '
        "unknown.",
        125,
        "toolkit_hook_missing",
        {"binary": "nvidia-container-runtime"},
    ),
    (
        "hook-podman-crun-127",
        "Error: OCI runtime error: crun: error executing hook `/usr/bin/nvidia-container-toolkit` "
        "(exit code: 127)",
        126,
        "toolkit_hook_missing",
        {},
    ),
    (
        "hook-shared-library",
        "nvidia-container-cli: error while loading shared libraries: libnvidia-container.so.1: "
        "cannot open shared object file: No such file or directory",
        127,
        "toolkit_hook_missing",
        {},
    ),
    (
        "runtime-podman",
        'Error: default OCI runtime "nvidia" not found: invalid argument',
        125,
        "nvidia_runtime_unknown",
        {},
    ),
    (
        "runtime-k8s-runtimeclass",
        "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox "
        'runtime: no runtime for "nvidia" is configured',
        None,
        "nvidia_runtime_unknown",
        {},
    ),
    (
        "gpu-driver-named",
        'Error response from daemon: could not select device driver "nvidia" with capabilities: '
        "[[gpu]]",
        None,
        "gpu_driver_not_configured",
        {},
    ),
    (
        "gpu-flag-unknown",
        "unknown flag: --gpus\nSee 'docker run --help'.",
        125,
        "gpu_driver_not_configured",
        {},
    ),
    (
        "hook-csv-mode",
        "docker: Error response from daemon: failed to create task for container: failed to "
        "create shim task: OCI runtime create failed: runc create failed: unable to start "
        "container process: error during container init: error running hook #0: error running "
        "hook: exit status 1, stdout: , stderr: Auto-detected mode as 'csv'\ninvoking the "
        "NVIDIA Container Runtime Hook directly (e.g. specifying the docker --gpus flag) is not "
        "supported. Please use the NVIDIA Container Runtime (e.g. specify the --runtime=nvidia "
        "flag) instead.: unknown.",
        125,
        "gpu_driver_not_configured",
        {},
    ),
    (
        "cdi-runtime-mode",
        "docker: Error response from daemon: failed to create task for container: failed to "
        "create shim task: OCI runtime create failed: /usr/bin/nvidia-container-runtime did not "
        'terminate successfully: exit status 1: time="2024-05-01T10:00:00Z" level=error '
        'msg="error running handler: error constructing low-level runtime: error constructing '
        'cdi modifier: failed to resolve CDI devices: unresolvable CDI devices nvidia.com/gpu=all"'
        ": unknown.",
        125,
        "cdi_injection_failed",
        {"cdi_device": "nvidia.com/gpu=all"},
    ),
    (
        "cdi-stale-spec-runc",
        "docker: Error response from daemon: failed to create task for container: failed to "
        "create shim task: OCI runtime create failed: runc create failed: unable to start "
        "container process: error during container init: error mounting "
        '"/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05" to rootfs at '
        '"/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05": stat '
        "/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05: no such file or directory: unknown.",
        125,
        "cdi_injection_failed",
        {},
    ),
    (
        "cdi-stale-spec-crun",
        "Error: crun: cannot stat `/usr/lib/x86_64-linux-gnu/libEGL_nvidia.so.550.54.14`: No "
        "such file or directory: OCI runtime attempted to invoke a command that was not found",
        127,
        "cdi_injection_failed",
        {},
    ),
    # the driver and NVML
    (
        "smi-mismatch-with-library",
        "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 535.86",
        18,
        "nvml_driver_library_mismatch",
        {"nvml_library_version": "535.86"},
    ),
    (
        "dmesg-api-mismatch",
        "NVRM: API mismatch: the client has the version 515.48.07, but\nNVRM: this kernel module "
        "has the version 510.73.05.  Please make sure that this kernel module and all NVIDIA "
        "driver components have the same version.",
        None,
        "nvml_driver_library_mismatch",
        {"nvml_library_version": "515.48.07", "driver_version": "510.73.05"},
    ),
    ("smi-no-devices", "No devices were found", 6, "no_devices", {}),
    (
        "smi-gpu-lost",
        "Unable to determine the device handle for GPU0000:3B:00.0: GPU is lost.  Reboot the "
        "system to recover this GPU",
        15,
        "no_devices",
        {},
    ),
    (
        "wsl-blocked",
        "Failed to initialize NVML: GPU access blocked by the operating system\n"
        "WSL environment detected",
        255,
        "driver_not_loaded",
        {"platform": "wsl2"},
    ),
    (
        "wsl-no-adapters",
        "docker: Error response from daemon: failed to create shim task: OCI runtime create "
        "failed: runc create failed: unable to start container process: error during container "
        "init: error running hook #0: error running hook: exit status 1, stdout: , stderr: "
        "Auto-detected mode as 'legacy'\nnvidia-container-cli: initialization error: WSL "
        "environment detected but no adapters were found: unknown.",
        125,
        "driver_not_loaded",
        {"platform": "wsl2"},
    ),
    (
        "modprobe",
        "modprobe: FATAL: Module nvidia not found in directory /lib/modules/6.5.0-1-amd64",
        1,
        "driver_not_loaded",
        {},
    ),
    (
        "torch-driver-too-old",
        "RuntimeError: The NVIDIA driver on your system is too old (found version 11040). Please "
        "update your GPU driver by downloading and installing a new version from the URL: "
        "http://www.nvidia.com/Download/index.aspx",
        1,
        "cuda_requirement_unsatisfied",
        {"cuda_version": "11.4"},
    ),
    (
        "cuda-runtime-insufficient",
        "CUDA error: CUDA driver version is insufficient for CUDA runtime version",
        1,
        "cuda_requirement_unsatisfied",
        {},
    ),
    (
        "requirement-driver",
        "nvidia-container-cli: requirement error: unsatisfied condition: driver>=535, please "
        "update your driver to a newer version, or use an earlier cuda container: unknown",
        125,
        "cuda_requirement_unsatisfied",
        {"required_driver": "535"},
    ),
    (
        "requirement-brand",
        "nvidia-container-cli: requirement error: unsatisfied condition: brand = tesla, please "
        "update your driver to a newer version, or use an earlier cuda container: unknown",
        125,
        "cuda_requirement_unsatisfied",
        {"required_brand": "tesla"},
    ),
    (
        "nvml-unknown-k8s-log",
        "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0f2a5e1c-2b5d-4c1e-9e7b-3a1f0c9d8e7f)\n"
        "Failed to initialize NVML: Unknown Error",
        0,
        "nvml_unknown_error_cgroups",
        {},
    ),
    # registry and pull
    (
        "pull-dns-after-cuda-image",
        "Unable to find image 'nvidia/cuda:12.4.1-base-ubuntu22.04' locally\ndocker: Error "
        'response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp: lookup '
        "registry-1.docker.io on 127.0.0.53:53: server misbehaving.\nSee 'docker run --help'.",
        125,
        "registry_unreachable",
        {"image": "nvidia/cuda:12.4.1-base-ubuntu22.04", "registry": "registry-1.docker.io"},
    ),
    (
        "pull-tls-nvcr",
        'Error response from daemon: Get "https://nvcr.io/v2/": net/http: TLS handshake timeout',
        1,
        "registry_unreachable",
        {"registry": "nvcr.io"},
    ),
    (
        "pull-rate-limit",
        "docker: Error response from daemon: toomanyrequests: You have reached your pull rate "
        "limit. You may increase the limit by authenticating and upgrading: "
        "https://www.docker.com/increase-rate-limit.",
        125,
        "registry_unreachable",
        {},
    ),
    (
        "pull-podman-dns",
        "Trying to pull docker.io/nvidia/cuda:12.4.1-base-ubuntu22.04...\nError: initializing "
        "source docker://nvidia/cuda:12.4.1-base-ubuntu22.04: pinging container registry "
        'registry-1.docker.io: Get "https://registry-1.docker.io/v2/": dial tcp: lookup '
        "registry-1.docker.io on 10.0.2.3:53: no such host",
        125,
        "registry_unreachable",
        {"image": "docker.io/nvidia/cuda:12.4.1-base-ubuntu22.04"},
    ),
    (
        "pull-layer-timeout",
        "12.4.1-base-ubuntu22.04: Pulling from nvidia/cuda\n3c645031de29: Pulling fs layer\n"
        "error pulling image configuration: download failed after attempts=6: dial tcp "
        "104.18.121.25:443: i/o timeout",
        1,
        "registry_unreachable",
        {"image": "nvidia/cuda:12.4.1-base-ubuntu22.04"},
    ),
    (
        "image-manifest-unknown-cuda",
        "Unable to find image 'nvidia/cuda:12.4.0-base' locally\ndocker: Error response from "
        "daemon: manifest for nvidia/cuda:12.4.0-base not found: manifest unknown: manifest "
        "unknown.\nSee 'docker run --help'.",
        125,
        "image_not_found",
        {"image": "nvidia/cuda:12.4.0-base"},
    ),
    (
        "image-podman-manifest",
        "Error: initializing source docker://nvidia/cuda:99.0-base: reading manifest 99.0-base "
        "in docker.io/nvidia/cuda: manifest unknown",
        125,
        "image_not_found",
        {"image": "nvidia/cuda:99.0-base"},
    ),
    (
        "image-ctr",
        'ctr: failed to resolve reference "docker.io/nvidia/cuda:99": '
        "docker.io/nvidia/cuda:99: not found",
        1,
        "image_not_found",
        {"image": "docker.io/nvidia/cuda:99"},
    ),
    (
        "image-pull-never",
        "docker: Error response from daemon: No such image: nvidia/cuda:12.4.0-base-ubuntu22.04.",
        125,
        "image_not_found",
        {"image": "nvidia/cuda:12.4.0-base-ubuntu22.04"},
    ),
    (
        "image-platform",
        "docker: Error response from daemon: no matching manifest for linux/arm64/v8 in the "
        "manifest list entries.",
        125,
        "image_not_found",
        {"platform": "linux/arm64/v8"},
    ),
    (
        "image-private-ghcr",
        'Error response from daemon: Head "https://ghcr.io/v2/acme/private-cuda/manifests/'
        'latest": unauthorized',
        1,
        "image_not_found",
        {},
    ),
    (
        "image-bad-reference",
        "docker: invalid reference format: repository name must be lowercase.",
        125,
        "image_not_found",
        {},
    ),
    # commands inside the container
    (
        "cmd-docker-19",
        "docker: Error response from daemon: OCI runtime create failed: container_linux.go:349: "
        'starting container process caused "exec: \\"nvidia-smi\\": executable file not found '
        'in $PATH": unknown.',
        127,
        "container_command_not_found",
        {},
    ),
    ("cmd-dash-python", "/bin/sh: 1: python3: not found", 127, "container_command_not_found", {}),
    (
        "cmd-docker-inside-container",
        "docker: Error response from daemon: failed to create task for container: failed to "
        "create shim task: OCI runtime create failed: runc create failed: unable to start "
        'container process: exec: "docker": executable file not found in $PATH: unknown.',
        127,
        "container_command_not_found",
        {},
    ),
    ("cmd-126", "permission denied", 126, "container_command_not_found", {}),
    (
        "cmd-env-shebang",
        "/usr/bin/env: \u2018python3\u2019: No such file or directory",
        127,
        "container_command_not_found",
        {},
    ),
    (
        "smi-bad-field",
        'Field "bogus_field" is not a valid field to query.',
        2,
        "unknown",
        {},
    ),
    (
        "smi-version-580",
        "NVIDIA-SMI version  : 580.159.04\nNVML version        : 580.159\n"
        "DRIVER version      : 580.159.04\nCUDA Version        : 13.0\n",
        0,
        "ok",
        {
            "driver_version": "580.159.04",
            "cuda_version": "13.0",
            "nvidia_smi_version": "580.159.04",
        },
    ),
]


@pytest.mark.parametrize(
    ("output", "returncode", "cause", "details"),
    [pytest.param(*v[1:], id=v[0]) for v in VARIANTS],
)
def test_variant(output: str, returncode: int | None, cause: str, details: dict[str, Any]) -> None:
    d = diagnose(output, returncode)
    assert d.cause == cause, d
    for key, value in details.items():
        assert d.details.get(key) == value, (key, d.details)
    check_shape(d)


def test_there_are_enough_own_variants() -> None:
    assert len(VARIANTS) + len(FAMILY_CASES) >= 30


# -- negative cases: healthy output, and image names full of GPU words -----------------------

PULL_PROGRESS = (
    "Unable to find image 'nvidia/cuda:12.4.1-base-ubuntu22.04' locally\n"
    "12.4.1-base-ubuntu22.04: Pulling from nvidia/cuda\n"
    "3c645031de29: Pulling fs layer\n0d6448aff889: Pull complete\n3c645031de29: Pull complete\n"
    "Digest: sha256:0f6bfcbf267e65123bcc2287e2153dedfc0f24772fb5ce84afe16ac4b2fada95\n"
    "Status: Downloaded newer image for nvidia/cuda:12.4.1-base-ubuntu22.04\n"
)


def test_pull_progress_of_a_cuda_image_is_ok() -> None:
    d = diagnose(PULL_PROGRESS, 0)
    assert d.cause == "ok"
    assert d.details["image"] == "nvidia/cuda:12.4.1-base-ubuntu22.04"


def test_pull_progress_then_probe_csv_is_ok_with_the_gpus() -> None:
    csv = (
        "0, NVIDIA A100-SXM4-80GB, GPU-513536b6-7d19-9063-b049-1e69664bb298, 550.54.15\n"
        "1, NVIDIA A100-SXM4-80GB, GPU-d8594bd4-0fc3-8595-e355-7c98138f3b95, 550.54.15\n"
    )
    d = diagnose(PULL_PROGRESS + csv, 0)
    assert d.cause == "ok"
    assert d.details["driver_version"] == "550.54.15"
    assert [g["index"] for g in d.details["gpus"]] == [0, 1]


def test_pull_of_a_cuda_image_with_failed_dns_is_not_a_gpu_cause() -> None:
    text = (
        "Unable to find image 'nvidia/cuda:12.4.1-base-ubuntu22.04' locally\n"
        'docker: Error response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp: '
        "lookup registry-1.docker.io: no such host.\nSee 'docker run --help'."
    )
    d = diagnose(text, 125)
    assert d.cause == "registry_unreachable"
    assert "DNS" in d.message and "nvidia/cuda:12.4.1-base-ubuntu22.04" in d.message


@pytest.mark.parametrize(
    "image",
    [
        "nvidia/cuda-driver-not-loaded:12.4",
        "acme/no-cuda-capable-device:latest",
        "nvidia/driver:550.54.15-ubuntu22.04",
        "nvml-unknown-error/cuda:12.1",
        "ghcr.io/acme/nvidia-container-cli:requirement-error",
    ],
)
def test_gpu_words_in_an_image_name_never_give_a_gpu_cause(image: str) -> None:
    repo, tag = image.rsplit(":", 1)
    pulled = f"Unable to find image '{image}' locally\n{tag}: Pulling from {repo}\n"
    assert diagnose(pulled + f"Status: Downloaded newer image for {image}\n", 0).cause == "ok"
    missing = f"{pulled}docker: Error response from daemon: manifest for {image} not found"
    d = diagnose(missing, 125)
    assert (d.cause, d.details["image"]) == ("image_not_found", image)


def test_a_networking_error_of_the_application_is_not_a_registry_failure() -> None:
    text = (
        "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='huggingface.co', "
        "port=443): Max retries exceeded with url: /api/models (Caused by NameResolutionError("
        "\"Failed to resolve 'huggingface.co' ([Errno -3] Temporary failure in name "
        'resolution)"))'
    )
    assert diagnose(text, 1).cause == "unknown"


def test_wsl2_library_clash_is_unknown_not_driver_not_loaded() -> None:
    text = WRAPPERS["docker-25-27"].format(
        inner="nvidia-container-cli: mount error: file creation failed: /var/lib/docker/overlay2/"
        "9a1b/merged/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1: file exists"
    )
    d = diagnose(text, 125)
    assert d.cause == "unknown"
    assert d.message.startswith("Docker could not create or start the container (exit 125)")
    assert "file exists" in d.details["output"]


def test_requirement_flags_echoed_by_an_old_runtime_do_not_make_a_cuda_failure() -> None:
    text = WRAPPERS["docker-18.09-runtime-v2"].format(inner=INNER["mismatch"][0])
    d = diagnose(text, 125)
    assert d.cause == "nvml_driver_library_mismatch"
    assert "required_cuda" not in d.details


def test_cosmetic_groups_warning_is_ok() -> None:
    assert diagnose("groups: cannot find name for group ID 993", None).cause == "ok"


# -- messages, fixes, details -----------------------------------------------------------------


def test_mismatch_names_both_versions_and_says_reboot_or_reload() -> None:
    text = (
        "Failed to initialize NVML: Driver/library version mismatch\n"
        "NVML library version: 535.86\n"
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.54.03  Tue Jun  6 22:20:39 UTC 2023"
    )
    d = diagnose(text, 18)
    assert d.cause == "nvml_driver_library_mismatch"
    assert "535.86" in d.message and "535.54.03" in d.message
    assert "Reboot" in d.fix and "modprobe nvidia" in d.fix


def test_cuda_requirement_names_required_and_supported_cuda() -> None:
    text = (
        "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4     |\n"
        + WRAPPERS["docker-25-27"].format(inner=INNER["requirement"][0].replace("12.6", "12.8"))
    )
    d = diagnose(text, 125)
    assert d.cause == "cuda_requirement_unsatisfied"
    assert d.message == (
        "The image requires CUDA >= 12.8 but the host driver 550.54.15 supports only CUDA 12.4"
    )
    assert "CUDA 12.8" in d.fix and d.url.startswith("https://docs.nvidia.com/")


def test_image_not_found_names_the_image_in_the_fix() -> None:
    d = diagnose("docker: Error response from daemon: pull access denied for acme/llm, "
                 "repository does not exist or may require 'docker login'", 125)  # fmt: skip
    assert d.cause == "image_not_found"
    assert "acme/llm" in d.message and "docker pull acme/llm" in d.fix


def test_daemon_permission_fix_is_the_docker_group() -> None:
    d = diagnose(
        "Got permission denied while trying to connect to the Docker daemon socket at "
        "unix:///var/run/docker.sock: dial unix /var/run/docker.sock: connect: permission denied",
        1,
    )
    assert d.cause == "daemon_permission_denied"
    assert (d.fix, d.url) == remedy("daemon_permission_denied")
    assert d.fix == "sudo usermod -aG docker $USER, then log in again"


def test_docker_missing_uses_the_report_wording() -> None:
    d = diagnose("-bash: docker: command not found", 127)
    assert (d.message, d.fix, d.url) == (
        "Docker not found on PATH",
        "Install Docker Engine",
        "https://docs.docker.com/engine/install/",
    )


def test_details_say_which_component_spoke_and_what_it_said() -> None:
    d = diagnose(WRAPPERS["docker-23-24"].format(inner=INNER["cgroup-v2"][0]), 125)
    assert d.details["component"] == "nvidia-container-cli"
    assert "cgroup subsystem devices not found" in d.details["evidence"]


def test_unknown_keeps_the_output_verbatim() -> None:
    text = (
        'docker: Error response from daemon: Conflict. The container name "/llem-probe" is in use'
    )
    d = diagnose(text, 125)
    assert d.cause == "unknown"
    assert d.details["output"] == text
    assert "Conflict" in d.message


def test_nothing_recognised_with_success_is_ok() -> None:
    for returncode in (0, None):
        d = diagnose("hello from the container\n", returncode)
        assert (d.cause, d.fix, d.url) == ("ok", "", "")


def test_unknown_output_of_a_huge_text_is_clipped_head_and_tail() -> None:
    text = "first line\n" + "x" * 5_000_000 + "\nlast line"
    d = diagnose(text, 1)
    assert d.cause == "unknown"
    kept = d.details["output"]
    assert len(kept) < 4300
    assert kept.startswith("first line") and kept.endswith("last line")
    assert "characters omitted" in kept


def test_failure_at_the_end_of_a_huge_log_is_found_quickly() -> None:
    text = "training step ok\n" * 500_000 + "Failed to initialize NVML: Unknown Error\n"
    started = time.perf_counter()
    d = diagnose(text, 1)
    assert d.cause == "nvml_unknown_error_cgroups"
    assert time.perf_counter() - started < 2.0


def test_classifying_the_reference_set_is_fast() -> None:
    texts = [(transcript(m), m["returncode"]) for m in MESSAGES]
    started = time.perf_counter()
    for _ in range(5):
        for text, returncode in texts:
            diagnose(text, returncode)
    per_message = (time.perf_counter() - started) / (5 * len(texts))
    assert per_message < 0.01


def test_lenient_inputs() -> None:
    assert diagnose(b"No devices were found", 6).cause == "no_devices"  # type: ignore[arg-type]
    assert diagnose(None).cause == "ok"  # type: ignore[arg-type]
    assert diagnose("No devices were found", True).cause == "no_devices"


def test_checks_only_causes_are_never_diagnosed() -> None:
    texts = [transcript(m) for m in MESSAGES] + [v[1] for v in VARIANTS]
    produced = {diagnose(t, rc).cause for t in texts for rc in (None, 0, 1, 125, 127)}
    never = {"probe_timeout", "gpu_count_mismatch", "check_error", "unsafe_run_file"}
    assert not produced & (never | {"experiment_timeout"})


# -- remedies ---------------------------------------------------------------------------------


def test_the_vocabulary_is_the_one_the_test_bed_states() -> None:
    """The test bed states DESIGN's cause vocabulary on its own; the product must match it."""
    from testbed.preflight import CAUSES as STATED
    from testbed.preflight import GPU_CAUSES

    assert len(set(CAUSES)) == len(CAUSES)
    assert set(CAUSES) == STATED
    assert GPU_CAUSES <= STATED


@pytest.mark.parametrize("cause", CAUSES)
def test_every_cause_has_a_remedy(cause: str) -> None:
    fix, url = remedy(cause)
    if cause == "ok":
        assert (fix, url) == ("", "")
    else:
        assert fix and url.startswith("https://"), cause


def test_named_remedies() -> None:
    assert remedy("toolkit_missing") == (
        "Install the NVIDIA Container Toolkit",
        "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/install-guide.html",
    )
    assert remedy("gpu_driver_not_configured").fix == (
        "sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker"
    )
    assert remedy("daemon_permission_denied").url == (
        "https://docs.docker.com/engine/install/linux-postinstall/"
    )


def test_remedy_of_a_word_outside_the_vocabulary() -> None:
    with pytest.raises(KeyError, match="not a cause"):
        remedy("gpu_on_fire")


FAILED_TO_PROCESS = (
    "docker: Error response from daemon: failed to create task for container: failed to create "
    "shim task: OCI runtime create failed: runc create failed: unable to start container "
    "process: error during container init: error running hook #0: error running hook: exit "
    "status 1, stdout: , stderr: nvidia-container-cli: initialization error: driver {rpc}error: "
    "failed to process request: unknown."
)


@pytest.mark.parametrize("rpc", ["", "rpc "])
def test_failed_to_process_request_without_a_sign_of_wsl_gets_the_linux_steps(rpc: str) -> None:
    """Reported on bare Linux hosts (NVIDIA/nvidia-docker#1203, #726,
    NVIDIA/nvidia-container-toolkit#183): not proof of WSL."""
    for text in (
        FAILED_TO_PROCESS.format(rpc=rpc),
        FAILED_TO_PROCESS.format(rpc=rpc) + "\nI0913 11:52:12.170514 4764 nvc.c:395] dxcore "
        "initialization failed, continuing assuming a non-WSL environment",
    ):
        d = diagnose(text, 125)
        assert d.cause == "driver_not_loaded"
        assert "wsl" not in d.fix.lower() and "wsl" not in d.url.lower()
        assert "platform" not in d.details
        assert "nvidia-smi" in d.fix and "persistence" in d.fix


@pytest.mark.parametrize(
    "sign",
    [
        "ls: cannot access '/usr/lib/wsl/lib': No such file or directory",
        "Linux box 5.15.153.1-microsoft-standard-WSL2 #1 SMP x86_64 GNU/Linux",
        "W0101 00:00:00.000000 1 nvc.c:400] skipping kernel modules load on WSL",
    ],
)
def test_failed_to_process_request_with_a_sign_of_wsl_gets_the_wsl_steps(sign: str) -> None:
    d = diagnose(FAILED_TO_PROCESS.format(rpc="") + "\n" + sign, 125)
    assert d.cause == "driver_not_loaded"
    assert d.details["platform"] == "wsl2" and "wsl --update" in d.fix
