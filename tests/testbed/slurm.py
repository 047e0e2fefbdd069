"""A real one-node Slurm on 127.0.0.1 for the tests: private directories, free ports picked at
start, no munge (auth/none, cred/none), no cgroups, and two `gpu` gres on device nodes made with
mknod. Debian's slurmctld, slurmd and slurm-client (22.05) run it as root.

Its Prolog is a wrapper that sets the environment a site's wrapper would set (PATH to the test
host's tools first, so that the fake nvidia-smi is the one seen; SLURM_CONF) and then runs the
script under test (`use_prolog`; none: it passes). A health check runs through the same kind of
wrapper (`run_health_check`), as slurmd would run it. `stop()` ends every daemon and job step
it started, and checks that none is left.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scontrol", "scancel", "sinfo")
SBIN = "/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
GPU_MAJOR = 195  # the NVIDIA character devices' major number


def slurm_unavailable_reason() -> str | None:
    """Why no test Slurm can run here, or None."""
    if os.geteuid() != 0:
        return "the Slurm test bed runs as root"
    missing = [t for t in (*DAEMONS, *CLIENTS) if shutil.which(t, path=SBIN) is None]
    if missing:
        return f"Slurm not installed ({', '.join(missing)} missing; see scripts/provision.sh)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wrapper(target: Path, env: Mapping[str, str]) -> str:
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))
    return f'#!/bin/sh\n{exports}exec {shlex.quote(str(target))} "$@"\n'


class Slurm:
    """One slurmctld and one slurmd under ``root``, their node named after this host."""

    def __init__(
        self,
        root: Path,
        *,
        gpus: int = 2,
        prolog: Path | None = None,
        script_env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.gpus = gpus
        self.node = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.prolog = prolog
        self.script_env = dict(script_env or {})
        self.ports = (_free_port(), _free_port())
        self._procs: list[subprocess.Popen[bytes]] = []

    # --- configuration ----------------------------------------------------------------------

    def _write_config(self) -> None:
        for sub in ("state", "spool", "dev", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for index in range(self.gpus):
            node = self.root / "dev" / f"nvidia{index}"
            if not node.exists():
                os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(GPU_MAJOR, index))
        self.use_prolog(self.prolog)
        lines = [
            "ClusterName=llemtest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={self.ports[0]}",
            f"SlurmdPort={self.ports[1]}",
            "AuthType=auth/none",
            "CredType=cred/none",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={self.root / 'state'}",
            f"SlurmdSpoolDir={self.root / 'spool'}",
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.root / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "GresTypes=gpu",
            "ReturnToService=2",
            "MpiDefault=none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SchedulerParameters=nohold_on_prolog_fail",
            "MinJobAge=600",
            "KillWait=5",
            "InactiveLimit=0",
            "PrologEpilogTimeout=60",
        ]
        lines.append(f"Prolog={self.root / 'prolog-wrapper.sh'}")
        cpus = os.cpu_count() or 1
        lines += [
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} Gres=gpu:{self.gpus} "
            "State=UNKNOWN",
            f"PartitionName=gpu Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        last = self.gpus - 1
        devices = f"nvidia[0-{last}]" if last else "nvidia0"
        (self.root / "gres.conf").write_text(
            f"NodeName={self.node} Name=gpu File={self.root / 'dev' / devices}\n"
        )

    def _script_env(self) -> dict[str, str]:
        return {"PATH": SYSTEM_PATH, **self.script_env, "SLURM_CONF": str(self.conf)}

    def use_prolog(self, target: Path | None) -> None:
        """The script the Prolog runs from now on (None: a prolog that passes)."""
        self.prolog = target
        wrapper = self.root / "prolog-wrapper.sh"
        if target is None:
            wrapper.write_text("#!/bin/sh\nexit 0\n")
        else:
            wrapper.write_text(_wrapper(target, self._script_env()))
        wrapper.chmod(0o755)

    def run_health_check(
        self, target: Path, timeout: float = 70.0
    ) -> subprocess.CompletedProcess[str]:
        """``target`` run as slurmd runs its HealthCheckProgram: as root, through the site's
        wrapper, with no job in its environment."""
        wrapper = self.root / "healthcheck-wrapper.sh"
        wrapper.write_text(_wrapper(target, self._script_env()))
        wrapper.chmod(0o755)
        return subprocess.run(
            [str(wrapper)],
            env={"SLURMD_NODENAME": self.node},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @property
    def env(self) -> dict[str, str]:
        """What a client (sbatch, squeue, llem) needs to reach this Slurm."""
        return {"SLURM_CONF": str(self.conf)}

    def client_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` with this Slurm's clients reachable: SLURM_CONF, and the system's PATH
        after ``base``'s own (where the test host's tools come first)."""
        path = ":".join(p for p in (base.get("PATH", ""), SYSTEM_PATH) if p)
        return {**base, **self.env, "PATH": path}

    # --- start and stop --------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> Slurm:
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_config()
        env = {"PATH": SBIN, "SLURM_CONF": str(self.conf), "HOME": str(self.root)}
        for argv in (
            ["slurmctld", "-f", str(self.conf)],
            ["slurmd", "-f", str(self.conf), "-N", self.node],
        ):
            program = shutil.which(argv[0], path=SBIN)
            assert program is not None
            proc = subprocess.Popen(
                [program, *argv[1:]],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            proc.wait(timeout=30)  # each daemonizes: the parent returns once it has forked
            if argv[0] == "slurmctld":
                self._wait(lambda: self.run(["scontrol", "ping"]).returncode == 0, timeout)
        self._wait(lambda: self.node_state()[0] in ("idle", "mixed", "allocated"), timeout)
        return self

    def _wait(self, ready: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():  # type: ignore[operator]
                return
            time.sleep(0.2)
        logs = "\n".join(
            p.read_text(errors="replace")[-3000:] for p in sorted((self.root / "log").glob("*"))
        )
        raise RuntimeError(f"the test Slurm did not come up in {timeout:g}s:\n{logs}")

    def _daemon_pids(self) -> list[int]:
        pids = []
        for name in ("slurmctld.pid", "slurmd.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int((self.root / name).read_text().split()[0]))
        return pids

    def leftover_pids(self) -> list[int]:
        """Processes of this Slurm still alive: its daemons, and any step daemon or job
        (they carry its SLURM_CONF in their environment)."""
        marker = f"SLURM_CONF={self.conf}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and marker in environ.split(b"\0"):
                found.append(int(entry.name))
        return sorted(found)

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel every job, stop both daemons (`scontrol shutdown`, else SIGTERM), end
        anything left of them; raises when something is still alive after ``timeout``."""
        with contextlib.suppress(Exception):
            self.run(["scancel", "--full", "-u", "root"], timeout=10)
        with contextlib.suppress(Exception):
            self.run(["scontrol", "shutdown"], timeout=10)
        grace = time.monotonic() + 5
        while self.leftover_pids() and time.monotonic() < grace:
            time.sleep(0.1)
        for pid in self._daemon_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.leftover_pids() and time.monotonic() < deadline:
            time.sleep(0.2)
            if time.monotonic() > deadline - timeout / 2:
                for pid in self.leftover_pids():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        left = self.leftover_pids()
        if left:
            raise RuntimeError(f"the test Slurm left processes behind: {left}")

    # --- the clients -----------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> subprocess.CompletedProcess[str]:
        """A Slurm client (or anything) with this Slurm's SLURM_CONF, output as text."""
        full = self.client_env(env or {"PATH": SYSTEM_PATH})
        return subprocess.run(
            list(argv),
            env=full,
            cwd=self.root,  # (where a job's slurm-N.out goes when it names no output)
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def node_state(self) -> tuple[str, str]:
        """(state, reason) of the node as sinfo shows them (``idle``, ``drained``, ...)."""
        out = self.run(["sinfo", "-h", "-N", "-n", self.node, "-o", "%T|%E"]).stdout.strip()
        state, _, reason = out.partition("|")
        return state.strip().lower().rstrip("*~#$@+"), reason.strip()

    def resume(self) -> None:
        """The node back in service (after a drain), and idle again."""
        state, _ = self.node_state()
        if "drain" in state:
            self.run(["scontrol", "update", f"nodename={self.node}", "state=resume"])
        self._wait(lambda: self.node_state()[0] == "idle", 30)

    def queued_jobs(self) -> list[str]:
        """Ids of the jobs squeue still lists (pending, running or completing)."""
        out = self.run(["squeue", "-h", "-o", "%i"]).stdout
        return out.split()

    def wait_no_jobs(self, timeout: float = 30.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.queued_jobs()
            if not jobs:
                return []
            time.sleep(0.2)
        return self.queued_jobs()

    def log(self, name: str = "slurmd") -> str:
        path = self.root / "log" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""
