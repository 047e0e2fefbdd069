"""How a container's GPU request reaches the GPUs, and the checks of that path.

Two paths exist. ``--gpus`` goes through the NVIDIA hook (`nvidia-container-runtime-hook`,
which the Docker engine registers as its `nvidia` device driver). CDI (``--device
nvidia.com/gpu=N``) lets the engine itself apply the edits a CDI spec lists (device nodes,
the driver's libraries, hooks). What the engines do, from their sources:

- Docker 25 reads CDI specs only with ``"features": {"cdi": true}`` in daemon.json; its
  ``docker info`` shows ``CDISpecDirs`` from then on, empty while CDI is off (moby#45134;
  moby daemon/info.go, cmd/dockerd/daemon.go of v25.0.0). Engines before 25 show no such field.
- Docker 28.2 turns CDI on by default (moby#49963), and ``docker info`` lists the CDI devices
  it found under ``DiscoveredDevices`` (API 1.50).
- Docker 29.2 maps ``--gpus`` to CDI devices when ``nvidia-cdi-hook`` is installed, and falls
  back to the hook otherwise (moby#50228).
- Podman has no NVIDIA hook of its own: it reaches GPUs through CDI only, from ``/etc/cdi``
  and ``/var/run/cdi``.

``docker.gpu_request: auto`` therefore keeps ``--gpus`` wherever the hook can serve it, and
takes CDI where only CDI can: a local engine that reads CDI specs, has found NVIDIA CDI
devices (or, before 28.2, was given CDI on purpose), and has no NVIDIA hook beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import gpu_request
from .cdi import CdiSpec, resolve
from .engines import profile
from .remedies import PODMAN_CONNECTION_URL, PODMAN_INSTALL_URL
from .text import ascii_int
from .verdicts import Verdict, diagnose, failed, first_line, not_run, passed, skipped

if TYPE_CHECKING:
    from .records import HostFacts

DOCKER_CDI_URL = "https://docs.docker.com/reference/cli/dockerd/#enable-cdi-devices"
CDI_FIRST = (25, 0)  # the first Docker engine (and CLI) that knows CDI devices
CDI_BY_DEFAULT = (28, 2)  # CDI on unless turned off


@dataclass(frozen=True)
class GpuAccess:
    """The path a session's GPU requests take, and what the engine and the host say of it."""

    engine: str  # docker | podman
    mode: str  # the setting: auto | gpus | cdi
    path: str  # what the requests go through: gpus | cdi
    reason: str  # why that path, for a person
    engine_version: str = ""
    client_version: str = ""  # the docker CLI's (it parses --device nvidia.com/gpu=N)
    # Where the engine reads CDI specs: None when it does not say (Docker before 25), () off.
    spec_dirs: tuple[str, ...] | None = None
    specs: tuple[CdiSpec, ...] = ()  # the specs read from those directories, in order
    unread: tuple[tuple[str, str], ...] = ()  # (file, why) of spec files not read
    absent: frozenset[str] = frozenset()  # host files the specs name that do not exist
    discovered: tuple[str, ...] | None = None  # CDI devices the engine found (Docker 28.2+)
    wanted: tuple[str, ...] = field(default=())  # the CDI device names the session asks for
    remote: bool = False  # the engine's host is another machine: its files are not read here

    def label(self, request: str) -> str:
        """The GPU request ``request`` (``all``, ``device=1``) as this path makes it."""
        return gpu_request.via(request, self.path)


def version_tuple(version: str) -> tuple[int, ...] | None:
    """(28, 2, 0) of "28.2.0" or "28.2.0-rc.1"; None when it names no version."""
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    if match is None:
        return None
    return tuple(int(part) for part in match.groups(default="0"))


def choose_path(
    engine: str,
    mode: str,
    *,
    engine_version: str = "",
    spec_dirs: tuple[str, ...] | None = None,
    discovered: tuple[str, ...] | None = None,
    hook_found: bool = False,
    remote: bool = False,
) -> tuple[str, str]:
    """(path, why) of the session's GPU requests: `gpu_request.GPUS` or `gpu_request.CDI`."""
    gpus, cdi = gpu_request.GPUS, gpu_request.CDI
    if profile(engine).cdi_only:
        return cdi, f"{profile(engine).title} reaches GPUs through CDI only"
    if mode in (gpus, cdi):
        return mode, f"docker.gpu_request: {mode}"
    where = f"Docker {engine_version}" if engine_version else "the Docker engine"
    if remote:
        return gpus, "a remote daemon: --gpus, which its NVIDIA hook serves"
    if hook_found:
        return gpus, "the NVIDIA hook (nvidia-container-runtime-hook) is installed"
    if spec_dirs is None:
        return gpus, f"{where} reads no CDI specs"
    if not spec_dirs:
        return gpus, f"CDI is off in {where}"
    version = version_tuple(engine_version)
    if discovered is None and version is not None and version >= CDI_BY_DEFAULT:
        discovered = ()  # (`DiscoveredDevices` is left out of `docker info` when empty)
    nvidia = [d for d in discovered or () if d.startswith(f"{gpu_request.CDI_KIND}=")]
    if discovered is not None and not nvidia:
        return gpus, f"{where} found no NVIDIA CDI device"
    return cdi, (
        f"no NVIDIA hook is installed, and {where} reads CDI specs from {', '.join(spec_dirs)}"
    )


