"""The captured corpus (docker-gpu-messages.captured.jsonl), the set-ups the reference covers,
the rule families (each with differently worded members) and the container name conflict."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_llem.domain.causes import CAUSES
from pytest_llem.domain.diagnosis import diagnose
from pytest_llem.domain.remedies import remedy

REFERENCE = Path(__file__).parent.parent / "data" / "reference"
CAPTURED: list[dict[str, Any]] = [
    json.loads(line)
    for line in (REFERENCE / "docker-gpu-messages.captured.jsonl").read_text().splitlines()
    if line.strip()
]
DEV: list[dict[str, Any]] = [
    json.loads(line)
    for line in (REFERENCE / "docker-gpu-messages.dev.jsonl").read_text().splitlines()
    if line.strip()
]
BY_ID = {m["id"]: m for m in DEV + CAPTURED}
SETUPS: dict[str, list[str]] = json.loads((REFERENCE / "setups.json").read_text())["setups"]
KEYS = {"id", "source", "command", "returncode", "stderr", "stdout", "category", "setups"}
KEYS |= {"versions", "notes"}


def transcript(message: dict[str, Any]) -> str:
    return "\n".join(part for part in (message["stdout"], message["stderr"]) if part)


# -- the captured corpus ----------------------------------------------------------------------


def test_captured_records_are_complete_and_sourced() -> None:
    assert len(CAPTURED) >= 50
    assert len({m["id"] for m in CAPTURED}) == len(CAPTURED)
    assert not {m["id"] for m in CAPTURED} & {m["id"] for m in DEV}
    for m in CAPTURED:
        assert set(m) == KEYS, m["id"]
        assert m["source"].startswith("captured here: ") and m["command"] and m["notes"]
        assert m["category"] in CAUSES and transcript(m).strip()
        assert set(m["setups"]) <= set(SETUPS), m["id"]


@pytest.mark.parametrize("message", CAPTURED, ids=[m["id"] for m in CAPTURED])
def test_captured_message_is_classified_with_and_without_its_exit_status(
    message: dict[str, Any],
) -> None:
    for returncode in (message["returncode"], None):
        d = diagnose(transcript(message), returncode)
        assert d.cause == message["category"], (returncode, d)
        assert d.fix and d.url.startswith("https://")


VERSION_KEYS = {
    "docker": "docker_version",
    "docker_api": "docker_api_version",
    "podman": "podman_version",
}


@pytest.mark.parametrize(
    ("message", "key", "value"),
    [
        pytest.param(m, key, value, id=f"{m['id']}-{key}")
        for m in CAPTURED
        for key, value in m["versions"].items()
    ],
)
def test_captured_versions_are_in_details(message: dict[str, Any], key: str, value: str) -> None:
    assert value in transcript(message)
    d = diagnose(transcript(message), message["returncode"])
    assert d.details[VERSION_KEYS[key]] == value


# -- the set-ups people run -------------------------------------------------------------------

THIN = {"snap"}  # one sourced example so far: a snap of Docker could not be installed here


def test_every_setup_has_sourced_examples() -> None:
    examples: dict[str, set[str]] = {setup: set(ids) for setup, ids in SETUPS.items()}
    for m in CAPTURED:
        for setup in m["setups"]:
            examples[setup].add(m["id"])
    files = {p.name for p in REFERENCE.glob("*.txt")}
    for setup, ids in examples.items():
        assert ids <= set(BY_ID) | files, setup
        assert len(ids) >= (1 if setup in THIN else 2), setup


# -- families: one cause, several wordings (engines, versions, wrappers) -----------------------

# Real members by corpus id; our own variants (built on the tools' wording) as text.
FAMILIES: dict[str, tuple[str, list[str]]] = {
    "context or connection that does not exist": (
        "daemon_unreachable",
        [
            "cap-context-env-missing-20",
            "cap-context-flag-missing-28",
            "cap-context-current-removed-20",
            "cap-podman-connection-missing",
        ],
    ),
    "endpoint that cannot be set up (TLS files)": (
        "daemon_unreachable",
        [
            "cap-remote-tls-no-ca-20",
            "cap-remote-tls-no-ca-28",
            # go-connections tlsconfig/config.go: "could not read CA certificate %q: %v"
            'unable to resolve docker endpoint: could not read CA certificate "/home/ada/.docker/'
            'ca.pem": open /home/ada/.docker/ca.pem: no such file or directory',
        ],
    ),
    "remote daemon that does not answer": (
        "daemon_unreachable",
        [
            "cap-remote-tcp-timeout-20",
            "cap-remote-tcp-refused-run-28",
            "cap-remote-ssh-refused-28",
            'Get "http://gpu-box:2375/v1.43/info": dial tcp: lookup gpu-box on 127.0.0.53:53: '
            "no such host",
        ],
    ),
    "podman service that does not answer": (
        "daemon_unreachable",
        ["cap-podman-remote-no-service", "cap-podman-remote-ssh-refused"],
    ),
    "containerd socket that does not answer": (
        "daemon_unreachable",
        [
            "cap-containerd-socket-missing-k3s",
            'validate service connection: validate CRI v1 runtime API for endpoint "unix:///run/'
            'containerd/containerd.sock": rpc error: code = Unavailable desc = connection error: '
            'desc = "transport: Error while dialing: dial unix /run/containerd/containerd.sock: '
            'connect: no such file or directory"',
        ],
    ),
    "socket of another user or group": (
        "daemon_permission_denied",
        ["cap-rootless-socket-permission-info-20", "cap-rootless-socket-permission-run-28"],
    ),
    "container name in use": (
        "container_name_conflict",
        [
            "cap-name-conflict-run-20",
            "cap-name-conflict-rename-28",
            "cap-name-conflict-podman",
            "cap-name-conflict-podman-rename",
            "cap-name-conflict-ctr",
        ],
    ),
    "CDI device that this engine cannot give": (
        "cdi_injection_failed",
        [
            "cap-cdi-device-old-docker-20",
            "cap-cdi-device-no-cdi-daemon-28",
            "cap-cdi-unresolvable-podman-docker-shim",
        ],
    ),
    "CDI spec older than the driver (driver upgraded)": (
        "cdi_injection_failed",
        [
            "Error: crun: error stat'ing file `/usr/lib/x86_64-linux-gnu/libnvidia-ml.so."
            "535.104.05`: No such file or directory: OCI runtime attempted to invoke a command "
            "that was not found",
            "Error: setting up CDI devices: failed to inject devices: failed to stat CDI host "
            'device "/dev/nvidia-uvm": no such file or directory',
            "docker: Error response from daemon: failed to create task for container: failed to "
            "create shim task: OCI runtime create failed: runc create failed: unable to start "
            'container process: error during container init: error mounting "/usr/lib/x86_64-'
            'linux-gnu/libcuda.so.550.54.15" to rootfs at "/usr/lib/x86_64-linux-gnu/libcuda.so.'
            '550.54.15": stat /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15: no such file or '
            "directory: unknown",
        ],
    ),
    "NVIDIA runtime that the engine does not have": (
        "nvidia_runtime_unknown",
        [
            "cap-runtime-nvidia-unknown-28",
            "cap-runtime-nvidia-podman",
            "cap-runtime-nvidia-ctr",
            'Error from server (Forbidden): error when creating "probe.yaml": pods "probe" is '
            'forbidden: pod rejected: RuntimeClass "nvidia" not found',
        ],
    ),
    "hook whose ldconfig does not exist (distribution, snap)": (
        "toolkit_hook_missing",
        [
            "nvidia-container-cli: ldcache error: open failed: /sbin/ldconfig.real: no such file "
            "or directory",
            "stderr: nvidia-container-cli: ldcache error: process /sbin/ldconfig.real failed "
            "with error code: 1: unknown",
        ],
    ),
    "NVML library that cannot be loaded": (
        "driver_not_loaded",
        [
            "dnl-libnvc-231-rocky",
            "cap-smi-no-nvml-library-580",
            "Failed to initialize NVML: could not load NVML library. If this is a GPU node, did "
            "you set the docker default runtime to `nvidia`?",
        ],
    ),
    "device files this user may not open": (
        "driver_not_loaded",
        [
            "cap-smi-insufficient-permissions-580",
            # libnvidia-container's "nvml error: %s" with NVML's string for the same error
            "nvidia-container-cli: initialization error: nvml error: insufficient permissions",
        ],
    ),
    "no GPU to schedule on (Kubernetes)": (
        "no_devices",
        [
            "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are "
            "available: 1 No preemption victims found for incoming pod.",
            "No devices found. Waiting indefinitely.",
        ],
    ),
}


def _member_text(member: str) -> str:
    return transcript(BY_ID[member]) if member in BY_ID else member


def _wording(text: str) -> str:
    """The words of a message without names, numbers, paths and quoted values."""
    text = re.sub(r'"[^"]*"|`[^`]*`|\S*[/\\]\S*|[0-9a-f]{12,}|\d+', " ", text.lower())
    return " ".join(text.split())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_members_are_worded_differently_and_share_their_cause(family: str) -> None:
    cause, members = FAMILIES[family]
    texts = [_member_text(m) for m in members]
    assert len({_wording(t) for t in texts}) >= 2, family
    for member, text in zip(members, texts, strict=True):
        for returncode in (None, 1, 125):
            d = diagnose(text, returncode)
            assert d.cause == cause, (member, returncode, d)


def test_stale_cdi_spec_names_the_library_version() -> None:
    _, members = FAMILIES["CDI spec older than the driver (driver upgraded)"]
    assert diagnose(members[0], 127).details["library_version"] == "535.104.05"
    d = diagnose(members[2], 125)
    assert d.details["library_version"] == "550.54.15"
    assert "stale" in d.message


# -- the container name conflict ----------------------------------------------------------------

DOCKER_CONFLICT = (
    'docker: Error response from daemon: Conflict. The container name "/llem-x-001" is already '
    'in use by container "5f0c3e2ab1d94e3f8c6b7a1e2d3c4b5a6f7e8d9c0b1a2f3e4d5c6b7a8f9e0d1c". You '
    "have to remove (or rename) that container to be able to reuse that name.\n"
    "See 'docker run --help'."
)


def test_docker_conflict_names_the_container_and_the_command_that_frees_it() -> None:
    d = diagnose(DOCKER_CONFLICT, 125)
    assert d.cause == "container_name_conflict"
    assert d.details["container_name"] == "llem-x-001"
    assert d.details["container_id"].startswith("5f0c3e2ab1d9")
    assert d.fix.startswith("docker rm -f llem-x-001")
    assert d.url == remedy("container_name_conflict").url
    assert "llem-x-001" in d.message and "5f0c3e2ab1d9" in d.message


def test_podman_conflict_fix_uses_podman() -> None:
    d = diagnose(transcript(BY_ID["cap-name-conflict-podman"]), 125)
    assert d.fix.startswith("podman rm -f llem-x-001")


def test_conflict_remedy_is_the_exact_command() -> None:
    fix, url = remedy("container_name_conflict")
    assert fix.startswith("docker rm -f NAME")
    assert url == "https://docs.docker.com/reference/cli/docker/container/rm/"


def test_other_uses_of_in_use_are_not_a_name_conflict() -> None:
    text = "Error starting userland proxy: listen tcp4 0.0.0.0:8000: bind: address already in use"
    assert diagnose(text, 125).cause == "unknown"


def test_device_files_this_user_may_not_open_say_so() -> None:
    d = diagnose(transcript(BY_ID["cap-smi-insufficient-permissions-580"]), 4)
    assert "may not open the NVIDIA device files" in d.message
    assert d.fix.startswith("ls -l /dev/nvidia*") and "install" not in d.fix.lower()


def test_access_blocked_on_linux_is_not_taken_for_wsl() -> None:
    """The same words that WSL2 prints: without a sign of WSL, both remedies are named."""
    d = diagnose(transcript(BY_ID["cap-smi-blocked-by-os-580"]), 17)
    assert "platform" not in d.details
    assert "ls -l /dev/nvidia*" in d.fix and "wsl --update" in d.fix
    wsl = diagnose(
        "Failed to initialize NVML: GPU access blocked by the operating system\n"
        "ls: cannot access '/usr/lib/wsl/lib': No such file or directory",
        None,
    )
    assert wsl.details["platform"] == "wsl2"


@pytest.mark.parametrize("returncode", [2, None])
def test_an_unknown_query_field_is_never_ok(returncode: int | None) -> None:
    assert diagnose(transcript(BY_ID["cap-smi-invalid-field-580"]), returncode).cause == "unknown"
