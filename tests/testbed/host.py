"""The host side of the simulation: fake NVIDIA tools on a per-test PATH, and a non-root user."""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal, NamedTuple, Protocol

from .engine import Engine
from .live import LiveGpus, live_smi_script
from .scenario import GpuScenario, nvidia_smi_script, print_lines

HostSmi = Literal["ok", "missing", "driver_not_loaded", "nvml_mismatch", "no_devices"]
HostScenario = Literal[
    "healthy",
    "no_docker",
    "daemon_down",
    "permission_denied",
    "remote",
    "toolkit_missing",
    "smi_missing",
    "driver_not_loaded",
    "nvml_mismatch",
    "no_devices",
]
TOOLKIT = ("nvidia-ctk", "nvidia-container-cli", "nvidia-container-runtime")
# The source tree these tests belong to: the product they run is this tree's, whatever
# another checkout of the project installed last.
SOURCE_TREE = Path(__file__).resolve().parents[2]
DOCKER_CLIS = ("/usr/bin/docker", "/usr/local/bin/docker")
TEST_USER = "llemtest"
TOOLKIT_VERSION = "1.14.3"
_COMMIT = "53b24618a542025b108239fe602e66e912b7d6e2"


def _script(lines: Sequence[str]) -> str:
    return f"#!/bin/sh\n{print_lines(lines)}\n"


def _toolkit_script(name: str, scenario: GpuScenario) -> str:
    if name == "nvidia-ctk":
        return _script(
            [f"NVIDIA Container Toolkit CLI version {TOOLKIT_VERSION}", f"commit: {_COMMIT}"]
        )
    if name == "nvidia-container-runtime":
        return _script(
            [
                f"NVIDIA Container Runtime version {TOOLKIT_VERSION}",
                f"commit: {_COMMIT}",
                "spec: 1.1.0",
            ]
        )
    version = [
        f"cli-version: {TOOLKIT_VERSION}",
        f"lib-version: {TOOLKIT_VERSION}",
        "build date: 2023-10-18T14:59+00:00",
        f"build revision: {_COMMIT}",
        "build compiler: x86_64-linux-gnu-gcc-7 7.5.0",
        "build platform: x86_64",
    ]
    info = [
        f"NVRM version:   {scenario.driver_version}",
        f"CUDA version:   {scenario.cuda_version}",
    ]
    for index, gpu in enumerate(scenario.gpus):
        info += [
            "",
            f"Device Index:   {index}",
            f"Device Minor:   {index}",
            f"Model:          {gpu.name}",
            f"Brand:          {scenario.product_brand}",
            f"GPU UUID:       {gpu.uuid}",
            f"Bus Location:   {gpu.pci_bus_id}",
            f"Architecture:   {scenario.arch}",
        ]
    return (
        "#!/bin/sh\n"
        'for a in "$@"; do case $a in\n'
        f"  -V|--version) {print_lines(version)}; exit 0 ;;\n"
        f"  info) {print_lines(info)}; exit 0 ;;\n"
        "esac; done\n"
    )


class HostSetup(NamedTuple):
    env: dict[str, str]  # the product's environment
    as_user: bool  # run the product as the non-root test user


