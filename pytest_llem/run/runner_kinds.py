"""The runner kinds: one class each, behind one protocol.

A runner kind says what an experiment of its kind will start (its `Launch`: engine endpoint,
image, the exact GPU request), what such an experiment needs to be runnable, and how it is
started. The pre-flight's checks and the dispatch are both derived from the launches, so the
pre-flight proves the very request that the run makes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from ..domain import gpu_request
from ..domain.check_ids import DOCKER, LOCAL, PODMAN

if TYPE_CHECKING:
    from ..domain.records import Endpoint
    from ..host.workloads import WorkloadResult
    from .config import Experiment

RUN_MOUNT = "/run/llem"


@dataclass(frozen=True)
class Launch:
    """What one experiment will start: the single description of it that both the
    pre-flight and the dispatch use."""

    exp_id: str
    runner: str  # the runner kind's name
    image: str | None  # a container's image; None for a local process
    request: str  # the GPUs, as a GPU request's label (`domain.gpu_request`): all, device=1,3
    endpoint: Endpoint | None  # the engine a container goes to; None for a local process
    # How the request reaches the GPUs: gpus (the NVIDIA hook), cdi, or auto (what the engine
    # is set up for, as the pre-flight decides it: `domain.gpu_access.choose_path`).
    gpu_path: str = gpu_request.GPUS
    allocated: bool = False  # its GPUs are the Slurm allocation this runs in (by default)

    @property
    def remote(self) -> bool:
        """Whether its GPUs are another machine's (a remote engine's)."""
        return self.endpoint is not None and self.endpoint.remote

    @property
    def label(self) -> str:
        """The request as made (``device=1``, ``cdi:1``); ``auto`` decided first."""
        if self.gpu_path == "auto":
            raise ValueError("the GPU path of an auto request is decided when it starts")
        return gpu_request.via(self.request, self.gpu_path)

    @property
    def gpu_args(self) -> list[str]:
        return gpu_request.docker_args(self.label)


@dataclass(frozen=True)
class Started:
    """What a launch needs from the dispatch to run: where its files are, its name."""

    run_dir: Path
    name: str  # the container's name (unused by a local process)
    config_bytes: bytes
    config_path: Path
    log_path: Path
    command: list[str] | None
    cwd: Path  # a local process's working directory
    timeout_s: float | None = None  # execution.experiment_timeout_s (None: no limit)
    # Called with the pid of its process (a local command, a `docker run` client) once started.
    on_start: Callable[[int], None] | None = None


class RunnerKind(Protocol):
    """A way to run an experiment."""

    name: ClassVar[str]
    # Whether its experiments are containers: their images go through the image checks.
    containers: ClassVar[bool]

    def needs(self, experiment: Experiment, image: str | None) -> str | None:
        """What the experiment lacks to be runnable this way (a phrase), or None."""

    def launch(
        self,
        exp_id: str,
        image: str | None,
        devices: list[int] | None,
        env: Mapping[str, str],
        gpu_path: str = gpu_request.GPUS,
    ) -> Launch:
        """The launch of one experiment (``devices``: its GPUs, None for all; ``gpu_path``:
        how a container asks for them, the study's `docker.gpu_request`)."""

    def seen_dir(self, run_dir: Path) -> str:
        """RUN_DIR as the experiment sees it."""

    def start(self, launch: Launch, run: Started) -> WorkloadResult:
        """Run the launch to its end."""


class LocalRunner:
    """A process on this machine, in the study's `workdir` (its file's directory), its GPUs
    chosen by ``CUDA_VISIBLE_DEVICES`` (numbered as nvidia-smi numbers them); in a session of
    its own, whose leftovers are killed when it ends (`host.workloads`)."""

    name: ClassVar[str] = LOCAL
    containers: ClassVar[bool] = False

    def needs(self, experiment: Experiment, image: str | None) -> str | None:
        return None if experiment.command else "a command"

    def launch(
        self,
        exp_id: str,
        image: str | None,
        devices: list[int] | None,
        env: Mapping[str, str],
        gpu_path: str = gpu_request.GPUS,
    ) -> Launch:
        label, allocated = requested(devices, env)
        return Launch(exp_id, self.name, None, label, None, allocated=allocated)

    def seen_dir(self, run_dir: Path) -> str:
        return str(run_dir)

    def start(self, launch: Launch, run: Started) -> WorkloadResult:
        from ..host import workloads

        env = {**gpu_environment(launch, os.environ), "LLEM_CONFIG_PATH": str(run.config_path)}
        return workloads.run_local(
            run.command or [], cwd=run.cwd, env=env, log_path=run.log_path,
            timeout_s=run.timeout_s, on_start=run.on_start,
        )  # fmt: skip


def gpu_environment(launch: Launch, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a local process that makes ``launch``'s GPU request. Its GPUs are named
    in ``CUDA_VISIBLE_DEVICES``, numbered as nvidia-smi numbers them (PCI bus order); inside
    a Slurm job, as Slurm numbers them: its allocation keeps Slurm's own list, and GPUs named
    in the study take Slurm's entries for them (renumbered from 0 where a cgroup constrains
    the job's devices, where the host's indices would name no device)."""
    env = dict(env)
    visible = gpu_request.cuda_visible_devices(launch.request)
    if launch.allocated and env.get("CUDA_VISIBLE_DEVICES"):
        return env  # Slurm's own
    if visible is not None:
        from ..domain.allocation import allocation_of, visible_in_job

        devices = gpu_request.devices_of(launch.request) or ()
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["CUDA_VISIBLE_DEVICES"] = visible_in_job(devices, allocation_of(env)) or visible
    return env


class _ContainerRunner:
    """What every kind that runs containers shares: an image is needed, RUN_DIR is seen at
    RUN_MOUNT, and the local `run` command line (`argv`)."""

    name: ClassVar[str]
    containers: ClassVar[bool] = True

    def needs(self, experiment: Experiment, image: str | None) -> str | None:
        return None if image else "an image"

    def seen_dir(self, run_dir: Path) -> str:
        return RUN_MOUNT

    def argv(self, launch: Launch, run: Started) -> list[str]:
        """`docker run` (`podman run`) of the launch on a local engine, RUN_DIR mounted
        (DESIGN §6)."""
        return [
            self.name, "run", "--rm", *launch.gpu_args, "--name", run.name,
            "-v", f"{run.run_dir}:{RUN_MOUNT}",
            "-e", f"LLEM_CONFIG_PATH={RUN_MOUNT}/{launch.exp_id}_config.json",
            str(launch.image), *(run.command or []),
        ]  # fmt: skip

    def start(self, launch: Launch, run: Started) -> WorkloadResult:
        return self.run_here(launch, run)

    def run_here(self, launch: Launch, run: Started) -> WorkloadResult:
        """Run the launch on the engine of this machine, through this kind's CLI."""
        from ..host import workloads

        return workloads.run_container(
            self.argv(launch, run), name=run.name, log_path=run.log_path,
            timeout_s=run.timeout_s, on_start=run.on_start, cli=self.name,
        )  # fmt: skip


class DockerRunner(_ContainerRunner):
    """A container on the Docker engine the docker CLI reaches; RUN_DIR is bind-mounted on
    a local engine and copied in and out on a remote one."""

    name: ClassVar[str] = DOCKER

    def launch(
        self,
        exp_id: str,
        image: str | None,
        devices: list[int] | None,
        env: Mapping[str, str],
        gpu_path: str = gpu_request.GPUS,
    ) -> Launch:
        from ..host.docker import daemon_endpoint

        endpoint = daemon_endpoint(env)
        # (a remote engine's GPUs are not this node's allocation)
        label, allocated = requested(devices, {} if endpoint.remote else env)
        return Launch(exp_id, self.name, image, label, endpoint, gpu_path, allocated=allocated)

    def start(self, launch: Launch, run: Started) -> WorkloadResult:
        launch = decided(launch)
        assert launch.image is not None  # (needs(): a Docker experiment has an image)
        if launch.remote:  # a remote engine cannot mount RUN_DIR
            from .remote_dispatch import run_container_remote

            return run_container_remote(
                launch.image, run.name, launch.exp_id, run.command,
                gpu_args=launch.gpu_args, config=run.config_bytes, mount=RUN_MOUNT,
                run_dir=run.run_dir, log_path=run.log_path, timeout_s=run.timeout_s,
            )  # fmt: skip
        return self.run_here(launch, run)


class PodmanRunner(_ContainerRunner):
    """A container on this machine's Podman, its GPUs given through CDI (``--device
    nvidia.com/gpu=N``), RUN_DIR bind-mounted as for Docker. A remote Podman (CONTAINER_HOST,
    ``--remote``) is refused by the pre-flight (`podman-cli`)."""

    name: ClassVar[str] = PODMAN

    def launch(
        self,
        exp_id: str,
        image: str | None,
        devices: list[int] | None,
        env: Mapping[str, str],
        gpu_path: str = gpu_request.CDI,
    ) -> Launch:
        from ..domain.records import Endpoint

        where = Endpoint("local", source="podman")  # (Podman has only CDI: gpu_path unused)
        label, allocated = requested(devices, env)
        return Launch(exp_id, self.name, image, label, where, gpu_request.CDI, allocated=allocated)


def decided(launch: Launch) -> Launch:
    """The launch with its GPU path decided: ``auto`` asks the engine, as the pre-flight
    did (`host.gpu_path.docker_gpu_path`)."""
    if launch.gpu_path != "auto":
        return launch
    import dataclasses

    from ..host.gpu_path import docker_gpu_path

    return dataclasses.replace(launch, gpu_path=docker_gpu_path(os.environ))


def requested(devices: list[int] | None, env: Mapping[str, str]) -> tuple[str, bool]:
    """The GPU request label of an experiment on ``devices`` (None: all), and whether those
    are the Slurm allocation it runs in (`allocated_gpus`)."""
    allocated = allocated_gpus(devices, env)
    return gpu_request.label_of(allocated or devices), bool(allocated)


def allocated_gpus(devices: list[int] | None, env: Mapping[str, str]) -> list[int] | None:
    """The GPUs of an experiment that names none (``devices`` None), inside a Slurm job, step
    or prolog: its allocation's, in host indices. None otherwise (named GPUs win)."""
    if devices is not None:
        return None
    from ..domain.allocation import allocation_of

    allocation = allocation_of(env)
    return list(allocation.gpus) if allocation is not None and allocation.gpus else None


KINDS: dict[str, RunnerKind] = {
    LOCAL: LocalRunner(),
    DOCKER: DockerRunner(),
    PODMAN: PodmanRunner(),
}
# How a study names a runner: a kind's name, and ``NAME:IMAGE`` for one that runs containers.
_FORMS = [*KINDS, *(f"{name}:<image>" for name, kind in KINDS.items() if kind.containers)]
RUNNER_FORMS = ", ".join(_FORMS[:-1]) + " or " + _FORMS[-1]


def parse_runner(value: str) -> tuple[str, str | None]:
    """``KIND`` | ``KIND:<image>`` -> (kind's name, image); ValueError otherwise."""
    from ..domain.imageref import image_ref_error

    name, colon, image = value.partition(":")
    kind = KINDS.get(name)
    if kind is None or (colon and not kind.containers):
        raise ValueError(f"invalid runner {value!r} (expected {RUNNER_FORMS})")
    if not colon:
        return name, None
    error = image_ref_error(image)
    if error is not None:
        raise ValueError(error)
    return name, image
