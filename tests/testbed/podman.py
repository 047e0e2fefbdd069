"""A private Podman for the test bed, its GPUs given through a CDI spec of fake devices.

Everything of Podman's that a test touches is the test's own: storage (vfs) and run root, a
containers.conf (no file limits: this machine refuses Podman's default one; no network),
images imported from the busybox root file system of the Docker test bed. The CDI spec
directories /etc/cdi and /var/run/cdi are the test's too: every command that reads them (the
product, and the podman it starts) runs in a mount namespace of its own, where a directory of
the test is bound over /etc/cdi and an empty tmpfs over /var/run/cdi (`wrap`). (A mount needs
its mount point: where /etc/cdi or /run/cdi does not exist, an empty one is made on the host.)

The spec (`cdi_spec`) is the shape `nvidia-ctk cdi generate` writes: devices "0", "1", ...,
"GPU-<uuid>" and "all", each with its device node (made with mknod, major 195 as NVIDIA's) and
an environment variable of its own; common edits that bind the driver's library
(``libcuda.so.<driver>``) and a fake ``nvidia-smi``, which lists the GPUs whose variables the
container got. Verified on Debian 12 with Podman 4.3.1 (see shared/notes).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import itertools
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .engine import SYSTEM_PATH, rootfs_tar
from .scenario import GpuScenario, nvidia_smi_script
from .service import Service

PODMAN = "/usr/bin/podman"
GPU_ENV = "LLEM_FAKE_GPU_{}"  # set to 1 in a container for each GPU its CDI devices give
SMI_DIR = "/usr/local/lib/llem-fake-smi"  # in the container: one nvidia-smi per GPU set
LIBRARY_DIR = "/usr/lib/x86_64-linux-gnu"
UNSHARE = "/usr/bin/unshare"
NVIDIA_MAJOR = 195


@functools.cache
def podman_unavailable_reason() -> str | None:
    """Why no private Podman can be used here, or None when one can."""
    if os.geteuid() != 0:
        return "the Podman test bed makes device nodes and mount namespaces and needs root"
    missing = [p for p in (PODMAN, UNSHARE) if not Path(p).is_file()]
    if missing or shutil.which("busybox", path=SYSTEM_PATH) is None:
        return "the Podman test bed needs podman and busybox-static: run scripts/provision.sh"
    return None


class PodmanBed(Service):
    """One private Podman setup under its own directory in /tmp."""

    def __init__(self, scenario: GpuScenario | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="llem-pm-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.spec_dir = self.dir / "cdi"  # bound over /etc/cdi
        self.lib_dir = self.dir / "lib"  # the "driver's" libraries
        self.smi_dir = self.dir / "smi"
        self.dev_dir = self.dir / "dev"
        self.scenario = scenario or GpuScenario()

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> PodmanBed:
        for path in (self.spec_dir, self.lib_dir, self.smi_dir, self.dev_dir, self.dir / "tmp"):
            path.mkdir(parents=True, exist_ok=True)
        (self.dir / "storage.conf").write_text(
            "[storage]\n"
            'driver = "vfs"\n'
            f'runroot = "{self.dir}/run"\n'
            f'graphroot = "{self.dir}/graph"\n'
        )
        (self.dir / "containers.conf").write_text(
            "[containers]\n"
            "default_ulimits = []\n"
            'netns = "none"\n'
            "\n[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{self.dir}/events.log"\n'
            f'tmp_dir = "{self.dir}/tmp"\n'
            f'volume_path = "{self.dir}/volumes"\n'
            f'image_copy_tmp_dir = "{self.dir}/tmp"\n'
        )
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        """Remove every container and image, unmount what is left, delete the directory."""
        atexit.unregister(self.stop)
        if self.dir.exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.podman("rm", "-af", timeout=60)
                self.podman("rmi", "-af", timeout=60)
            libc = ctypes.CDLL(None, use_errno=True)
            for point in sorted(self._mounts(), key=len, reverse=True):
                libc.umount2(point.encode(), 2)  # MNT_DETACH
            shutil.rmtree(self.dir, ignore_errors=True)

    def _mounts(self) -> list[str]:
        prefix = str(self.dir) + "/"
        with open("/proc/self/mountinfo") as mountinfo:
            points = [line.split()[4] for line in mountinfo]
        return [p for p in points if p.startswith(prefix)]

    # -- clients ------------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """What podman needs to use this bed (add to a product's environment)."""
        return {
            "CONTAINERS_STORAGE_CONF": str(self.dir / "storage.conf"),
            "CONTAINERS_CONF": str(self.dir / "containers.conf"),
        }

    def podman(
        self, *args: str, timeout: float = 60, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run podman on this bed (outside its CDI namespace)."""
        env = {"PATH": SYSTEM_PATH, "HOME": str(self.dir), **self.env}
        return subprocess.run(
            [PODMAN, *args], env=env, input=input, capture_output=True, timeout=timeout,
            check=False,
        )  # fmt: skip

    def containers(self) -> list[str]:
        return self.podman("ps", "-aq").stdout.decode().split()

    def build_image(
        self,
        ref: str,
        env: Mapping[str, str] | None = None,
        cmd: Sequence[str] | None = None,
        files: Mapping[str, str | bytes] | None = None,
    ) -> str:
        """Import a busybox image with the given ENV, CMD and extra files; its id."""
        changes = [f"ENV {key}={json.dumps(value)}" for key, value in (env or {}).items()]
        changes.append(f"CMD {json.dumps(list(cmd or ['/bin/sh']))}")
        result = self.podman(
            "import", *(f"--change={c}" for c in changes), "-", ref,
            input=rootfs_tar(files), timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"podman import {ref} failed: {result.stderr.decode().strip()}")
        return result.stdout.decode().strip().splitlines()[-1]

    def wrap(self, cmd: Sequence[str]) -> list[str]:
        """``cmd`` in a mount namespace where /etc/cdi is this bed's spec directory and
        /var/run/cdi is empty: what the product reads and what podman reads agree."""
        script = (  # (absolute paths: the product's PATH may hold its own tools only)
            "set -e; /bin/mkdir -p /etc/cdi /run/cdi; "
            f"/bin/mount --bind {shlex.quote(str(self.spec_dir))} /etc/cdi; "
            "/bin/mount -t tmpfs none /run/cdi; "
            'exec "$@"'
        )
        return [UNSHARE, "-m", "--propagation", "private", "/bin/sh", "-c", script, "sh", *cmd]

    # -- the GPUs -----------------------------------------------------------------------------

    def device_node(self, index: int) -> Path:
        """The fake /dev/nvidiaN of GPU ``index`` (made once)."""
        node = self.dev_dir / f"nvidia{index}"
        if not node.exists():
            os.mknod(node, 0o666 | 0o020000, os.makedev(NVIDIA_MAJOR, index))  # S_IFCHR
        return node

    def library(self, driver_version: str) -> Path:
        """The fake ``libcuda.so.<driver_version>`` of a driver (made once)."""
        path = self.lib_dir / f"libcuda.so.{driver_version}"
        path.touch()
        return path

    def write_smi(self, scenario: GpuScenario) -> None:
        """The container's nvidia-smi: a wrapper that runs the fake nvidia-smi of the set of
        GPUs whose variables it got (one script per set, each numbering its GPUs from 0)."""
        count = len(scenario.gpus)
        sizes = range(1, count + 1) if count <= 4 else (1, count)
        for size in sizes:
            for chosen in itertools.combinations(range(count), size):
                gpus = [scenario.gpus[i] for i in chosen]
                name = "nvidia-smi-" + "-".join(str(i) for i in chosen)
                script = self.smi_dir / name
                script.write_text(nvidia_smi_script(scenario, gpus=gpus))
                script.chmod(0o755)
        checks = "\n".join(
            f'[ -n "${{{GPU_ENV.format(i)}:-}}" ] && sel="$sel-{i}"' for i in range(count)
        )
        wrapper = self.smi_dir / "nvidia-smi"
        wrapper.write_text(
            "#!/bin/sh\n"
            "# nvidia-smi of the Podman test bed: the GPUs this container's CDI devices gave\n"
            "sel=\n"
            f"{checks}\n"
            '[ -n "$sel" ] || { echo "No devices were found"; exit 6; }\n'
            f'exec {SMI_DIR}/nvidia-smi$sel "$@"\n'
        )
        wrapper.chmod(0o755)

    def cdi_spec(
        self,
        scenario: GpuScenario | None = None,
        *,
        library_version: str | None = None,
        gpus: Sequence[int] | None = None,
        uuid_names: bool = True,
    ) -> dict[str, Any]:
        """An NVIDIA CDI spec for ``scenario``'s GPUs (``gpus``: those indices only), whose
        library is named by ``library_version`` (default: the scenario's driver)."""
        scenario = scenario or self.scenario
        self.write_smi(scenario)
        version = library_version or scenario.driver_version
        library = self.library(version)
        indices = list(range(len(scenario.gpus))) if gpus is None else list(gpus)
        devices: list[dict[str, Any]] = []
        for index in indices:
            node = {"path": f"/dev/nvidia{index}", "hostPath": str(self.device_node(index))}
            edits = {"env": [f"{GPU_ENV.format(index)}=1"], "deviceNodes": [node]}
            devices.append({"name": str(index), "containerEdits": edits})
            if uuid_names and index < len(scenario.gpus):
                devices.append({"name": scenario.gpus[index].uuid, "containerEdits": edits})
        devices.append(
            {
                "name": "all",
                "containerEdits": {
                    "env": [f"{GPU_ENV.format(i)}=1" for i in indices],
                    "deviceNodes": [
                        {"path": f"/dev/nvidia{i}", "hostPath": str(self.device_node(i))}
                        for i in indices
                    ],
                },
            }
        )
        bind = ["ro", "nosuid", "nodev", "bind"]
        return {
            "cdiVersion": "0.5.0",
            "kind": "nvidia.com/gpu",
            "devices": devices,
            "containerEdits": {
                "env": ["NVIDIA_VISIBLE_DEVICES=void"],
                "mounts": [
                    {"hostPath": str(library), "containerPath": f"{LIBRARY_DIR}/{library.name}",
                     "options": bind},
                    {"hostPath": str(self.smi_dir), "containerPath": SMI_DIR, "options": bind},
                    {"hostPath": str(self.smi_dir / "nvidia-smi"),
                     "containerPath": "/usr/bin/nvidia-smi", "options": bind},
                ],
            },
        }  # fmt: skip

    def use_spec(self, spec: Mapping[str, Any] | None, name: str = "nvidia.yaml") -> None:
        """Put ``spec`` in the bed's /etc/cdi (None: no spec there at all)."""
        for old in self.spec_dir.iterdir():
            old.unlink()
        if spec is not None:
            text = yaml.dump(dict(spec), Dumper=_NoAliases, sort_keys=False)
            (self.spec_dir / name).write_text(text)


class _NoAliases(yaml.SafeDumper):
    """Writes a value used twice in full, as nvidia-ctk does: no anchors, no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True