# --- podman-cli ------------------------------------------------------------------------------


def podman_cli(host: HostFacts) -> Verdict:
    """A local podman CLI is on PATH and answers `podman version`."""
    if host.podman_path is None:
        return failed(
            "podman_cli_missing",
            "Podman not found on PATH",
            fix="Install Podman on this host",
            url=PODMAN_INSTALL_URL,
        )
    if host.podman_remote:
        return _remote_podman(host.podman_remote)
    result = host.version
    if result is None:
        return not_run("podman version was not asked")
    where = {"path": host.podman_path}
    if result.timed_out:
        return failed(
            "podman_cli_missing",
            f"`{result.command}` did not answer within {result.duration_s:.0f}s",
            fix="Check that `podman version` and `podman info` run on this host",
            url=PODMAN_INSTALL_URL,
            **where,
        )
    if not result.ok:
        d = diagnose(result.output, result.returncode or 1)
        cause = d.cause if d.cause not in ("ok", "unknown") else "podman_cli_missing"
        line = first_line(result.stderr) or first_line(result.output) or "no answer"
        fix, url = (d.fix, d.url) if cause == d.cause else ("", "")
        return failed(cause, f"`{result.command}` failed: {line}", fix=fix, url=url, **where)
    from .records import parse_version

    data = parse_version(result)
    if data.get("Server"):  # a client of a Podman service (containers.conf remote, podman-remote)
        return _remote_podman("`podman version` answers for a Podman service")
    client = data.get("Client") or {}
    version = str(client.get("Version", "")) if isinstance(client, dict) else ""
    return passed(version=version, **where)


def _remote_podman(why: str) -> Verdict:
    return failed(
        "podman_cli_missing",
        f"Podman is set to run containers on a remote service ({why}): llem runs experiments "
        "on a local Podman only, for now",
        fix="Run llem on the GPU host itself, with CONTAINER_HOST and CONTAINER_CONNECTION "
        "unset (and neither podman-remote nor `podman --remote`)",
        url=PODMAN_CONNECTION_URL,
        remote=why,
    )


# --- cdi-spec --------------------------------------------------------------------------------


def cdi_spec(host: HostFacts) -> Verdict:
    """The GPU requests that go through CDI can be served: the engine reads CDI specs, a spec
    names every requested device, the files it names exist, it was made for this driver, and
    its GPUs are the host's (with their MIG devices when MIG is on)."""
    access = host.gpu_access
    engine_ok = host.version is not None and host.version.ok
    if access is None or not engine_ok:
        return not_run(f"needs {profile(host.engine).reached_by}")
    if access.path != gpu_request.CDI:
        return skipped(f"the GPU requests go through --gpus ({access.reason}): no CDI spec is used")
    names = ", ".join(access.wanted)
    base: dict[str, Any] = {"gpu_path": "cdi", "gpu_path_reason": access.reason}
    if not profile(access.engine).cdi_only:  # (CDI is the engine's option: is it on?)
        refusal = _docker_without_cdi(access, names)
        if refusal is not None:
            return refusal
    if access.remote:
        return _remote_cdi(access, base)
    dirs = access.spec_dirs or ()
    base |= {
        "spec_dirs": list(dirs),
        "spec_files": [s.path for s in access.specs],
        "wanted": list(access.wanted),
    }
    if access.unread:
        base["unread_specs"] = [f"{path}: {why}" for path, why in access.unread]
    found = {name: resolve(access.specs, name) for name in access.wanted}
    missing = [name for name, hit in found.items() if hit is None]
    if missing:
        return _missing(access, missing, dirs, base)
    used = list(dict.fromkeys(hit[0] for hit in found.values() if hit))
    problems, details = _stale(host, access, used, found)
    if problems:
        return failed(
            "cdi_spec_stale",
            f"the CDI spec {_files(used)} is stale: " + "; ".join(problems),
            **base,
            **details,
        )
    versions = sorted({v for spec in used for v in spec.driver_versions})
    note = f" for driver {', '.join(versions)}" if versions else ""
    return passed(f"{_files(used)} names {names}{note}", **base, spec_driver_versions=versions)


