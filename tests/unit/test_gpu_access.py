"""The GPU request's two paths (--gpus through the NVIDIA hook, CDI devices), how `auto`
chooses between them from what Docker engines 20.10 to 29 report, and the `podman-cli` and
`cdi-spec` verdicts (the CDI spec is read from files in unit tests: host/cdi.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_llem import diagnose
from pytest_llem.domain import gpu_request
from pytest_llem.domain.gpu_access import GpuAccess, cdi_spec, choose_path, podman_cli
from pytest_llem.domain.nvidia_smi import GpuInfo, SmiInfo
from pytest_llem.domain.records import CommandResult, Endpoint, HostFacts
from pytest_llem.host.cdi import read_specs
from pytest_llem.host.docker import parse_engine_config, probe_argv

REFERENCE = json.loads(
    (Path(__file__).parents[1] / "data" / "reference" / "docker-cdi-engines.json").read_text()
)
ENGINES = {entry["id"]: entry for entry in REFERENCE["engines"]}
ASSEMBLED = Path(__file__).parents[1] / "data" / "assembled"
DRIVER = "550.54.15"
UUIDS = ("GPU-8f6b2c3a-1d4e-4b7a-9c2d-5e6f7a8b9c01", "GPU-3a9d7e21-6c5b-4f80-a1d2-e3f4a5b6c702")


# -- the request's labels --------------------------------------------------------------------


def test_cdi_labels_name_the_same_gpus_as_device_lists() -> None:
    assert gpu_request.via("all", "cdi") == "cdi:all"
    assert gpu_request.via("device=1,3", "cdi") == "cdi:1,3"
    assert gpu_request.via("cdi:1,3", "gpus") == "device=1,3"
    assert gpu_request.devices_of("cdi:1,3") == (1, 3)
    assert gpu_request.devices_of("cdi:all") is None
    for bad in ("cdi:", "cdi:x", "cdi:1,,2", "cdi:-1"):
        with pytest.raises(ValueError, match="not a GPU request"):
            gpu_request.devices_of(bad)


def test_the_cdi_request_built() -> None:
    assert gpu_request.docker_args("cdi:all") == ["--device", "nvidia.com/gpu=all"]
    assert gpu_request.docker_args("cdi:1,3") == [
        "--device", "nvidia.com/gpu=1", "--device", "nvidia.com/gpu=3",
    ]  # fmt: skip
    assert gpu_request.shown("cdi:1") == "--device nvidia.com/gpu=1"
    assert gpu_request.shown("device=1") == "--gpus device=1"
    argv = probe_argv("img:1", "llem-probe-x", "cdi:1", cli="podman")
    assert argv[:2] == ["podman", "run"]
    assert argv[argv.index("--device") : argv.index("--device") + 2] == [
        "--device", "nvidia.com/gpu=1",
    ]  # fmt: skip
    assert "--gpus" not in argv


# -- auto, from what the engines report --------------------------------------------------------


@pytest.mark.parametrize("entry", REFERENCE["engines"], ids=lambda e: e["id"])
def test_auto_follows_what_the_engine_reports(entry: dict[str, Any]) -> None:
    config = parse_engine_config(json.dumps(entry["info"]))
    assert config is not None
    dirs = entry["expect"]["cdi_spec_dirs"]
    assert config.cdi_spec_dirs == (None if dirs is None else tuple(dirs))
    path, why = choose_path(
        "docker", "auto", engine_version=config.server_version,
        spec_dirs=config.cdi_spec_dirs, discovered=config.discovered,
    )  # fmt: skip
    assert path == entry["expect"]["auto"], why
    # with the NVIDIA hook beside the engine, --gpus stays, whatever the engine reads
    hooked, _ = choose_path(
        "docker", "auto", engine_version=config.server_version,
        spec_dirs=config.cdi_spec_dirs, discovered=config.discovered, hook_found=True,
    )  # fmt: skip
    assert hooked == "gpus"


def test_the_setting_and_podman_decide_alone() -> None:
    assert choose_path("docker", "cdi")[0] == "cdi"
    assert choose_path("docker", "gpus", spec_dirs=("/etc/cdi",))[0] == "gpus"
    assert choose_path("podman", "auto", hook_found=True) == (
        "cdi", "Podman reaches GPUs through CDI only",
    )  # fmt: skip
    assert choose_path("docker", "auto", spec_dirs=("/etc/cdi",), remote=True)[0] == "gpus"


@pytest.mark.parametrize("message", REFERENCE["messages"], ids=lambda m: m["id"])
def test_the_engines_cdi_refusals_are_classified(message: dict[str, Any]) -> None:
    assert diagnose(message["stderr"], message["returncode"]).cause == message["category"]


# -- cdi-spec ----------------------------------------------------------------------------------


def spec(
    tmp_path: Path,
    *,
    version: str = DRIVER,
    indices: tuple[int, ...] = (0, 1),
    uuids: tuple[str, ...] = UUIDS,
    mig: tuple[str, ...] = (),
    library_exists: bool = True,
) -> dict[str, Any]:
    """An NVIDIA spec of the shape `nvidia-ctk cdi generate` writes (index and UUID names,
    `all`, the driver's libraries and the hook's arguments in the common edits)."""
    libs = tmp_path / "lib"
    libs.mkdir(exist_ok=True)
    library = libs / f"libnvidia-ml.so.{version}"
    if library_exists:
        library.touch()
    (libs / "nvidia-cdi-hook").touch()
    dev = tmp_path / "dev"
    dev.mkdir(exist_ok=True)

    def node(i: int) -> dict[str, Any]:
        path = dev / f"nvidia{i}"
        path.touch()
        nodes = [{"path": f"/dev/nvidia{i}", "hostPath": str(path)}]
        return {"containerEdits": {"deviceNodes": nodes}}

    devices = [{"name": str(i), **node(i)} for i in indices]
    devices += [{"name": uuid, **node(i)} for i, uuid in zip(indices, uuids, strict=False)]
    devices += [{"name": name, **node(0)} for name in mig]
    devices.append({"name": "all", **node(indices[0] if indices else 0)})
    return {
        "cdiVersion": "0.5.0",
        "kind": "nvidia.com/gpu",
        "devices": devices,
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void"],
            "hooks": [{
                "hookName": "createContainer", "path": str(libs / "nvidia-cdi-hook"),
                "args": ["nvidia-cdi-hook", "enable-cuda-compat",
                         f"--host-driver-version={version}"],
            }],
            "mounts": [{
                "hostPath": str(library), "containerPath": f"/lib/x86_64-linux-gnu/{library.name}",
                "options": ["ro", "nosuid", "nodev", "rbind", "rprivate"],
            }],
        },
    }  # fmt: skip


def access(
    spec_dirs: tuple[str, ...],
    wanted: tuple[str, ...] = ("nvidia.com/gpu=all",),
    *,
    engine: str = "podman",
    engine_version: str = "4.3.1",
    **more: Any,
) -> GpuAccess:
    files = read_specs(spec_dirs)
    return GpuAccess(
        engine=engine, mode="auto", path="cdi", reason="test", engine_version=engine_version,
        spec_dirs=spec_dirs, specs=files.specs, unread=files.unread, absent=files.absent,
        wanted=wanted, **more,
    )  # fmt: skip


def host(gpu_access: GpuAccess, *, driver: str | None = DRIVER, smi_q: str = "") -> HostFacts:
    gpus = [GpuInfo(i, "NVIDIA H100 80GB HBM3", uuid) for i, uuid in enumerate(UUIDS)]
    info = SmiInfo(driver, "12.4", gpus) if driver else None
    version = '{"Client": {"Version": "4.3.1"}}'
    return HostFacts(
        endpoint=Endpoint("local", source="podman"), docker_path=None,
        version=CommandResult(("podman", "version"), 0, version), toolkit={},
        smi=CommandResult(("nvidia-smi", "-q"), 0, smi_q), smi_info=info,
        engine="podman", podman_path="/usr/bin/podman", gpu_access=gpu_access,
    )  # fmt: skip


def write(directory: Path, data: dict[str, Any], name: str = "nvidia.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_spec_that_names_every_device_for_this_driver_passes(tmp_path: Path) -> None:
    write(tmp_path / "etc", spec(tmp_path))
    wanted = ("nvidia.com/gpu=0", "nvidia.com/gpu=1")
    v = cdi_spec(host(access((str(tmp_path / "etc"), str(tmp_path / "run")), wanted)))
    assert v.outcome == "passed", v
    assert v.details["spec_driver_versions"] == [DRIVER]
    assert "names nvidia.com/gpu=0, nvidia.com/gpu=1 for driver 550.54.15" in v.reason


def test_no_spec_is_missing_with_the_fix(tmp_path: Path) -> None:
    v = cdi_spec(host(access((str(tmp_path / "etc"), str(tmp_path / "run")))))
    assert v.outcome == "failed" and v.finding is not None
    assert v.finding.cause == "cdi_spec_missing"
    assert v.finding.message.startswith("no CDI spec for nvidia.com/gpu in ")
    assert "sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml" in v.finding.fix
    assert "nvidia-ctk cdi list" in v.finding.fix


def test_a_device_the_spec_lacks_is_missing(tmp_path: Path) -> None:
    write(tmp_path / "etc", spec(tmp_path, indices=(0,), uuids=UUIDS[:1]))
    v = cdi_spec(host(access((str(tmp_path / "etc"),), ("nvidia.com/gpu=1",))))
    assert v.finding is not None and v.finding.cause == "cdi_spec_missing"
    assert "does not name nvidia.com/gpu=1" in v.finding.message
    assert v.details["missing_devices"] == ["nvidia.com/gpu=1"]


def test_a_spec_of_another_driver_is_stale_naming_both(tmp_path: Path) -> None:
    write(tmp_path / "etc", spec(tmp_path, version="535.104.05"))
    v = cdi_spec(host(access((str(tmp_path / "etc"),))))
    assert v.finding is not None and v.finding.cause == "cdi_spec_stale"
    assert "generated for driver 535.104.05, and the host driver is 550.54.15" in v.finding.message
    assert (v.details["spec_driver_version"], v.details["driver_version"]) == (
        "535.104.05", "550.54.15",
    )  # fmt: skip
    assert "Regenerate" in v.finding.fix


def test_libraries_gone_after_an_upgrade_are_stale(tmp_path: Path) -> None:
    write(tmp_path / "etc", spec(tmp_path, library_exists=False))
    v = cdi_spec(host(access((str(tmp_path / "etc"),)), driver=None))  # (no host driver known)
    assert v.finding is not None and v.finding.cause == "cdi_spec_stale"
    assert "names files that do not exist" in v.finding.message
    assert any(p.endswith(f"libnvidia-ml.so.{DRIVER}") for p in v.details["absent_files"])


def test_a_spec_of_other_gpus_is_stale_naming_them(tmp_path: Path) -> None:
    other = "GPU-00000000-0000-0000-0000-000000000abc"
    write(tmp_path / "etc", spec(tmp_path, indices=(0, 1, 2), uuids=(UUIDS[0], other)))
    v = cdi_spec(host(access((str(tmp_path / "etc"),))))
    assert v.finding is not None and v.finding.cause == "cdi_spec_stale"
    assert "it lists GPU 0, 1, 2, and the host has GPU 0, 1" in v.finding.message
    assert f"names {other}, not on this host" in v.finding.message
    assert f"lacks the host's {UUIDS[1]}" in v.finding.message


def test_in_a_constrained_slurm_job_the_spec_must_hold_the_jobs_gpus(tmp_path: Path) -> None:
    """The job's nvidia-smi shows GPU 4 and 5 of an 8-GPU node (`allocation.job_view`); the
    node's spec names all eight: not stale. A spec without the job's GPUs is."""
    import dataclasses

    uuids = tuple(f"GPU-8f6b2c3a-1d4e-4b7a-9c2d-5e6f7a8b9c0{i}" for i in range(8))
    write(tmp_path / "etc", spec(tmp_path, indices=tuple(range(8)), uuids=uuids))
    facts = host(access((str(tmp_path / "etc"),)))
    assert facts.smi_info is not None
    job = [GpuInfo(i, "NVIDIA H100 80GB HBM3", uuids[i], minor=i) for i in (4, 5)]
    view = {"note": "...", "host_index": {"0": 4, "1": 5}}
    in_job = dataclasses.replace(
        facts, smi_info=dataclasses.replace(facts.smi_info, gpus=job), job_view=view
    )
    assert cdi_spec(in_job).outcome == "passed"
    write(tmp_path / "etc", spec(tmp_path, indices=(0, 1), uuids=uuids[:2]))
    stale = cdi_spec(dataclasses.replace(in_job, gpu_access=access((str(tmp_path / "etc"),))))
    assert stale.finding is not None and stale.finding.cause == "cdi_spec_stale"
    assert "it lists GPU 0, 1, and the host has GPU 4, 5" in stale.finding.message


def test_mig_on_without_mig_devices_is_stale(tmp_path: Path) -> None:
    smi_q = ASSEMBLED / "nvidia-smi-q_535.261.03_a100-mig.txt"
    text = smi_q.read_text().split("# ---- verbatim output below ----\n", 1)[-1]
    from pytest_llem.domain.gpu_state import parse_states

    on = [s.index for s in parse_states(text) if (s.mig_mode or "").lower() == "enabled"]
    assert on, "the capture has a GPU with MIG on"
    write(tmp_path / "etc", spec(tmp_path, indices=(0, 1), uuids=()))
    v = cdi_spec(host(access((str(tmp_path / "etc"),)), smi_q=text))
    assert v.finding is not None and v.finding.cause == "cdi_spec_stale"
    assert f"MIG is on for GPU {on[0]}, and it names none of its MIG devices" in v.finding.message
    mig = tuple(f"{i}:0" for i in on)
    write(tmp_path / "etc", spec(tmp_path, indices=(0, 1), uuids=(), mig=mig))
    ok = cdi_spec(host(access((str(tmp_path / "etc"),)), smi_q=text))
    assert not any("MIG" in p for p in (ok.finding.message if ok.finding else "").split(";"))


def test_a_later_directory_wins(tmp_path: Path) -> None:
    """/var/run/cdi (generated at boot) over /etc/cdi, as the CDI library ranks them."""
    write(tmp_path / "etc", spec(tmp_path, version="535.104.05"))
    write(tmp_path / "run", spec(tmp_path))
    v = cdi_spec(host(access((str(tmp_path / "etc"), str(tmp_path / "run")))))
    assert v.outcome == "passed", v


def test_podman_with_the_hook_path_is_not_checked() -> None:
    gpus = GpuAccess(engine="docker", mode="auto", path="gpus", reason="the hook is installed")
    v = cdi_spec(host(gpus))
    assert v.outcome == "skipped" and "through --gpus (the hook is installed)" in v.reason


# -- Docker without CDI --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("docker-20.10-captured", "Docker 20.10.24+dfsg1 has no CDI support (CDI needs Docker 25"),
        ("docker-25-default", "CDI is off in Docker 25.0.0"),
        ("docker-28.2-cdi-off", "CDI is turned off in Docker 28.2.0"),
    ],
)
def test_docker_without_cdi_fails_naming_the_engine(entry: str, words: str) -> None:
    config = parse_engine_config(json.dumps(ENGINES[entry]["info"]))
    assert config is not None
    gpus = GpuAccess(
        engine="docker", mode="cdi", path="cdi", reason="docker.gpu_request: cdi",
        engine_version=config.server_version, client_version="28.2.2",
        spec_dirs=config.cdi_spec_dirs, wanted=("nvidia.com/gpu=all",),
    )  # fmt: skip
    facts = HostFacts(
        Endpoint("unix:///x.sock"), "/usr/bin/docker",
        CommandResult(("docker", "version"), 0, "{}"), {}, None, None, gpu_access=gpus,
    )  # fmt: skip
    v = cdi_spec(facts)
    assert v.finding is not None and v.finding.cause == "cdi_injection_failed"
    assert words in v.finding.message
    assert "nvidia.com/gpu=all" in v.finding.message
    assert '"features": {"cdi"' in v.finding.fix or "Remove" in v.finding.fix
    assert v.finding.url == "https://docs.docker.com/reference/cli/dockerd/#enable-cdi-devices"


def test_an_engine_that_does_not_say_where_its_specs_are_is_not_trusted() -> None:
    gpus = GpuAccess(
        engine="docker", mode="cdi", path="cdi", reason="docker.gpu_request: cdi",
        engine_version="27.3.1", client_version="27.3.1", spec_dirs=None,
        wanted=("nvidia.com/gpu=all",),
    )  # fmt: skip
    facts = HostFacts(
        Endpoint("unix:///x.sock"), "/usr/bin/docker",
        CommandResult(("docker", "version"), 0, "{}"), {}, None, None, gpu_access=gpus,
    )  # fmt: skip
    v = cdi_spec(facts)
    assert v.finding is not None and v.finding.cause == "cdi_injection_failed"
    assert "Docker 27.3.1 did not say where it reads CDI specs" in v.finding.message


def test_an_old_docker_cli_cannot_pass_cdi_devices() -> None:
    gpus = GpuAccess(
        engine="docker", mode="cdi", path="cdi", reason="docker.gpu_request: cdi",
        engine_version="28.2.2", client_version="20.10.24+dfsg1",
        spec_dirs=("/etc/cdi",), wanted=("nvidia.com/gpu=all",),
    )  # fmt: skip
    facts = HostFacts(
        Endpoint("unix:///x.sock"), "/usr/bin/docker",
        CommandResult(("docker", "version"), 0, "{}"), {}, None, None, gpu_access=gpus,
    )  # fmt: skip
    v = cdi_spec(facts)
    assert v.finding is not None
    assert "the docker CLI 20.10.24+dfsg1 cannot pass" in v.finding.message


def test_a_remote_daemon_is_judged_by_the_devices_it_lists() -> None:
    listed = ("nvidia.com/gpu=0", "nvidia.com/gpu=all")
    base = dict(engine="docker", mode="cdi", path="cdi", reason="", engine_version="28.2.2",
                client_version="28.2.2", spec_dirs=("/etc/cdi",), remote=True)  # fmt: skip
    facts = HostFacts(
        Endpoint("tcp://gpu1:2376"), "/usr/bin/docker",
        CommandResult(("docker", "version"), 0, "{}"), {}, None, None,
    )  # fmt: skip
    ok = cdi_spec(facts.__class__(**{**facts.__dict__, "gpu_access": GpuAccess(
        **base, discovered=listed, wanted=("nvidia.com/gpu=0",))}))  # fmt: skip
    assert ok.outcome == "passed"
    lacking = cdi_spec(facts.__class__(**{**facts.__dict__, "gpu_access": GpuAccess(
        **base, discovered=listed, wanted=("nvidia.com/gpu=1",))}))  # fmt: skip
    assert lacking.finding is not None and lacking.finding.cause == "cdi_spec_missing"
    unknown = cdi_spec(facts.__class__(**{**facts.__dict__, "gpu_access": GpuAccess(
        **base, discovered=None, wanted=("nvidia.com/gpu=1",))}))  # fmt: skip
    assert unknown.outcome == "skipped"


# -- podman-cli ----------------------------------------------------------------------------------


def podman_host(**changes: Any) -> HostFacts:
    base = HostFacts(
        Endpoint("local", source="podman"), None,
        CommandResult(("podman", "version"), 0, '{"Client":{"Version":"4.3.1"}}'), {}, None, None,
        engine="podman", podman_path="/usr/bin/podman",
    )  # fmt: skip
    return base.__class__(**{**base.__dict__, **changes})


def test_podman_cli() -> None:
    ok = podman_cli(podman_host())
    assert ok.outcome == "passed" and ok.details["version"] == "4.3.1"
    missing = podman_cli(podman_host(podman_path=None, version=None))
    assert missing.finding is not None and missing.finding.cause == "podman_cli_missing"
    assert missing.finding.message == "Podman not found on PATH"
    remote = podman_cli(podman_host(podman_remote="CONTAINER_HOST=ssh://gpu1/run/podman.sock"))
    assert remote.finding is not None and remote.finding.cause == "podman_cli_missing"
    assert "CONTAINER_HOST=ssh://gpu1" in remote.finding.message
    assert "local Podman only" in remote.finding.message
    server = '{"Client":{"Version":"4.3.1"},"Server":{"Version":"4.9.3"}}'
    service = podman_cli(podman_host(version=CommandResult(("podman", "version"), 0, server)))
    assert service.finding is not None and "remote service" in service.finding.message


# -- reading specs as untrusted files ----------------------------------------------------------


def test_spec_files_are_read_as_untrusted(tmp_path: Path) -> None:
    good = write(tmp_path, spec(tmp_path), "a.yaml")
    (tmp_path / "b.yaml").symlink_to(good)
    os.mkfifo(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_bytes(b"x: " + b"a" * (4 * 1024 * 1024 + 10))
    (tmp_path / "e.yaml").write_text("kind: nvidia.com/gpu\ndevices: &x []\nmore: *x\n")
    (tmp_path / "f.json").write_text('{"kind": "nvidia.com/gpu", "devices": [{"name": "0"}]}')
    (tmp_path / "g.yml").write_text("not: read")  # (the CDI library reads .json and .yaml)
    (tmp_path / "h.yaml").mkdir()
    files = read_specs([str(tmp_path)])
    assert [s.path for s in files.specs] == [str(good), str(tmp_path / "f.json")]
    why = dict(files.unread)
    assert why[str(tmp_path / "b.yaml")] == "a symbolic link: not followed"
    assert why[str(tmp_path / "c.yaml")] == "not a regular file: not read"
    assert why[str(tmp_path / "d.yaml")] == "larger than 4 MiB: not read"
    assert "anchors and aliases are not accepted" in why[str(tmp_path / "e.yaml")]
    assert set(why) == {str(tmp_path / n) for n in ("b.yaml", "c.yaml", "d.yaml", "e.yaml")}


# -- gathering: docker info only when the decision needs it ------------------------------------


def test_docker_info_is_asked_only_when_auto_needs_it(tmp_path: Path) -> None:
    from pytest_llem.host.docker import EngineConfig
    from pytest_llem.host.gpu_path import gpu_access

    asked: list[int] = []
    write(tmp_path / "cdi", spec(tmp_path))
    config = EngineConfig("ID", "", "runc", (str(tmp_path / "cdi"),), "27.3.1")

    def ask() -> EngineConfig:
        asked.append(1)
        return config

    def docker_host(version: str, toolkit: dict[str, str] | None = None) -> HostFacts:
        answer = json.dumps({"Client": {"Version": version}, "Server": {"Version": version}})
        return HostFacts(
            Endpoint("unix:///x.sock"), "/usr/bin/docker",
            CommandResult(("docker", "version"), 0, answer), toolkit or {}, None, None,
        )  # fmt: skip

    old = gpu_access("auto", ["all"], docker_host("20.10.24+dfsg1"), ask)
    assert (old.path, asked) == ("gpus", [])
    hooked = {"nvidia-container-runtime-hook": "/usr/bin/nvidia-container-runtime-hook"}
    assert gpu_access("auto", ["all"], docker_host("27.3.1", hooked), ask).path == "gpus"
    assert asked == []
    cdi = gpu_access("auto", ["device=1"], docker_host("27.3.1"), ask)
    assert (cdi.path, asked, cdi.wanted) == ("cdi", [1], ("nvidia.com/gpu=1",))
    assert [s.path for s in cdi.specs] == [str(tmp_path / "cdi" / "nvidia.yaml")]
    assert gpu_access("gpus", ["all"], docker_host("27.3.1"), ask).path == "gpus"
    assert asked == [1]
