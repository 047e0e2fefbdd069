"""Properties of diagnose() and the nvidia-smi parsers, over generated text."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st
from testbed.preflight import GPU_CAUSES

from pytest_llem.domain.causes import CAUSES
from pytest_llem.domain.diagnosis import diagnose
from pytest_llem.domain.nvidia_smi import (
    parse_any,
    parse_banner,
    parse_container_cli_info,
    parse_list,
    parse_q,
    parse_query,
    parse_query_csv,
)

REFERENCE = Path(__file__).parent.parent / "data" / "reference"
MESSAGES = [
    json.loads(line)
    for line in (REFERENCE / "docker-gpu-messages.dev.jsonl").read_text().splitlines()
    if line.strip()
]
# Pieces of real output: lines and words, to build texts that look like the real thing.
REAL_LINES = sorted(
    {
        line
        for m in MESSAGES
        for part in (m["stdout"], m["stderr"])
        for line in part.splitlines()
        if line.strip()
    }
    | {
        line
        for path in REFERENCE.glob("*.txt")
        for line in path.read_text().splitlines()
        if line.strip()
    }
)
REAL_WORDS = sorted({word for line in REAL_LINES for word in line.split()})

SOURCES = {"banner", "list", "q", "query", "version", "container-cli"}
NEVER_FROM_TEXT = {
    "probe_timeout",
    "gpu_count_mismatch",
    "check_error",
    "unsafe_run_file",
    "experiment_timeout",
}

returncodes = st.none() | st.integers(min_value=-255, max_value=255)
lines_like_real = st.lists(st.sampled_from(REAL_LINES) | st.text(max_size=80), max_size=12).map(
    "\n".join
)
words_like_real = st.lists(
    st.sampled_from(REAL_WORDS) | st.sampled_from([" ", "\n", "\\", '"', ": ", "\\n", "\r"]),
    max_size=60,
).map(" ".join)
any_text = st.text(max_size=2000) | lines_like_real | words_like_real


@settings(max_examples=400, deadline=None)
@given(text=any_text, returncode=returncodes)
def test_diagnose_is_total_and_speaks_the_vocabulary(text: str, returncode: int | None) -> None:
    d = diagnose(text, returncode)
    assert d.cause in CAUSES
    assert d.cause not in NEVER_FROM_TEXT
    assert d.message and "\n" not in d.message
    assert (d.fix == "" and d.url == "") if d.cause == "ok" else bool(d.fix and d.url)
    assert len(d.details.get("output", "")) < 4300
    if d.cause == "unknown" and returncode in (0, None):
        assert d.details["output"] == text  # only an error line makes it so: never "ok"


@settings(max_examples=50, deadline=None)
@given(text=any_text, returncode=returncodes)
def test_diagnose_is_pure(text: str, returncode: int | None) -> None:
    assert diagnose(text, returncode) == diagnose(text, returncode)


# -- image names made of GPU words never make a GPU cause -----------------------------------------

gpu_words = st.sampled_from(
    [
        "nvidia",
        "cuda",
        "cudnn",
        "driver",
        "nvml",
        "gpu",
        "nvidia-smi",
        "no-cuda-capable-device",
        "driver-not-loaded",
        "version-mismatch",
        "unknown-error",
        "requirement-error",
        "cgroup",
        "cdi",
        "libnvidia-ml.so.1",
        "nvidia-container-cli",
        "runtime",
    ]
)
names = st.lists(gpu_words, min_size=1, max_size=3).map("-".join)
images = st.builds(
    lambda registry, path, tag: f"{registry}{'/'.join(path)}:{tag}",
    st.sampled_from(["", "nvcr.io/", "ghcr.io/", "docker.io/"]),
    st.lists(names, min_size=1, max_size=3),
    st.sampled_from(["latest", "12.4.1-base-ubuntu22.04", "550.54.15", "cuda12-driver"]) | names,
)


def pulled(image: str) -> str:
    repo, tag = image.rsplit(":", 1)
    return (
        f"Unable to find image '{image}' locally\n{tag}: Pulling from {repo}\n"
        "a1b2c3d4e5f6: Pull complete\n"
    )


@settings(max_examples=200, deadline=None)
@given(image=images)
def test_image_names_with_gpu_words_never_give_a_gpu_cause(image: str) -> None:
    done = pulled(image) + f"Status: Downloaded newer image for {image}\n"
    assert diagnose(done, 0).cause == "ok"
    dns = (
        pulled(image)
        + 'docker: Error response from daemon: Get "https://registry-1.docker.io/v2/": dial '
        "tcp: lookup registry-1.docker.io: no such host.\nSee 'docker run --help'."
    )
    assert diagnose(dns, 125).cause == "registry_unreachable"
    missing = f"{pulled(image)}docker: Error response from daemon: manifest for {image} not found"
    d = diagnose(missing, 125)
    assert d.cause == "image_not_found"
    assert d.cause not in GPU_CAUSES


# -- the same inner message under any wrapper and amid noise --------------------------------------

INNER = {
    "nvidia-container-cli: requirement error: unsatisfied condition: cuda>=12.8, please update "
    "your driver to a newer version, or use an earlier cuda container": (
        "cuda_requirement_unsatisfied"
    ),
    "nvidia-container-cli: initialization error: nvml error: driver/library version mismatch": (
        "nvml_driver_library_mismatch"
    ),
    "nvidia-container-cli: initialization error: nvml error: driver not loaded": (
        "driver_not_loaded"
    ),
    "nvidia-container-cli: container error: cgroup subsystem devices not found": (
        "cgroup_device_setup_failed"
    ),
    "nvidia-container-cli: initialization error: cuda error: no cuda-capable device is detected": (
        "no_devices"
    ),
}
WRAPPERS = [
    "{inner}",
    "docker: Error response from daemon: OCI runtime create failed: container_linux.go:380: "
    "starting container process caused: process_linux.go:545: container init caused: Running "
    "hook #0:: error running hook: exit status 1, stdout: , stderr: {inner}: unknown.",
    "docker: Error response from daemon: failed to create task for container: failed to create "
    "shim task: OCI runtime create failed: runc create failed: unable to start container "
    "process: error during container init: error running prestart hook #0: exit status 1, "
    "stdout: , stderr: Auto-detected mode as 'legacy'\n{inner}: unknown",
    "docker: Error response from daemon: OCI runtime create failed: container_linux.go:349: "
    'starting container process caused "process_linux.go:449: container init caused '
    '\\"process_linux.go:432: running prestart hook 0 caused \\\\\\"error running hook: exit '
    'status 1, stdout: , stderr: {inner}\\\\\\\\n\\\\\\"\\"": unknown',
    "Error: runc: runc create failed: unable to start container process: error during container "
    "init: error running hook #0: error running hook: exit status 1, stdout: , stderr: {inner}: "
    "OCI runtime error",
]
NOISE = [
    "ERRO[0000] error waiting for container: context canceled",
    "Run 'docker run --help' for more information",
    "See 'docker run --help'.",
    "Status: Downloaded newer image for nvidia/cuda:12.8.0-base-ubuntu24.04",
    "Unable to find image 'nvidia/cuda:12.8.0-base-ubuntu24.04' locally",
    "12.8.0-base-ubuntu24.04: Pulling from nvidia/cuda",
    "\x1b[0m",
    "",
    "non-network local connections being added to access control list",
]


@settings(max_examples=300, deadline=None)
@given(
    inner=st.sampled_from(sorted(INNER)),
    wrapper=st.sampled_from(WRAPPERS),
    before=st.lists(st.sampled_from(NOISE), max_size=4),
    after=st.lists(st.sampled_from(NOISE), max_size=3),
    crlf=st.booleans(),
    returncode=st.sampled_from([None, 1, 125]),
)
def test_inner_message_wins_whatever_the_wrapper_and_noise(
    inner: str,
    wrapper: str,
    before: list[str],
    after: list[str],
    crlf: bool,
    returncode: int | None,
) -> None:
    text = "\n".join([*before, wrapper.format(inner=inner), *after])
    if crlf:
        text = text.replace("\n", "\r\n")
    assert diagnose(text, returncode).cause == INNER[inner]


# -- parsers ---------------------------------------------------------------------------------------

field_names = st.sampled_from(
    ["index", "name", "uuid", "driver_version", "pci.bus_id", "memory.total", "power.draw"]
)


@settings(max_examples=300, deadline=None)
@given(text=any_text, fields=st.none() | st.lists(field_names, max_size=5))
@example(text="²", fields=["index"])  # (str.isdigit() holds for it, int() refuses it)
@example(text="GPU ², NVIDIA H100", fields=None)
@example(text="Minor Number : ³\nGPU UUID : GPU-1", fields=None)
def test_parsers_never_raise(text: str, fields: list[str] | None) -> None:
    parse_banner(text)
    parse_list(text)
    parse_q(text)
    parse_container_cli_info(text)
    parse_query_csv(text, fields)
    parse_query(text, fields)
    info = parse_any(text)
    assert info is None or info.source in SOURCES


versions = st.builds(
    lambda a, b, c: f"{a}.{b:02d}" + (f".{c:02d}" if c is not None else ""),
    st.integers(300, 999),
    st.integers(0, 199),
    st.none() | st.integers(0, 99),
)
cuda_versions = st.none() | st.builds(
    lambda a, b: f"{a}.{b}", st.integers(9, 13), st.integers(0, 9)
)
gpu_names = st.sampled_from(
    ["NVIDIA A100-SXM4-80GB", "Tesla V100-PCIE-16GB", "NVIDIA GeForce RTX 4090", "Quadro P400"]
)


@settings(max_examples=200, deadline=None)
@given(
    driver=versions,
    cuda=cuda_versions,
    gpus=st.lists(gpu_names, min_size=0, max_size=8),
    new_layout=st.booleans(),
)
def test_banner_round_trip(
    driver: str, cuda: str | None, gpus: list[str], new_layout: bool
) -> None:
    cuda_field = f"CUDA Version: {cuda or 'N/A'}"
    width = 89 if new_layout else 77
    lines = [
        "+" + "-" * (width - 2) + "+",
        f"| NVIDIA-SMI {driver}    Driver Version: {driver}    {cuda_field}".ljust(width - 1) + "|",
        "|=======+",
    ]
    for index, name in enumerate(gpus):
        lines.append(f"|   {index}  {name:<22}  Off  | 00000000:{index + 1:02X}:00.0 Off |  N/A |")
    info = parse_banner("\n".join(lines))
    assert (info.driver_version, info.cuda_version) == (driver, cuda)
    assert [(g.index, g.name) for g in info.gpus] == list(enumerate(gpus))
    assert parse_any("\n".join(lines)) == info


@settings(max_examples=200, deadline=None)
@given(
    fields=st.lists(field_names, min_size=1, max_size=5, unique=True),
    rows=st.integers(1, 6),
    header=st.booleans(),
)
def test_query_csv_round_trip_in_any_field_order(
    fields: list[str], rows: int, header: bool
) -> None:
    def value(field: str, row: int) -> str:
        return {
            "index": str(row),
            "name": "NVIDIA L40S",
            "uuid": f"GPU-{row:08x}-0000-0000-0000-000000000000",
            "driver_version": "550.54.15",
            "pci.bus_id": f"00000000:{row + 1:02X}:00.0",
            "memory.total": "46068 MiB",
            "power.draw": "[N/A]",
        }[field]

    lines = [", ".join(fields)] if header else []
    lines += [", ".join(value(f, r) for f in fields) for r in range(rows)]
    parsed = parse_query_csv("\n".join(lines), fields)
    expected = [{f: value(f, r).removesuffix(" MiB") for f in fields} for r in range(rows)]
    assert parsed == expected
    if header:
        assert parse_query_csv("\n".join(lines)) == expected


@settings(max_examples=100, deadline=None)
@given(gpus=st.lists(gpu_names, min_size=1, max_size=8), mig=st.integers(0, 7))
def test_list_round_trip(gpus: list[str], mig: int) -> None:
    lines = []
    for index, name in enumerate(gpus):
        lines.append(f"GPU {index}: {name} (UUID: GPU-{index:08x}-aaaa-bbbb-cccc-dddddddddddd)")
        if index == 0:
            lines += [
                f"  MIG 1g.10gb     Device  {m}: (UUID: MIG-{m:08x}-aaaa-bbbb-cccc-dddddddddddd)"
                for m in range(mig)
            ]
    info = parse_list("\n".join(lines))
    assert [(g.index, g.name) for g in info.gpus] == list(enumerate(gpus))
    assert len(info.gpus[0].mig) == mig