def _docker_without_cdi(access: GpuAccess, names: str) -> Verdict | None:
    """The failure of a Docker engine or CLI that cannot pass CDI devices (None: they can)."""
    engine = access.engine_version or "?"
    version = version_tuple(access.engine_version)
    client = version_tuple(access.client_version)
    details = {
        "server_version": access.engine_version,
        "client_version": access.client_version,
        "gpu_request": " ".join(f"--device {n}" for n in access.wanted),
    }
    off = access.spec_dirs is not None and not access.spec_dirs
    if access.spec_dirs is None and version is not None and version >= CDI_FIRST:
        return failed(
            "cdi_injection_failed",
            f"Docker {engine} did not say where it reads CDI specs (no CDISpecDirs in `docker "
            f"info`): it cannot be shown to give a container {names}",
            fix="Check that `docker info` runs and lists CDI spec directories (CDI is on by "
            'default from Docker 28.2; in 25 to 28.1 turn it on with "features": {"cdi": true} '
            "in /etc/docker/daemon.json)",
            url=DOCKER_CDI_URL,
            **details,
        )
    if access.spec_dirs is None or (version is not None and version < CDI_FIRST):
        return failed(
            "cdi_injection_failed",
            f"Docker {engine} has no CDI support (CDI needs Docker 25 or newer): it cannot give "
            f"a container {names}",
            fix="Upgrade Docker Engine (CDI is on by default from 28.2; in 25 to 28.1 turn it "
            'on with "features": {"cdi": true} in /etc/docker/daemon.json), or set '
            "docker.gpu_request: gpus to use the NVIDIA hook",
            url=DOCKER_CDI_URL,
            **details,
        )
    if off and (version is None or version < CDI_BY_DEFAULT):
        return failed(
            "cdi_injection_failed",
            f"CDI is off in Docker {engine}: it cannot give a container {names}",
            fix='Turn CDI on: add "features": {"cdi": true} to /etc/docker/daemon.json, then '
            "sudo systemctl restart docker (on by default from Docker 28.2)",
            url=DOCKER_CDI_URL,
            **details,
        )
    if off:
        return failed(
            "cdi_injection_failed",
            f"CDI is turned off in Docker {engine} (it is on by default since 28.2): it cannot "
            f"give a container {names}",
            fix='Remove "cdi": false from "features" (and an empty "cdi-spec-dirs") in '
            "/etc/docker/daemon.json, then sudo systemctl restart docker",
            url=DOCKER_CDI_URL,
            **details,
        )
    if client is not None and client < CDI_FIRST:
        return failed(
            "cdi_injection_failed",
            f"the docker CLI {access.client_version} cannot pass CDI devices (`--device "
            f"{access.wanted[0] if access.wanted else 'nvidia.com/gpu=all'}` needs docker CLI 25 "
            "or newer)",
            fix="Upgrade the docker CLI (docker-ce-cli) to 25 or newer, or set "
            "docker.gpu_request: gpus",
            url=DOCKER_CDI_URL,
            **details,
        )
    return None


def _remote_cdi(access: GpuAccess, base: dict[str, Any]) -> Verdict:
    if access.discovered is None:
        return skipped(
            "remote daemon: its CDI specs are on its own host; the GPU probe proves them"
        )
    missing = [name for name in access.wanted if name not in access.discovered]
    details = {**base, "discovered": list(access.discovered), "wanted": list(access.wanted)}
    if missing:
        return failed(
            "cdi_spec_missing",
            f"the remote Docker {access.engine_version} knows no CDI device {', '.join(missing)}"
            f" (it found {_some(access.discovered) or 'none'})",
            **details,
            missing_devices=missing,
        )
    return passed(f"the remote daemon lists {', '.join(access.wanted)}", **details)


def _missing(
    access: GpuAccess, missing: list[str], dirs: tuple[str, ...], base: dict[str, Any]
) -> Verdict:
    kind = gpu_request.CDI_KIND
    ours = [spec for spec in access.specs if spec.kind == kind]
    where = ", ".join(dirs) or "no directory"
    if not ours:
        message = f"no CDI spec for {kind} in {where}"
    else:
        known = sorted({n for spec in ours for n in spec.names})
        message = (
            f"the CDI spec {_files(ours)} does not name {', '.join(missing)} (it names "
            f"{_some(known)})"
        )
    message += f": {', '.join(missing)} cannot be given to a container"
    if access.unread:
        message += " (" + "; ".join(f"{p}: {why}" for p, why in access.unread[:2]) + ")"
    return failed("cdi_spec_missing", message, **base, missing_devices=missing)


