"""What llem parses is read whole up to 16 MiB (DESIGN §10), through fake host tools: a
16-GPU `nvidia-smi -q` and a 200 kB image inspect parse whole; 20 MiB of either is an error
that says so, never a partial parse, and never a pull of an image that is there."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from testbed.scenario import GpuScenario, nvidia_smi_script, server_gpus

from pytest_llem.domain import measurement, verdicts
from pytest_llem.domain.gpu_state import parse_states
from pytest_llem.domain.nvidia_smi import parse_q
from pytest_llem.facts import Facts
from pytest_llem.host import docker, nvidia
from pytest_llem.host.proc import MAX_OUTPUT, PARSED_OUTPUT_MAX
from pytest_llem.settings import PreflightSettings

SIXTEEN = GpuScenario(gpus=server_gpus(16))
LABELLED, HUGE = "labelled:1", "huge:1"
# `docker image inspect --format '{{json .}}' -- IMAGE`: 200 kB of labels for LABELLED, 20 MiB
# of them for HUGE, no such image otherwise; a pull is logged and fails.
FAKE_DOCKER = f"""\
import json, sys
args = sys.argv[1:]
if args[:1] == ["pull"]:
    open(sys.argv[0] + ".pulls", "a").write(args[-1] + "\\n")
    sys.exit("Error response from daemon: pull access denied")
if args[:2] == ["image", "inspect"]:
    sizes = {{{LABELLED!r}: 200 * 1024, {HUGE!r}: 20 * 1024 * 1024}}
    if args[-1] not in sizes:
        sys.exit("Error: No such image: " + args[-1])
    labels = {{f"l{{n}}": "v" * 1000 for n in range(sizes[args[-1]] // 1000)}}
    config = {{"Env": ["NVIDIA_REQUIRE_CUDA=cuda>=12.0", "LAST=1"], "Labels": labels}}
    print(json.dumps({{"Id": "sha256:" + "a" * 64, "Config": config}}))
"""


@pytest.fixture
def host_bin(tmp_path: Path) -> Iterator[Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    yield bin_dir


def _tool(bin_dir: Path, name: str, script: str) -> Path:
    """An executable made whole under another name, then renamed: a command started meanwhile
    (a thread of an earlier test's) never finds it half-written or open for writing, where the
    search of PATH would go on to the real tool."""
    path = bin_dir / name
    draft = bin_dir / f".{name}.draft"
    draft.write_text(script)
    draft.chmod(0o755)
    draft.rename(path)
    return path


def _env(bin_dir: Path) -> dict[str, str]:
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(bin_dir.parent)}


def test_a_16_gpu_smi_query_is_read_and_parsed_whole(host_bin: Path) -> None:
    _tool(host_bin, "nvidia-smi", nvidia_smi_script(SIXTEEN))
    result = nvidia.nvidia_smi_query(30, _env(host_bin))
    assert result.ok and len(result.stdout) > 3 * MAX_OUTPUT  # about 220 kB
    info = parse_q(result.stdout)
    assert info.attached_gpus == 16
    assert [(g.index, g.uuid, g.bus_id) for g in info.gpus] == [
        (i, g.uuid, g.pci_bus_id) for i, g in enumerate(SIXTEEN.gpus)
    ]
    assert [s.index for s in parse_states(result.stdout)] == list(range(16))


def test_the_early_smi_query_is_read_whole_too(host_bin: Path) -> None:
    _tool(host_bin, "nvidia-smi", nvidia_smi_script(SIXTEEN))
    facts = Facts(env=_env(host_bin))
    try:
        host = facts.host()  # `start_host()`: the query started before the settings are known
    finally:
        facts.close()
    assert host.smi_info is not None and len(host.smi_info.gpus) == 16


# 20 MiB of `GPU` section headers.
FLOOD = f"#!{sys.executable}\nimport sys\nfor _ in range(20 * 1024): print('GPU x\\n' * 170)\n"


def test_a_20_mib_smi_query_is_an_error_not_a_partial_parse(host_bin: Path) -> None:
    _tool(host_bin, "nvidia-smi", FLOOD)
    facts = Facts(PreflightSettings(measurement_only=True), _env(host_bin))
    try:
        host = facts.host()
    finally:
        facts.close()
    assert host.smi is not None and host.smi.too_large and not host.smi.ok
    assert host.smi.stdout == "" and host.smi_info is None
    driver = verdicts.host_driver(host)
    assert (driver.outcome, driver.finding and driver.finding.cause) == (
        "warning",
        "host_driver_unavailable",
    )
    assert driver.finding is not None
    assert driver.finding.message == (
        "nvidia-smi failed: `nvidia-smi -q` printed more than 16 MiB: too large to read, so it "
        "was stopped and none of its output is used"
    )
    idle = measurement.gpu_idle(host, local=True)
    assert idle.outcome == "warning" and idle.finding is not None
    assert "printed more than 16 MiB" in idle.finding.message


def test_an_image_inspect_of_200_kb_is_parsed_whole(host_bin: Path) -> None:
    _tool(host_bin, "docker", f"#!{sys.executable}\n{FAKE_DOCKER}")
    info, result = docker.image_inspect(LABELLED, 30, _env(host_bin))
    assert result.ok and len(result.stdout) > 200 * 1024
    assert info is not None and info.env["LAST"] == "1"
    assert json.loads(result.stdout)["Config"]["Labels"]["l203"] == "v" * 1000


def test_an_image_inspect_of_20_mib_is_an_error_and_no_pull(host_bin: Path) -> None:
    fake = _tool(host_bin, "docker", f"#!{sys.executable}\n{FAKE_DOCKER}")
    facts = Facts(env=_env(host_bin)).adopt(PreflightSettings(images=(HUGE,)))
    try:
        image = facts.image(HUGE)
        host = facts.docker_facts()
    finally:
        facts.close()
    assert image.info is None and image.pull is None and image.inspect.too_large
    assert not Path(f"{fake}.pulls").exists()
    verdict = verdicts.gpu_in_container(image, None, host, False, 30)
    assert verdict.outcome == "failed" and verdict.finding is not None
    assert verdict.finding.message == (
        f"cannot read {HUGE}: `docker image inspect --format {{{{json .}}}} -- {HUGE}` printed "
        "more than 16 MiB: too large to read, so it was stopped and none of its output is used"
    )
    assert verdicts.cuda_compat(image, host, lambda: None).outcome == "not-run"


def test_a_docker_cli_that_answers_20_mib_is_not_a_daemon_out_of_reach(host_bin: Path) -> None:
    _tool(host_bin, "docker", FLOOD)
    facts = Facts(env=_env(host_bin))
    try:
        host = facts.docker_facts()
    finally:
        facts.close()
    assert host.version is not None and host.version.too_large and host.server_version == ""
    verdict = verdicts.docker_daemon(host)
    assert verdict.outcome == "failed" and verdict.finding is not None
    assert verdict.finding.cause == "unknown"
    assert verdict.finding.message.startswith(
        "Docker daemon at unix:///var/run/docker.sock: `docker version --format {{json .}}` "
        "printed more than 16 MiB: too large to read"
    )
    assert docker.daemon_id(30, _env(host_bin)) == ""  # `docker info`, as large


def test_the_limit_is_16_mib() -> None:
    assert PARSED_OUTPUT_MAX == 16 * 1024 * 1024
