"""A private Docker engine (dockerd) for the test bed, with or without the fake NVIDIA hook."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from .forward import Forwarder
from .hook import DELAY_ENV, HOOK_LOG_ENV, SCENARIO_ENV, HookCall
from .scenario import GpuScenario
from .service import Service

DOCKER_CLI = "/usr/bin/docker"  # the engine's own CLI (20.10)
HOOK_NAME = "nvidia-container-runtime-hook"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ENGINE_ENV = "LLEM_TESTBED_ENGINE"  # marks every process of an engine (daemon, shims, hooks)
_HOOK_SCRIPT = Path(__file__).with_name("hook.py")
_DIRS = "bin usr usr/bin usr/local usr/local/bin etc root proc sys dev run var"
_APPLETS = (
    "sh ash [ awk basename cat chmod cp cut date dirname echo env expr false find grep head id kill"
    " ln ls mkdir mv printf ps pwd rm rmdir sed seq sleep sort stat tail tee test timeout touch tr"
    " true uname wc which xargs"
)


class EngineError(RuntimeError):
    pass


@functools.cache
def engine_unavailable_reason() -> str | None:
    """Why no private engine can be started here, or None when one can."""
    if os.geteuid() != 0:
        return "the Docker test bed starts private dockerd instances and needs root"
    needs = {"dockerd": "docker.io", "containerd": "docker.io", "runc": "docker.io"}
    missing = {pkg for tool, pkg in needs.items() if shutil.which(tool, path=SYSTEM_PATH) is None}
    if not Path(DOCKER_CLI).is_file():
        missing.add("docker.io")
    busybox = shutil.which("busybox", path=SYSTEM_PATH)
    if busybox is None or not _is_static(Path(busybox)):
        missing.add("busybox-static")
    if missing:
        needed = ", ".join(sorted(missing))
        return f"the Docker test bed needs {needed}: run scripts/provision.sh as root"
    return None


def _is_static(binary: Path) -> bool:
    """True for an ELF executable without a program interpreter (PT_INTERP)."""
    data = binary.read_bytes()
    if data[:4] != b"\x7fELF":
        return False
    wide = data[4] == 2
    order: Literal["little", "big"] = "little" if data[5] == 1 else "big"
    phoff = int.from_bytes(data[32:40] if wide else data[28:32], order)
    size = int.from_bytes(data[54:56] if wide else data[42:44], order)
    count = int.from_bytes(data[56:58] if wide else data[44:46], order)
    return all(
        int.from_bytes(data[phoff + i * size : phoff + i * size + 4], order) != 3
        for i in range(count)
    )


@functools.cache
def _busybox_rootfs() -> bytes:
    """A tar of a minimal root filesystem: a static busybox and links to its applets."""
    busybox = Path(shutil.which("busybox", path=SYSTEM_PATH) or "/bin/busybox")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in _DIRS.split():
            _add_dir(tar, name, 0o755)
        _add_dir(tar, "tmp", 0o1777)
        _add_file(tar, "bin/busybox", busybox.read_bytes(), 0o755)
        _add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        _add_file(tar, "etc/group", b"root:x:0:\n", 0o644)
        for applet in _APPLETS.split():
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buffer.getvalue()


def _add_dir(tar: tarfile.TarFile, name: str, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def rootfs_tar(files: Mapping[str, str | bytes] | None = None) -> bytes:
    """The busybox root filesystem plus `files` (path → content; "#!" scripts are executable)."""
    base = _busybox_rootfs()
    if not files:
        return base
    buffer = io.BytesIO(base)
    with tarfile.open(fileobj=buffer, mode="a") as tar:
        present = set(tar.getnames())
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            parts = Path(name.lstrip("/")).parts
            for depth in range(1, len(parts)):
                if (parent := "/".join(parts[:depth])) not in present:
                    _add_dir(tar, parent, 0o755)
                    present.add(parent)
            _add_file(tar, "/".join(parts), data, 0o755 if data.startswith(b"#!") else 0o644)
    return buffer.getvalue()


class _TcpForwarder(Forwarder):
    """127.0.0.1:PORT → the engine's unix socket.

    A "remote" daemon without the delay that dockerd adds to a TCP host without TLS.
    """

    def __init__(self, unix_socket: str) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = listener.getsockname()[1]
        super().__init__(listener, unix_socket)


class Engine(Service):
    """One private dockerd under its own short directory in /tmp.

    With `gpu=True` the fake `nvidia-container-runtime-hook` is first on the daemon's PATH, so
    dockerd registers its built-in NVIDIA device driver and `--gpus` works as the scenario says;
    with `gpu=False` `docker run --gpus` fails as on a host without the NVIDIA toolkit.
    LLEM_TESTBED_HOOK_DELAY_S, when set at start(), reaches the hook through the daemon's
    environment: every `--gpus` container then costs that much GPU initialisation time.
    """

    def __init__(self, *, gpu: bool = True, start_timeout: float = 30.0) -> None:
        self.gpu = gpu
        self.start_timeout = start_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="llem-", dir="/tmp"))
        self.unix_socket = str(self.dir / "docker.sock")
        self.scenario_file = self.dir / "scenario.json"
        self.hook_log = self.dir / "hook.log"
        self.daemon_log = self.dir / "dockerd.log"
        self.server_version = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._forwarder: _TcpForwarder | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> Engine:
        hook_dir = self.dir / "hook"
        hook_dir.mkdir()
        daemon_path = f"{hook_dir}:{SYSTEM_PATH}" if self.gpu else SYSTEM_PATH
        if self.gpu:
            wrapper = hook_dir / HOOK_NAME
            command = shlex.join([sys.executable, "-S", "-E", str(_HOOK_SCRIPT)])
            wrapper.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
            wrapper.chmod(0o755)
        elif shutil.which(HOOK_NAME, path=daemon_path):
            raise EngineError(
                f"a real {HOOK_NAME} is installed on this machine: no GPU-less engine possible"
            )
        self.set_scenario(GpuScenario())
        (self.dir / "daemon.json").write_text("{}")
        env = {
            "PATH": daemon_path,
            "HOME": str(self.dir),
            SCENARIO_ENV: str(self.scenario_file),
            HOOK_LOG_ENV: str(self.hook_log),
            ENGINE_ENV: str(self.dir),
        }
        if DELAY_ENV in os.environ:
            env[DELAY_ENV] = os.environ[DELAY_ENV]
        # Own containerd namespaces: isolated even where dockerd joins a system containerd.
        namespace = "llem-" + "".join(filter(str.isalnum, self.dir.name))
        args = [
            shutil.which("dockerd", path=SYSTEM_PATH) or "dockerd",
            f"--config-file={self.dir}/daemon.json",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--storage-driver=vfs",
            f"--data-root={self.dir}/data",
            f"--exec-root={self.dir}/x",
            f"--pidfile={self.dir}/dockerd.pid",
            f"--host=unix://{self.unix_socket}",
            "--group=root",  # socket root:root 0660
            f"--containerd-namespace={namespace}",
            f"--containerd-plugins-namespace={namespace}-plugins",
        ]
        with open(self.daemon_log, "wb") as log:
            self._proc = subprocess.Popen(
                args,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while not self._ping():
            if self._proc.poll() is not None:
                raise EngineError(
                    f"dockerd exited with status {self._proc.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise EngineError(
                    f"dockerd did not answer within {self.start_timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        version = self.docker(
            "version", "--format", "{{.Server.Version}}", check=False, timeout=self.start_timeout
        )
        if version.returncode != 0:
            raise EngineError(
                f"`docker version` failed: {version.stderr.strip()}\n{self.log_tail()}"
            )
        self.server_version = version.stdout.strip()

    def _ping(self) -> bool:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            try:
                sock.connect(self.unix_socket)
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                return sock.recv(64).startswith(b"HTTP/1.0 200")
            except OSError:
                return False

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.daemon_log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """Remove all containers, end all processes of the engine, unmount, delete its directory."""
        atexit.unregister(self.stop)
        if self._forwarder is not None:
            self._forwarder.close()
            self._forwarder = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            self._kill(self._hook_pids())  # `docker rm -f` would wait for a hook that sleeps
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                ids = self.containers()
                if ids:
                    self.docker("rm", "-f", *ids, timeout=30, check=False)
            self._end_group(proc)
        self._kill(self.leftover_pids())
        self._unmount()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.dir.exists():
            raise EngineError(f"could not remove {self.dir}")

    @staticmethod
    def _end_group(proc: subprocess.Popen[bytes]) -> None:
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def _processes(self) -> dict[int, tuple[bytes, bytes, str]]:
        """pid → (cmdline, environ, root) of every other process that can be read."""
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                proc = Path("/proc", entry)
                found[int(entry)] = (
                    (proc / "cmdline").read_bytes(),
                    (proc / "environ").read_bytes(),
                    os.readlink(proc / "root"),
                )
        return found

    def leftover_pids(self) -> list[int]:
        """Processes of this engine: daemon, containerd, shims, hooks, and containers' processes."""
        marker, prefix = f"{ENGINE_ENV}={self.dir}".encode(), str(self.dir) + "/"
        return sorted(
            pid
            for pid, (cmdline, environ, root) in self._processes().items()
            if marker in environ.split(b"\0")
            or str(self.dir).encode() in cmdline
            or root.startswith(prefix)
        )

    def _hook_pids(self) -> list[int]:
        marker, script = f"{ENGINE_ENV}={self.dir}".encode(), str(_HOOK_SCRIPT).encode()
        return [
            pid
            for pid, (cmdline, environ, _) in self._processes().items()
            if marker in environ.split(b"\0") and script in cmdline
        ]

    @staticmethod
    def _kill(pids: Sequence[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _is_zombie(pid)]
            time.sleep(0.02)

    def mounts(self) -> list[str]:
        """Mount points under the engine's directory."""
        prefix, found = str(self.dir) + "/", []
        with open("/proc/self/mountinfo") as mountinfo:
            for line in mountinfo:
                point = line.split()[4].encode().decode("unicode_escape")
                if point.startswith(prefix):
                    found.append(point)
        return found

    def _unmount(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        for point in sorted(self.mounts(), key=len, reverse=True):
            libc.umount2(point.encode(), 2)  # MNT_DETACH

    # -- clients ------------------------------------------------------------------------------

    @property
    def docker_host(self) -> str:
        return f"unix://{self.unix_socket}"

    @property
    def env(self) -> dict[str, str]:
        """What a client needs to reach this engine."""
        return {"DOCKER_HOST": self.docker_host}

    @property
    def tcp_host(self) -> str | None:
        return None if self._forwarder is None else f"tcp://127.0.0.1:{self._forwarder.port}"

    def enable_tcp(self) -> str:
        """Serve the engine on tcp://127.0.0.1:PORT too (a "remote" daemon); returns that host."""
        if self._forwarder is None:
            self._forwarder = _TcpForwarder(self.unix_socket)
        return f"tcp://127.0.0.1:{self._forwarder.port}"

    def _client_env(self) -> dict[str, str]:
        return {
            "PATH": SYSTEM_PATH,
            "HOME": str(self.dir),
            "DOCKER_CONFIG": str(self.dir / "cli"),
            "DOCKER_HOST": self.docker_host,
        }

    def docker(
        self, *args: str, timeout: float = 60, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the engine's docker CLI against this engine."""
        result = subprocess.run(
            [DOCKER_CLI, *args],
            env=self._client_env(),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise EngineError(
                f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    def containers(self) -> list[str]:
        """Ids of all containers, running or not."""
        return self.docker("ps", "-aq", "--no-trunc").stdout.split()

    def container_events(self, since: float, until: float | None = None) -> list[tuple[str, str]]:
        """(action, container id) of every container event from `since` (a time.time()) on."""
        end = time.time() if until is None else until
        out = self.docker(
            "events",
            f"--since={since:.6f}",
            f"--until={end:.6f}",
            "--filter=type=container",
            "--format={{.Action}} {{.Actor.ID}}",
        ).stdout
        return [
            (action, ident)
            for action, _, ident in (line.partition(" ") for line in out.splitlines())
        ]

    def created_since(self, since: float) -> list[str]:
        """Ids of the containers created from `since` on: the engine saw no container when empty."""
        return [ident for action, ident in self.container_events(since) if action == "create"]

    def wait_no_containers(self, timeout: float = 30.0) -> list[str]:
        """Wait until no container is left (a detached `docker rm -f` may still be running)."""
        deadline = time.monotonic() + timeout
        while (ids := self.containers()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return ids

    # -- scenario and images ------------------------------------------------------------------

    def set_scenario(self, scenario: GpuScenario) -> None:
        """What the hook does from the next `--gpus` container on (written atomically)."""
        partial = self.scenario_file.with_suffix(".tmp")
        partial.write_text(scenario.to_json())
        partial.replace(self.scenario_file)

    def reconfigure(
        self, runtimes: Mapping[str, str] | None = None, default_runtime: str = "runc"
    ) -> None:
        """Have dockerd reload its configuration (SIGHUP: no restart, containers and images
        stay) with these runtimes (name → executable, beside `runc`) and this default runtime.

        Both are always written: a reload keeps any setting the file does not name.
        """
        assert self._proc is not None, "the engine is not running"
        config = {
            "runtimes": {name: {"path": path} for name, path in (runtimes or {}).items()},
            "default-runtime": default_runtime,
        }
        config_file = self.dir / "daemon.json"
        partial = config_file.with_suffix(".tmp")
        partial.write_text(json.dumps(config))
        partial.replace(config_file)
        self._proc.send_signal(signal.SIGHUP)
        wanted = ({"runc", *(runtimes or {})}, default_runtime)
        deadline = time.monotonic() + self.start_timeout
        while True:
            shown = self.docker("info", "--format", "{{json .Runtimes}}|{{.DefaultRuntime}}")
            names, _, default = shown.stdout.strip().partition("|")
            if (set(json.loads(names)), default) == wanted:
                return
            if time.monotonic() > deadline:
                raise EngineError(f"dockerd did not reload {config}: {shown.stdout}")
            time.sleep(0.05)

    def hook_calls(self, since: float = 0.0) -> list[HookCall]:
        """The hook's invocations ({time, id, mode, env}) from `since` on."""
        if not self.hook_log.exists():
            return []
        calls: list[HookCall] = [
            json.loads(line) for line in self.hook_log.read_text().splitlines() if line
        ]
        return [call for call in calls if call["time"] >= since]

    def build_image(
        self,
        ref: str,
        env: Mapping[str, str] | None = None,
        cmd: Sequence[str] | None = None,
        files: Mapping[str, str | bytes] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """Import a busybox image (about 2 MB) with the given ENV, CMD, extra files and
        LABELs (one `--change` each: an argument may hold 128 KiB); its id."""
        changes = [f"ENV {key}={_env_value(value)}" for key, value in (env or {}).items()]
        changes += [f"LABEL {key}={_env_value(value)}" for key, value in (labels or {}).items()]
        changes.append(f"CMD {json.dumps(list(cmd or ['/bin/sh']))}")
        result = subprocess.run(
            [DOCKER_CLI, "import", *(f"--change={change}" for change in changes), "-", ref],
            env=self._client_env(),
            input=rootfs_tar(files),
            capture_output=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise EngineError(
                f"docker import {ref} failed: {result.stderr.decode(errors='replace').strip()}"
            )
        return result.stdout.decode().strip()


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _env_value(value: str) -> str:
    """A Dockerfile ENV value that stays literal (quoted, `$` not expanded)."""
    return json.dumps(value, ensure_ascii=False).replace("$", "\\$")
