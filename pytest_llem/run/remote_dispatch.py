"""A Docker experiment on a daemon that cannot see RUN_DIR (a remote one): no bind mount.

`docker create` the container as `docker run` would start it (same name, GPUs, environment,
command), `docker cp` the experiment's config into the container's run directory, `docker
start -a` (its output is the experiment's log), `docker cp` that directory back into RUN_DIR
(regular files only, each size-capped, never replacing a file, never following a link: see
`host.containers`), then `docker rm`. Whatever stops it, the container is removed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..domain.records import CommandResult
from ..host import containers, runfiles, workloads
from ..host.proc import run
from ..signals import shielded

CREATE_TIMEOUT_S = 24 * 3600.0  # `docker create` pulls an absent image, as `docker run` does


def docker_create_argv(
    image: str,
    name: str,
    mount: str,
    exp_id: str,
    command: list[str] | None,
    gpu_args: Sequence[str] = ("--gpus", "all"),
) -> list[str]:
    """`docker run`'s arguments less `--rm` and the bind mount (``gpu_args``: the GPU
    request's, `--gpus X` or `--device nvidia.com/gpu=N`...)."""
    return [
        "docker", "create", *gpu_args, "--name", name,
        "-e", f"LLEM_CONFIG_PATH={mount}/{exp_id}_config.json",
        image, *(command or []),
    ]  # fmt: skip


def run_container_remote(
    image: str,
    name: str,
    exp_id: str,
    command: list[str] | None,
    *,
    gpu_args: Sequence[str],
    config: bytes,
    mount: str,
    run_dir: Path,
    log_path: Path,
    timeout_s: float | None = None,
) -> workloads.WorkloadResult:
    """Run one experiment's container; the files it leaves in ``mount`` come into ``run_dir``.

    ``config`` (the bytes of ``<exp_id>_config.json``) is copied in; ``gpu_args`` are the
    GPU request's arguments. ``timeout_s`` limits everything up to the container's end
    (creating it, an image pull included); the copy back is llem's own work. The container is
    removed with its anonymous volumes whatever happens; the result's ``cleanup`` says when it
    may be left.
    """
    start = time.monotonic()
    box = _Container(
        name, exp_id, mount, run_dir, log_path,
        deadline=None if timeout_s is None else start + timeout_s,
    )  # fmt: skip
    try:
        result = _run_steps(
            box, docker_create_argv(image, name, mount, exp_id, command, gpu_args), config
        )
    except BaseException:
        with shielded():
            containers.remove(name)
        raise
    with shielded():
        left = containers.remove(name)
    return dataclasses.replace(
        result, duration_s=time.monotonic() - start, cleanup=result.cleanup or left
    )


@dataclass(frozen=True)
class _Container:
    """One experiment's container on the remote daemon, and where its files go."""

    name: str
    exp_id: str
    mount: str  # its run directory, inside the container
    run_dir: Path
    log_path: Path
    deadline: float | None  # time.monotonic() of execution.experiment_timeout_s; None: none


def _run_steps(box: _Container, create: list[str], config: bytes) -> workloads.WorkloadResult:
    """Create, copy in, start and attach, copy back (the container is removed by the caller)."""
    created = run(create, timeout=_left(box.deadline, CREATE_TIMEOUT_S))
    if not created.ok:
        return _step_failed(created, box)
    sent = {f"{box.exp_id}_config.json": config}
    timeout = _left(box.deadline, containers.COPY_TIMEOUT_S)
    copied = containers.copy_in(box.name, box.mount, sent, timeout=timeout)
    if not copied.ok:
        return _step_failed(copied, box)
    argv = ["docker", "start", "--attach", box.name]
    left = None if box.deadline is None else _left(box.deadline, math.inf)
    outcome = workloads.run_container(argv, name=box.name, log_path=box.log_path, timeout_s=left)
    if outcome.timed_out:  # the container is gone: nothing to copy back
        return outcome
    own = [f"{box.exp_id}_result.json", f"{box.exp_id}_error.json"]  # even past the file cap
    back = containers.copy_out(box.name, box.mount, box.run_dir, sent=sent, keep=own)
    if back.notes():
        runfiles.append(box.log_path, "".join(line + "\n" for line in back.notes()).encode())
    return outcome


def _left(deadline: float | None, cap: float) -> float:
    """The time left to ``deadline`` (None: no limit), at most ``cap``."""
    return cap if deadline is None else max(0.0, min(cap, deadline - time.monotonic()))


def _step_failed(result: CommandResult, box: _Container) -> workloads.WorkloadResult:
    """The result of an experiment whose container could not be created or given its config."""
    output = result.output
    if result.timed_out:
        output += f"\nllem: {result.argv[1]} did not end: stopped"
    runfiles.write(box.log_path, (output + "\n").encode())  # new, never a link's target
    code = 124 if result.returncode is None else result.returncode
    timed_out = result.timed_out and box.deadline is not None and time.monotonic() >= box.deadline
    return workloads.WorkloadResult(code or 1, result.duration_s, output, timed_out=timed_out)
