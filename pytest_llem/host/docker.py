"""The Docker engine, reached only through the docker CLI (the path `llem run` itself uses)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..domain.records import CommandResult, Endpoint, ImageInfo
from .proc import run, run_streaming, spawn_detached

DEFAULT_HOST = "unix:///var/run/docker.sock"
PROBE_FIELDS = ("index", "name", "uuid", "driver_version")


def docker_path(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return shutil.which("docker", path=env.get("PATH", os.defpath))


def _docker_config_dir(env: Mapping[str, str]) -> Path:
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"])
    return Path(env.get("HOME", str(Path.home()))) / ".docker"


def daemon_endpoint(env: Mapping[str, str] | None = None) -> Endpoint:
    """Resolve DOCKER_HOST, then DOCKER_CONTEXT, then the CLI config's current context.

    Reads the CLI's own files instead of running `docker context inspect` (one process less).
    """
    env = os.environ if env is None else env
    if env.get("DOCKER_HOST"):
        return Endpoint(env["DOCKER_HOST"], source="DOCKER_HOST")
    config_dir = _docker_config_dir(env)
    context = env.get("DOCKER_CONTEXT")
    source = "DOCKER_CONTEXT"
    if not context:
        data = _json_file(config_dir / "config.json")
        current = data.get("currentContext") if data else None
        context = current if isinstance(current, str) else None  # damaged: the CLI's default
        source = "docker context"
    if not context or context == "default":
        return Endpoint(DEFAULT_HOST)
    digest = hashlib.sha256(context.encode()).hexdigest()
    meta = _json_file(config_dir / "contexts" / "meta" / digest / "meta.json")
    try:
        host = meta["Endpoints"]["docker"]["Host"]  # type: ignore[index]
    except (KeyError, TypeError):
        host = None
    if not isinstance(host, str) or not host:
        return Endpoint(DEFAULT_HOST, context=context, source=source)
    return Endpoint(host, context=context, source=source)


def _json_file(path: Path, limit: int = 1024 * 1024) -> dict[str, Any] | None:
    """A small JSON object file of the docker CLI's, None when absent, too big or damaged."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
        data = json.loads(raw) if len(raw) <= limit else None
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


VERSION_ARGV = ("docker", "version", "--format", "{{json .}}")
INFO_ARGV = (
    "docker",
    "info",
    "--format",
    '{"id":{{json .ID}},"default_runtime":{{json .DefaultRuntime}}}',
)


def docker_version(timeout: float, env: Mapping[str, str] | None = None) -> CommandResult:
    return run(VERSION_ARGV, timeout=timeout, env=env)


def docker_info(timeout: float, env: Mapping[str, str] | None = None) -> CommandResult:
    return run(INFO_ARGV, timeout=timeout, env=env)


def daemon_id(timeout: float, env: Mapping[str, str] | None = None) -> str:
    """The engine's ID from `docker info` ("" when it cannot tell)."""
    result = docker_info(timeout, env)
    if result.ok:
        try:
            data = json.loads(result.stdout)
        except ValueError:
            return ""
        if isinstance(data, dict):
            return str(data.get("id") or "")
    return ""


def inspect_argv(image: str) -> tuple[str, ...]:
    return ("docker", "image", "inspect", "--format", "{{json .}}", "--", image)


def image_inspect(
    image: str, timeout: float, env: Mapping[str, str] | None = None
) -> tuple[ImageInfo | None, CommandResult]:
    result = run(inspect_argv(image), timeout=timeout, env=env)
    if not result.ok:
        return None, result
    try:
        data = json.loads(result.stdout)
        config = data.get("Config") or {}
        env_pairs = (item.partition("=") for item in config.get("Env") or [])
        info = ImageInfo(
            id=str(data.get("Id", "")),
            env={k: v for k, _, v in env_pairs},
            entrypoint=tuple(config.get("Entrypoint") or ()),
        )
    except (ValueError, AttributeError, TypeError):
        return None, result
    return info, result


def pull(
    image: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
    on_output: Callable[[str], None] | None = None,
) -> CommandResult:
    """`docker pull`; with ``on_output``, the CLI's progress goes there as it comes (its
    standard output, a terminal's redraws included; the result keeps it as plain lines)."""
    if on_output is None:
        return run(["docker", "pull", "--quiet", "--", image], timeout=timeout, env=env)
    from ..domain.pulls import plain_text

    result = run_streaming(
        ["docker", "pull", "--", image], timeout=timeout, env=env, on_output=on_output
    )
    return dataclasses.replace(result, stdout=plain_text(result.stdout))


def probe_argv(image: str, name: str, fields: Sequence[str] = PROBE_FIELDS) -> list[str]:
    """`docker run` of the image's nvidia-smi with every GPU, no network, no implicit pull."""
    return [
        "docker",
        "run",
        "--rm",
        "--name",
        name,
        "--gpus",
        "all",
        "--network",
        "none",
        "--pull",
        "never",
        "-e",
        "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
        "--entrypoint",
        "nvidia-smi",
        "--",
        image,
        f"--query-gpu={','.join(fields)}",
        "--format=csv,noheader",
    ]


def probe(
    image: str, name: str, timeout: float, env: Mapping[str, str] | None = None
) -> CommandResult:
    return run(probe_argv(image, name), timeout=timeout, env=env)


def remove_container(name: str, env: Mapping[str, str] | None = None, wait: bool = False) -> None:
    """`docker rm -f NAME`; detached unless ``wait`` (it blocks while an NVIDIA hook runs)."""
    argv = ["docker", "rm", "-f", name]
    if wait:
        run(argv, timeout=30, env=env)
    else:
        spawn_detached(argv, env=env)
