"""A Docker experiment on a daemon that cannot see RUN_DIR (a remote one): no bind mount.

`docker create` the container as `docker run` would start it (same name, GPUs, environment,
command), `docker cp` the experiment's config into the container's run directory, `docker
start -a` (its output is the experiment's log), `docker cp` that directory back into RUN_DIR
(regular files only, each size-capped, never replacing a file, never following a link: see
`host.containers`), then `docker rm`. Whatever stops it, the container is removed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ..domain.records import CommandResult
from ..host import containers, docker, workloads
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
) -> workloads.WorkloadResult:
    """Run one experiment's container; the files it leaves in ``mount`` come into ``run_dir``.

    ``config`` (the bytes of ``<exp_id>_config.json``) is copied in; ``gpu_args`` are the
    GPU request's arguments.
    """
    start = time.monotonic()
    config_name = f"{exp_id}_config.json"
    try:
        created = run(
            docker_create_argv(image, name, mount, exp_id, command, gpu_args),
            timeout=CREATE_TIMEOUT_S,
        )
        if not created.ok:
            return _step_failed(created, log_path, start)
        copied = containers.copy_in(name, mount, {config_name: config})
        if not copied.ok:
            return _step_failed(copied, log_path, start)
        argv = ["docker", "start", "--attach", name]
        outcome = workloads.run_container(argv, name=name, log_path=log_path)
        notes = containers.copy_out(name, mount, run_dir, sent={config_name: config}).notes()
        if notes:
            with open(log_path, "a", encoding="utf-8") as log:
                log.writelines(line + "\n" for line in notes)
        return workloads.WorkloadResult(
            outcome.returncode, time.monotonic() - start, outcome.output_tail
        )
    finally:
        with shielded():
            docker.remove_container(name, wait=True)


def _step_failed(result: CommandResult, log_path: Path, start: float) -> workloads.WorkloadResult:
    """The result of an experiment whose container could not be created or given its config."""
    output = result.output
    if result.timed_out:
        output += f"\nllem: {result.argv[1]} did not end: stopped"
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(output + "\n")
    code = 124 if result.returncode is None else result.returncode
    return workloads.WorkloadResult(code or 1, time.monotonic() - start, output)