def _stale(
    host: HostFacts,
    access: GpuAccess,
    used: list[CdiSpec],
    found: dict[str, tuple[CdiSpec, Any] | None],
) -> tuple[list[str], dict[str, Any]]:
    """What in the specs ``used`` is out of date against the host (empty when nothing)."""
    problems: list[str] = []
    details: dict[str, Any] = {}
    driver = host.smi_info.driver_version if host.smi_info else None
    versions = sorted({v for spec in used for v in spec.driver_versions})
    if versions:
        details["spec_driver_versions"] = versions
    if driver and versions and driver not in versions:
        problems.append(
            f"it was generated for driver {', '.join(versions)}, and the host driver is {driver}"
        )
        details |= {"spec_driver_version": versions[0], "driver_version": driver}
    devices = [hit[1] for hit in found.values() if hit]
    absent = [p for spec in used for p in spec.host_paths(devices) if p in access.absent]
    absent = list(dict.fromkeys(absent))
    if absent:
        problems.append(f"it names files that do not exist: {_some(absent, 3)}")
        details["absent_files"] = absent
    gpus = host.smi_info.gpus if host.smi_info else []
    if gpus:
        mismatch, seen = _other_gpus(used, gpus, part=host.job_view is not None)
        problems += mismatch
        details |= seen
        mig = _mig_mismatch(used, host)
        problems += mig
    return problems, details


def _other_gpus(
    used: list[CdiSpec], gpus: list[Any], part: bool = False
) -> tuple[list[str], dict[str, Any]]:
    """Whether the specs' GPUs (by index and by UUID) are the host's. ``part``: ``gpus`` are
    only those a Slurm job sees (`allocation.job_view`): the specs must hold them, and may
    hold the host's others."""
    names = {d.name for spec in used for d in spec.devices}
    indices = {i for n in names if (i := ascii_int(n)) is not None}
    uuids = {n for n in names if n.startswith("GPU-")}
    host_indices = {g.index for g in gpus}
    host_uuids = {g.uuid for g in gpus if g.uuid}
    if part:  # (what the job cannot see is not judged)
        indices = indices & host_indices if host_indices <= indices else indices
        uuids = uuids & host_uuids if host_uuids <= uuids else uuids
    problems: list[str] = []
    details: dict[str, Any] = {}
    if indices and indices != host_indices:
        problems.append(
            f"it lists GPU {_ints(indices)}, and the host has GPU {_ints(host_indices)}"
        )
        details |= {"spec_gpus": sorted(indices), "host_gpus": sorted(host_indices)}
    if uuids and host_uuids and uuids != host_uuids:
        strange, lacking = sorted(uuids - host_uuids), sorted(host_uuids - uuids)
        parts = []
        if strange:
            parts.append(f"names {_some(strange, 2)}, not on this host")
        if lacking:
            parts.append(f"lacks the host's {_some(lacking, 2)}")
        problems.append("it " + " and ".join(parts))
        details |= {"spec_uuids": sorted(uuids), "host_uuids": sorted(host_uuids)}
    return problems, details


def _mig_mismatch(used: list[CdiSpec], host: HostFacts) -> list[str]:
    """MIG devices in the specs where MIG is off, or none where it is on."""
    from .gpu_state import parse_states

    if host.smi is None or not host.smi.ok:
        return []
    names = {d.name for spec in used for d in spec.devices}
    with_mig = {int(n.split(":")[0]) for n in names if re.fullmatch(r"\d+:\d+", n)}
    problems = []
    for state in parse_states(host.smi.stdout):
        on = (state.mig_mode or "").lower() == "enabled"
        if on and state.index not in with_mig:
            problems.append(
                f"MIG is on for GPU {state.index}, and it names none of its MIG devices"
            )
        elif not on and state.mig_mode and state.index in with_mig:
            problems.append(f"it names MIG devices of GPU {state.index}, whose MIG mode is off")
    return problems


def _files(specs: list[CdiSpec]) -> str:
    return ", ".join(spec.path for spec in specs)


def _ints(values: set[int]) -> str:
    return ", ".join(str(v) for v in sorted(values)) or "none"


def _some(items: Any, limit: int = 6) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
