"""`Facts.await_probe_start`: `llem` lets a probe that will surely run start before it imports
pytest, and waits for nothing when a remembered probe may answer or no probe will run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_llem.domain.nvidia_smi import GpuInfo, SmiInfo
from pytest_llem.domain.records import (
    CommandResult,
    Endpoint,
    HostFacts,
    ImageFacts,
    ImageInfo,
    ProbeFacts,
)
from pytest_llem.facts import Facts
from pytest_llem.host.probe_cache import ProbeCache
from pytest_llem.settings import PreflightSettings

IMAGE = "bench/cuda:12.4.1"


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "llenergymeasure"


@pytest.fixture
def hanging_docker(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A PATH whose `docker` never answers: the image work waits on it for ever."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\nexec sleep 60\n")
    docker.chmod(0o755)
    yield {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}


def _facts(env: dict[str, str]) -> Facts:
    facts = Facts(env=env).adopt(PreflightSettings(images=(IMAGE,)))
    facts.start_image_work()
    return facts


def _waited(facts: Facts, limit_s: float) -> float:
    begin = time.monotonic()
    try:
        facts.await_probe_start(limit_s)
        return time.monotonic() - begin
    finally:
        facts.close()


def test_a_probe_that_will_surely_run_is_waited_for(
    cache_home: Path, hanging_docker: dict[str, str]
) -> None:
    """Nothing remembered: the probe is certain, so the wait lasts until it starts (here,
    never: the limit ends it)."""
    assert _waited(_facts(hanging_docker), 1.0) >= 0.9


def test_a_remembered_probe_is_not_waited_for(
    cache_home: Path, hanging_docker: dict[str, str]
) -> None:
    """A probe cache with entries may answer without a container: no wait, the import goes on."""
    smi = SmiInfo("550.54.15", "12.4", [GpuInfo(0, "NVIDIA H100", "GPU-1")])
    host = HostFacts(Endpoint("unix:///x.sock"), "/usr/bin/docker", None, {}, None, smi)
    image = ImageFacts(IMAGE, ImageInfo("sha256:aaa", {}), CommandResult(("docker",), 0))
    probe = ProbeFacts(IMAGE, "n", CommandResult(("docker",), 0), [{"index": "0"}])
    ProbeCache(900, identify=lambda: {"daemon_id": "D1"}).store(host, image, "all", probe)
    assert (cache_home / "probes.json").is_file()
    assert _waited(_facts(hanging_docker), 30.0) < 5


def test_no_probe_to_start_means_no_wait(cache_home: Path, tmp_path: Path) -> None:
    """No docker at all: tier 1 fails, the image work starts no probe and says so at once."""
    facts = _facts({"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path)})
    assert _waited(facts, 30.0) < 5


def test_without_image_work_nothing_is_awaited(cache_home: Path, tmp_path: Path) -> None:
    """The pytest route starts no image work before its checks ask: nothing to wait for."""
    facts = Facts(env={"PATH": str(tmp_path), "HOME": str(tmp_path)})
    facts.adopt(PreflightSettings(images=(IMAGE,)))
    assert _waited(facts, 30.0) < 5
