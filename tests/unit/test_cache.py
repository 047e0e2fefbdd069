"""The probe cache: keyed by what could change a probe's answer, bounded, never fatal."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_llem.domain.nvidia_smi import GpuInfo, MigDevice, SmiInfo
from pytest_llem.domain.records import (
    CommandResult,
    Endpoint,
    HostFacts,
    ImageFacts,
    ImageInfo,
    ProbeFacts,
)
from pytest_llem.host import docker, nvidia
from pytest_llem.host.probe_cache import CLOCK_SLACK_S, SCHEMA, ProbeCache

H100 = "NVIDIA H100 80GB HBM3"
SMI = SmiInfo(
    "550.54.15",
    "12.4",
    [GpuInfo(0, H100, "GPU-1"), GpuInfo(1, H100, "GPU-2")],
    attached_gpus=2,
    source="q",
)
VERSION = CommandResult(("docker",), 0, '{"Server": {"Version": "20.10.24"}}')
TOOLKIT = {"nvidia-ctk": "/usr/bin/nvidia-ctk", "nvidia-container-runtime-hook": "/usr/bin/h"}
HOST = HostFacts(Endpoint("unix:///x.sock"), "/usr/bin/docker", VERSION, TOOLKIT, None, SMI)
IDENTITY = {
    "daemon_id": "D1",
    "runtimes": '{"runc":{"path":"runc"}}',
    "default_runtime": "runc",
    "cdi_spec_dirs": "/etc/cdi\n/var/run/cdi",
    "cdi_specs": "c0ffee",
    "toolkit_version": "NVIDIA Container Toolkit CLI version 1.14.3",
    "toolkit_config": "abcd",
}
GPUS = [{"index": "0", "name": H100, "uuid": "GPU-1", "driver_version": "550.54.15"}]


def _image(image_id: str = "sha256:aaa") -> ImageFacts:
    return ImageFacts("img:1", ImageInfo(image_id, {}), CommandResult(("docker",), 0))


def _probe() -> ProbeFacts:
    return ProbeFacts("img:1", "n", CommandResult(("docker",), 0), GPUS)


def _cache(path: Path, ttl: float = 900, identity: dict[str, str] | None = None) -> ProbeCache:
    return ProbeCache(ttl, path=path, identify=lambda: {**IDENTITY, **(identity or {})})


def test_store_then_hit(tmp_path: Path) -> None:
    path = tmp_path / "c" / "probes.json"
    _cache(path).store(HOST, _image(), "all", _probe())
    hit = _cache(path).lookup(HOST, _image(), "all")
    assert hit is not None and hit.cached and hit.gpus == GPUS and hit.result.ok
    [entry] = json.loads(path.read_text())["entries"].values()
    assert entry["request"] == "all" and entry["image"] == "img:1"


def _smi(**changes: Any) -> HostFacts:
    return dataclasses.replace(HOST, smi_info=dataclasses.replace(SMI, **changes))


def _gpu(index: int, uuid: str, **more: Any) -> GpuInfo:
    return GpuInfo(index, H100, uuid, **more)


# One change of each thing a probe's answer depends on: (identity, host, image id, request).
CHANGES: dict[str, tuple[dict[str, str], HostFacts, str, str]] = {
    "daemon id": ({"daemon_id": "D2"}, HOST, "sha256:aaa", "all"),
    "runtimes": ({"runtimes": '{"nvidia":{"path":"x"},"runc":{"path":"runc"}}'}, HOST, "", ""),
    "default runtime": ({"default_runtime": "nvidia"}, HOST, "", ""),
    "CDI spec dirs": ({"cdi_spec_dirs": "/etc/cdi"}, HOST, "", ""),
    "CDI specs": ({"cdi_specs": "decade"}, HOST, "", ""),
    "toolkit version": ({"toolkit_version": "1.17.0"}, HOST, "", ""),
    "toolkit config": ({"toolkit_config": "ef01"}, HOST, "", ""),
    "engine version": (
        {},
        dataclasses.replace(
            HOST, version=CommandResult(("docker",), 0, '{"Server": {"Version": "28.2.2"}}')
        ),
        "",
        "",
    ),
    "endpoint": ({}, dataclasses.replace(HOST, endpoint=Endpoint("unix:///y.sock")), "", ""),
    "toolkit executables": (
        {},
        dataclasses.replace(HOST, toolkit={"nvidia-ctk": "/usr/bin/nvidia-ctk"}),
        "",
        "",
    ),
    "image id": ({}, HOST, "sha256:bbb", ""),
    "GPU request": ({}, HOST, "", "device=1"),
    "driver version": ({}, _smi(driver_version="550.90.07"), "", ""),
    "CUDA version": ({}, _smi(cuda_version="12.5"), "", ""),
    "a GPU fewer": ({}, _smi(gpus=[_gpu(0, "GPU-1")], attached_gpus=1), "", ""),
    "a GPU replaced": ({}, _smi(gpus=[_gpu(0, "GPU-1"), _gpu(1, "GPU-9")]), "", ""),
    "GPUs renumbered": ({}, _smi(gpus=[_gpu(0, "GPU-2"), _gpu(1, "GPU-1")]), "", ""),
    "MIG instances": (
        {},
        _smi(gpus=[_gpu(0, "GPU-1", mig=(MigDevice("1g.10gb", 0, "MIG-1"),)), _gpu(1, "GPU-2")]),
        "",
        "",
    ),
}


def _key(identity: dict[str, str], host: HostFacts, image_id: str, request: str) -> str | None:
    cache = ProbeCache(900, path=Path("/nonexistent"), identify=lambda: {**IDENTITY, **identity})
    return cache.key(host, _image(image_id or "sha256:aaa"), request or "all")


def test_every_component_changes_the_key() -> None:
    base = _key({}, HOST, "", "")
    assert base is not None
    keys = {name: _key(*change) for name, change in CHANGES.items()}
    assert None not in keys.values(), keys
    assert base not in keys.values(), [name for name, key in keys.items() if key == base]
    assert len(set(keys.values())) == len(keys)


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_any_key_change_misses(tmp_path: Path, change: str) -> None:
    path = tmp_path / "probes.json"
    _cache(path).store(HOST, _image(), "all", _probe())
    identity, host, image_id, request = CHANGES[change]
    changed = _cache(path, identity=identity)
    assert changed.lookup(host, _image(image_id or "sha256:aaa"), request or "all") is None
    assert _cache(path).lookup(HOST, _image(), "all") is not None  # (the entry is there)


@pytest.mark.parametrize(
    "host",
    [
        dataclasses.replace(HOST, smi_info=None),  # a remote daemon: no nvidia-smi -q here
        _smi(gpus=[]),
        _smi(gpus=[_gpu(0, "GPU-1"), _gpu(1, "")]),  # a GPU without its UUID
        _smi(gpus=[_gpu(0, "GPU-1")], attached_gpus=2),  # the list was cut short
    ],
    ids=["no host GPUs known", "no GPU", "a UUID missing", "cut short"],
)
def test_nothing_is_remembered_without_the_hosts_gpus(tmp_path: Path, host: HostFacts) -> None:
    path = tmp_path / "probes.json"
    cache = _cache(path)
    assert cache.key(host, _image(), "all") is None
    cache.store(host, _image(), "all", _probe())
    assert not path.exists()


def test_entries_expire(tmp_path: Path) -> None:
    path = tmp_path / "probes.json"
    _cache(path, ttl=0.01).store(HOST, _image(), "all", _probe())
    time.sleep(0.05)
    assert _cache(path).lookup(HOST, _image(), "all") is None


def _redate(path: Path, **fields: Any) -> None:
    data = json.loads(path.read_text())
    for entry in data["entries"].values():
        entry.update(fields)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("stored", "expires", "usable"),
    [
        (0, 900, True),
        (CLOCK_SLACK_S / 2, 900 + CLOCK_SLACK_S / 2, True),  # a clock set back a little
        (3600, 4500, False),  # stored an hour from now
        (0, 9000, False),  # lives longer from now than any entry can
        (-10, 3590, False),  # (the same, stored a little earlier)
        (-1000, -100, False),  # expired
        (float("nan"), 900, False),
        (0, float("inf"), False),
        ("soon", 900, False),
        (None, 900, False),
    ],
)
def test_an_entry_dated_in_the_future_is_not_used(
    tmp_path: Path, stored: Any, expires: Any, usable: bool
) -> None:
    path = tmp_path / "probes.json"
    _cache(path).store(HOST, _image(), "all", _probe())
    now = time.time()
    _redate(
        path,
        stored=now + stored if isinstance(stored, (int, float)) else stored,
        expires=now + expires if isinstance(expires, (int, float)) else expires,
    )
    assert (_cache(path).lookup(HOST, _image(), "all") is not None) is usable
    # Storing again keeps no entry that is not usable: the fresh one replaces it.
    _cache(path).store(HOST, _image(), "all", _probe())
    [entry] = json.loads(path.read_text())["entries"].values()
    assert entry["stored"] <= time.time()


def test_a_shorter_lifetime_voids_longer_entries(tmp_path: Path) -> None:
    """The lifetime was lowered (`docker.probe_cache_s`): an entry stored for longer is not
    believed beyond the new lifetime."""
    path = tmp_path / "probes.json"
    _cache(path, ttl=3600).store(HOST, _image(), "all", _probe())
    assert _cache(path, ttl=3600).lookup(HOST, _image(), "all") is not None
    assert _cache(path, ttl=60).lookup(HOST, _image(), "all") is None


@pytest.mark.parametrize("gpus", [[], "GPU-1", [["GPU-1"]], {"0": {}}, None])
def test_a_damaged_entry_is_not_used(tmp_path: Path, gpus: Any) -> None:
    path = tmp_path / "probes.json"
    _cache(path).store(HOST, _image(), "all", _probe())
    _redate(path, gpus=gpus)
    assert _cache(path).lookup(HOST, _image(), "all") is None


def test_entries_of_an_older_schema_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "probes.json"
    _cache(path).store(HOST, _image(), "all", _probe())
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA == 2
    data["schema"] = 1
    path.write_text(json.dumps(data))
    assert _cache(path).lookup(HOST, _image(), "all") is None


def test_damaged_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "probes.json"
    path.write_bytes(b"\x00\xff garbage {")
    assert _cache(path).lookup(HOST, _image(), "all") is None
    _cache(path).store(HOST, _image(), "all", _probe())
    assert json.loads(path.read_text())["schema"] == SCHEMA
    assert _cache(path).lookup(HOST, _image(), "all") is not None


def test_unwritable_directory_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = _cache(blocker / "sub" / "probes.json")
    cache.store(HOST, _image(), "all", _probe())
    assert cache.lookup(HOST, _image(), "all") is None


def test_no_daemon_identity_means_no_caching(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "p.json", identity={"daemon_id": ""})
    cache.store(HOST, _image(), "all", _probe())
    assert not (tmp_path / "p.json").exists()


def test_only_a_file_of_this_user_that_no_one_else_can_write_is_believed(
    tmp_path: Path,
) -> None:
    """A remembered pass says "all good": one planted by another user must not count."""
    import os

    path = tmp_path / "probes.json"
    _cache(path).store(HOST, _image(), "all", _probe())
    assert path.stat().st_mode & 0o777 == 0o600
    assert _cache(path).lookup(HOST, _image(), "all") is not None
    path.chmod(0o666)
    assert _cache(path).lookup(HOST, _image(), "all") is None
    path.chmod(0o600)
    os.chown(path, 4242, 4242)  # (the tests run as root)
    assert _cache(path).lookup(HOST, _image(), "all") is None
    os.chown(path, os.geteuid(), os.getegid())
    link = tmp_path / "link.json"
    link.symlink_to(path)
    assert _cache(link).lookup(HOST, _image(), "all") is None


# --- what the key is made of -------------------------------------------------------------

# `docker info --format '{{json .}}'`, cut down: a 20.10 CLI has no CDISpecDirs at all, a newer
# CLI prints null for an engine without CDI, and a list where the engine reads CDI specs.
RUNTIMES = {"io.containerd.runc.v2": {"path": "runc"}, "runc": {"path": "runc"}}
INFO_20_10 = {
    "ID": "M2TC:WQ57",
    "Runtimes": RUNTIMES,
    "DefaultRuntime": "runc",
    "ServerVersion": "20.10.24+dfsg1",
}


@pytest.mark.parametrize(
    ("extra", "dirs"),
    [
        ({}, None),
        ({"CDISpecDirs": None}, None),
        ({"CDISpecDirs": []}, ()),
        ({"CDISpecDirs": ["/etc/cdi", "/var/run/cdi"]}, ("/etc/cdi", "/var/run/cdi")),
    ],
)
def test_engine_config_from_docker_info(extra: dict[str, Any], dirs: Any) -> None:
    config = docker.parse_engine_config(json.dumps({**INFO_20_10, **extra}))
    assert config is not None
    assert config.id == "M2TC:WQ57" and config.default_runtime == "runc"
    assert json.loads(config.runtimes) == RUNTIMES
    assert config.cdi_spec_dirs == dirs


def test_engine_config_runtimes_do_not_depend_on_their_order() -> None:
    reordered = {**INFO_20_10, "Runtimes": dict(reversed(RUNTIMES.items()))}
    first = docker.parse_engine_config(json.dumps(INFO_20_10))
    second = docker.parse_engine_config(json.dumps(reordered))
    assert first is not None and second is not None and first.runtimes == second.runtimes


@pytest.mark.parametrize("text", ["", "garbage", "[]", '"ID"', "{" * 5000])
def test_unreadable_docker_info_gives_no_engine_config(text: str) -> None:
    assert docker.parse_engine_config(text) is None


def test_docker_info_is_asked_once_for_all_of_it() -> None:
    """One template naming CDISpecDirs would fail on a 20.10 CLI: all of `docker info`."""
    assert docker.INFO_ARGV == ("docker", "info", "--format", "{{json .}}")


def test_cdi_specs_digest_follows_the_spec_files(tmp_path: Path) -> None:
    etc, run = tmp_path / "etc-cdi", tmp_path / "run-cdi"
    etc.mkdir()
    dirs = [str(etc), str(run)]  # (the second does not exist)
    assert nvidia.cdi_specs_digest([]) == ""
    empty = nvidia.cdi_specs_digest(dirs)
    (etc / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
    one = nvidia.cdi_specs_digest(dirs)
    (etc / "README").write_text("not a spec")
    (etc / "sub.json").mkdir()
    assert nvidia.cdi_specs_digest(dirs) == one
    (etc / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n# 535\n")
    changed = nvidia.cdi_specs_digest(dirs)
    run.mkdir()
    (run / "other.json").write_text("{}")
    more = nvidia.cdi_specs_digest(dirs)
    assert len({empty, one, changed, more}) == 4
    assert nvidia.cdi_specs_digest(list(reversed(dirs))) != more  # (the order is precedence)
