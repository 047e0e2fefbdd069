"""The probe cache: keyed by what could change a probe's answer, bounded, never fatal."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pytest_llem.domain.records import (
    CommandResult,
    Endpoint,
    HostFacts,
    ImageFacts,
    ImageInfo,
    ProbeFacts,
)
from pytest_llem.host.probe_cache import ProbeCache

HOST = HostFacts(Endpoint("unix:///x.sock"), "/usr/bin/docker", None, {}, None, None)
GPUS = [{"index": "0", "name": "NVIDIA H100", "uuid": "GPU-1", "driver_version": "550.54.15"}]


def _image(image_id: str = "sha256:aaa") -> ImageFacts:
    return ImageFacts("img:1", ImageInfo(image_id, {}), CommandResult(("docker",), 0))


def _probe() -> ProbeFacts:
    return ProbeFacts("img:1", "n", CommandResult(("docker",), 0), GPUS)


def _cache(path: Path, ttl: float = 900, daemon: str = "D1") -> ProbeCache:
    return ProbeCache(ttl, path=path, identify=lambda: {"daemon_id": daemon})


def test_store_then_hit(tmp_path: Path) -> None:
    path = tmp_path / "c" / "probes.json"
    _cache(path).store(HOST, _image(), _probe())
    hit = _cache(path).lookup(HOST, _image())
    assert hit is not None and hit.cached and hit.gpus == GPUS and hit.result.ok


@pytest.mark.parametrize("change", ["image", "daemon"])
def test_any_key_change_misses(tmp_path: Path, change: str) -> None:
    path = tmp_path / "probes.json"
    _cache(path).store(HOST, _image(), _probe())
    image = _image("sha256:bbb") if change == "image" else _image()
    daemon = "D2" if change == "daemon" else "D1"
    assert _cache(path, daemon=daemon).lookup(HOST, image) is None


def test_entries_expire(tmp_path: Path) -> None:
    path = tmp_path / "probes.json"
    _cache(path, ttl=0.01).store(HOST, _image(), _probe())
    time.sleep(0.05)
    assert _cache(path).lookup(HOST, _image()) is None


def test_damaged_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "probes.json"
    path.write_bytes(b"\x00\xff garbage {")
    assert _cache(path).lookup(HOST, _image()) is None
    _cache(path).store(HOST, _image(), _probe())
    assert json.loads(path.read_text())["schema"] == 1
    assert _cache(path).lookup(HOST, _image()) is not None


def test_unwritable_directory_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = _cache(blocker / "sub" / "probes.json")
    cache.store(HOST, _image(), _probe())
    assert cache.lookup(HOST, _image()) is None


def test_no_daemon_identity_means_no_caching(tmp_path: Path) -> None:
    cache = ProbeCache(900, path=tmp_path / "p.json", identify=lambda: {"daemon_id": ""})
    cache.store(HOST, _image(), _probe())
    assert not (tmp_path / "p.json").exists()


def test_only_a_file_of_this_user_that_no_one_else_can_write_is_believed(
    tmp_path: Path,
) -> None:
    """A remembered pass says "all good": one planted by another user must not count."""
    import os

    path = tmp_path / "probes.json"
    _cache(path).store(HOST, _image(), _probe())
    assert path.stat().st_mode & 0o777 == 0o600
    assert _cache(path).lookup(HOST, _image()) is not None
    path.chmod(0o666)
    assert _cache(path).lookup(HOST, _image()) is None
    path.chmod(0o600)
    os.chown(path, 4242, 4242)  # (the tests run as root)
    assert _cache(path).lookup(HOST, _image()) is None
    os.chown(path, os.geteuid(), os.getegid())
    link = tmp_path / "link.json"
    link.symlink_to(path)
    assert _cache(link).lookup(HOST, _image()) is None