class HostTools:
    """A bin directory of host executables for one test, and a clean environment around it.

    Healthy by default: docker (a link to the engine's CLI), nvidia-smi, and the three toolkit
    executables. `use_*` methods switch each piece to another scenario.
    """

    def __init__(
        self,
        root: Path,
        *,
        scenario: GpuScenario | None = None,
        docker: str | None = DOCKER_CLIS[0],
        nvidia_smi: HostSmi = "ok",
        toolkit: Iterable[str] = TOOLKIT,
    ) -> None:
        self.root = root
        self.bin = root / "bin"
        self.home = root / "home"
        self.work = root / "work"  # a project directory: the product's working directory
        for path in (self.bin, self.home, self.work):
            path.mkdir(parents=True, exist_ok=True)
        self.scenario = scenario or GpuScenario()
        self.live: LiveGpus | None = None  # go_live(): nvidia-smi answers from a file
        self.use_docker(docker)
        self.use_nvidia_smi(nvidia_smi)
        self.use_toolkit(toolkit)

    @property
    def dead_docker_host(self) -> str:
        """A DOCKER_HOST whose socket does not exist: a daemon that is down."""
        return f"unix://{self.root}/no-daemon.sock"

    def tools(self) -> list[str]:
        return sorted(path.name for path in self.bin.iterdir())

    def install(self, name: str, script: str) -> Path:
        """Put an executable `name` on the PATH (replacing any)."""
        self.remove(name)
        path = self.bin / name
        path.write_text(script)
        path.chmod(0o755)
        return path

    def remove(self, name: str) -> None:
        (self.bin / name).unlink(missing_ok=True)

    def use_docker(self, cli: str | None) -> None:
        """`cli`: the docker executable to link (either of DOCKER_CLIS), or None for no docker."""
        self.remove("docker")
        if cli is not None:
            (self.bin / "docker").symlink_to(cli)

    def use_nvidia_smi(self, state: HostSmi, nvml_library_version: str = "550.67") -> None:
        self._smi = state
        self.remove("nvidia-smi")
        if state == "ok" and self.live is not None:
            self.install("nvidia-smi", live_smi_script(self.live))
        elif state != "missing":
            failure = None if state == "ok" else state
            self.install(
                "nvidia-smi",
                nvidia_smi_script(
                    self.scenario, failure=failure, nvml_library_version=nvml_library_version
                ),
            )

    def use_toolkit(self, names: Iterable[str]) -> None:
        """Exactly these toolkit executables are present (none for an empty list)."""
        wanted = set(names)
        for name in TOOLKIT:
            if name in wanted:
                self.install(name, _toolkit_script(name, self.scenario))
            else:
                self.remove(name)

    def go_live(self) -> LiveGpus:
        """From now on, `nvidia-smi` answers from a scenario file at every call (`testbed.live`):
        the current scenario at first; a test or an experiment rewrites it to change the GPUs."""
        self.live = LiveGpus(self.root / "gpus.json")
        self.live.write(self.scenario)
        self.use_nvidia_smi(self._smi)
        return self.live

    def use_scenario(self, scenario: GpuScenario) -> None:
        """Show another GPU scenario through the host's nvidia-smi and toolkit tools."""
        self.scenario = scenario
        if self.live is not None:
            self.live.write(scenario)
        self.use_nvidia_smi(self._smi)
        self.use_toolkit([name for name in TOOLKIT if (self.bin / name).exists()])

    def prepare(self, name: HostScenario, engine: Engine) -> HostSetup:
        """Switch to a named host scenario around `engine` (healthy until now)."""
        docker_host: str | None = None
        if name == "no_docker":
            self.use_docker(None)
        elif name == "daemon_down":
            docker_host = self.dead_docker_host
        elif name == "permission_denied":
            self.give_to()
        elif name == "remote":
            docker_host = engine.enable_tcp()
            self.use_toolkit([])
            self.use_nvidia_smi("missing")
        elif name == "toolkit_missing":
            self.use_toolkit([])
        elif name == "smi_missing":
            self.use_nvidia_smi("missing")
        elif name != "healthy":
            self.use_nvidia_smi(name)
        return HostSetup(self.env(engine, docker_host), name == "permission_denied")

    def env(
        self,
        engine: Engine | None = None,
        docker_host: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """A clean environment for the product as a subprocess: PATH is the bin directory alone."""
        env = {
            "PATH": str(self.bin),
            "HOME": str(self.home),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(SOURCE_TREE),
        }
        if engine is not None:
            env["DOCKER_HOST"] = engine.docker_host
        if docker_host is not None:
            env["DOCKER_HOST"] = docker_host
        env.update(extra or {})
        return env

    def give_to(self, user: str = TEST_USER) -> None:
        """Let `user` own the home and work directories (the root stays traversable).

        The user is created first where it does not exist yet (a machine that never ran the suite).
        """
        entry = pwd.getpwnam(ensure_test_user(user))
        self.root.chmod(self.root.stat().st_mode | stat.S_IXOTH | stat.S_IROTH)
        self.bin.chmod(0o755)
        for top in (self.home, self.work):
            for path in [top, *top.rglob("*")]:
                os.lchown(path, entry.pw_uid, entry.pw_gid)


@functools.cache
def ensure_test_user(user: str = TEST_USER) -> str:
    """Create the non-root test user if missing; let it run this Python and read the repository."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
            check=True,
            capture_output=True,
        )
    # Traversal (o+x) only, for directories above the interpreter and the repository.
    for target in (Path(sys.prefix), Path(sys.executable).resolve(), Path(__file__).resolve()):
        for parent in target.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
    return user


def user_command(cmd: Sequence[str], user: str = TEST_USER) -> list[str]:
    """`cmd` run as the non-root test user; the environment passes through as given."""
    ensure_test_user(user)
    runuser = shutil.which("runuser", path="/usr/sbin:/usr/bin:/sbin:/bin") or "runuser"
    return [runuser, "-u", user, "-m", "--", *cmd]


def popen_in_session(
    cmd: Sequence[str], env: Mapping[str, str], cwd: Path | None
) -> subprocess.Popen[str]:
    """`cmd` started in a session of its own with exactly `env`, its output captured as text."""
    return subprocess.Popen(
        list(cmd),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )


def run(
    cmd: Sequence[str], env: Mapping[str, str], *, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in a session of its own; on timeout the whole session is killed, then it raises."""
    with popen_in_session(cmd, env, cwd) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as expired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(proc.args, timeout, out, err) from expired
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def as_user(
    cmd: Sequence[str], env: Mapping[str, str], *, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` as the non-root test user with exactly `env`."""
    return run(user_command(cmd), env, timeout=timeout, cwd=cwd)


class ProductRunner(Protocol):
    """The `run_product` fixture: runs `["llem", ...]` or `["pytest", ...]` as a subprocess."""

    def __call__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        *,
        user: bool = False,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]: ...
