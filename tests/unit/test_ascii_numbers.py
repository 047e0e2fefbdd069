"""Numbers in what tools, containers, specs and people write are ASCII digits: "²" passes
`str.isdigit()` and then fails `int()`, and a count of a billion fills the memory. A value
that is not such a number is no number, never a crash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_llem.domain import verdicts
from pytest_llem.domain.gpu_access import _other_gpus
from pytest_llem.domain.nvidia_smi import GpuInfo
from pytest_llem.domain.records import (
    CommandResult,
    Endpoint,
    HostFacts,
    ImageFacts,
    ImageInfo,
    ProbeFacts,
)
from pytest_llem.domain.slurm import parse_scontrol_jobs
from pytest_llem.domain.text import ascii_int, is_decimal
from pytest_llem.errors import ConfigError
from pytest_llem.fleet import gateways_of


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("7", 7), (" 12 ", 12), ("0", 0), ("²", None), ("٣", None), ("-1", None), ("+1", None),
        ("1.0", None), ("", None), (None, None), ("1" * 19, None), ("1" * 18, int("1" * 18)),
    ],
)  # fmt: skip
def test_ascii_int(text: str | None, number: int | None) -> None:
    assert ascii_int(text) == number


def test_is_decimal() -> None:
    assert is_decimal("9.0") and is_decimal("20480")
    assert not any(is_decimal(t) for t in ("", ".", "9.0.1", "²", "9.²", "-1", "1e3"))


def test_a_probe_that_prints_an_odd_index_is_judged_not_crashed() -> None:
    host = HostFacts(Endpoint("unix:///x.sock"), "/usr/bin/docker", None, {}, None, None)
    image = ImageFacts("img:1", ImageInfo("sha256:abc", {}), CommandResult(("docker",), 0))
    seen = [{"index": "²", "name": "H100", "uuid": "GPU-1", "driver_version": "550.54.15"}]
    probe = ProbeFacts("img:1", "llem-probe-x", CommandResult(("docker", "run"), 0), seen)
    verdict = verdicts.gpu_in_container(image, probe, host, False, 30)
    assert verdict.outcome == "passed" and verdict.details["gpus"][0]["index"] == "²"


def test_a_cdi_spec_that_names_an_odd_device_is_no_index() -> None:
    class Device:
        def __init__(self, name: str) -> None:
            self.name = name

    class Spec:
        devices = (Device("²"), Device("0"))

    problems, _ = _other_gpus([Spec()], [GpuInfo(0, "H100", "GPU-1")])  # type: ignore[list-item]
    assert problems == []


def test_a_job_record_with_an_odd_restart_count_reads_as_none() -> None:
    text = "JobId=7 JobState=RUNNING Reason=None NodeList=n1 ExitCode=0:0 Restarts=²\n"
    [job] = parse_scontrol_jobs(text).values()
    assert job.restarts == 0


def test_a_gateway_count_is_a_small_ascii_number() -> None:
    assert len(gateways_of(["3*popen"])) == 3
    with pytest.raises(ConfigError, match=r"--tx 99999\*popen: 99999 gateways from one spec"):
        gateways_of(["99999*popen"])
    with pytest.raises(ConfigError):
        gateways_of([f"{10**30}*popen"])


def test_pytest_with_too_many_gateways_is_a_usage_error(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--llem-preflight"]
    argv += ["--dist", "each", "--tx", "99999*popen", "-q"]
    result = subprocess.run(
        argv, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 4, result.stdout + result.stderr
    assert "--tx 99999*popen: 99999 gateways from one spec (at most 1024)" in result.stderr
    assert "INTERNALERROR" not in result.stdout + result.stderr
