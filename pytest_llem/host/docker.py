"""The Docker engine, reached only through the docker CLI (the path `llem run` itself uses)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .proc import PARSED_OUTPUT_MAX, Started, run, run_streaming, spawn_detached, start

if TYPE_CHECKING:
    from ..domain.records import CommandResult, Endpoint, ImageInfo

# (json, hashlib and the records load only where needed: `docker version` starts first.)

DEFAULT_HOST = "unix:///var/run/docker.sock"
# Schemes of a daemon on another machine (as `Endpoint.remote` has them).
REMOTE_SCHEMES = ("tcp://", "ssh://", "http://", "https://")
PROBE_FIELDS = ("index", "name", "uuid", "driver_version")


def docker_path(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return shutil.which("docker", path=env.get("PATH", os.defpath))


def _docker_config_dir(env: Mapping[str, str]) -> str:
    if env.get("DOCKER_CONFIG"):
        return env["DOCKER_CONFIG"]
    return os.path.join(env.get("HOME") or os.path.expanduser("~"), ".docker")


def daemon_endpoint(env: Mapping[str, str] | None = None) -> Endpoint:
    """Resolve DOCKER_HOST, then DOCKER_CONTEXT, then the CLI config's current context.

    Reads the CLI's own files instead of running `docker context inspect` (one process less).
    """
    from ..domain.records import Endpoint

    return Endpoint(*_endpoint_parts(os.environ if env is None else env))


def daemon_is_remote(env: Mapping[str, str] | None = None) -> bool:
    """`daemon_endpoint(env).remote`, without loading the records (asked before they are)."""
    url = _endpoint_parts(os.environ if env is None else env)[0]
    return url.startswith(REMOTE_SCHEMES)


def _endpoint_parts(env: Mapping[str, str]) -> tuple[str, str | None, str]:
    """The endpoint's URL, context and where it was found."""
    if env.get("DOCKER_HOST"):
        return env["DOCKER_HOST"], None, "DOCKER_HOST"
    config_dir = _docker_config_dir(env)
    context = env.get("DOCKER_CONTEXT")
    source = "DOCKER_CONTEXT"
    if not context:
        data = _json_file(os.path.join(config_dir, "config.json"))
        current = data.get("currentContext") if data else None
        context = current if isinstance(current, str) else None  # damaged: the CLI's default
        source = "docker context"
    if not context or context == "default":
        return DEFAULT_HOST, None, "default"
    import hashlib

    digest = hashlib.sha256(context.encode()).hexdigest()
    meta = _json_file(os.path.join(config_dir, "contexts", "meta", digest, "meta.json"))
    try:
        host = meta["Endpoints"]["docker"]["Host"]  # type: ignore[index]
    except (KeyError, TypeError):
        host = None
    if not isinstance(host, str) or not host:
        return DEFAULT_HOST, context, source
    return host, context, source


def _json_file(path: str, limit: int = 1024 * 1024) -> dict[str, Any] | None:
    """A small JSON object file of the docker CLI's, None when absent, too big or damaged."""
    import json

    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
        data = json.loads(raw) if len(raw) <= limit else None
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


VERSION_ARGV = ("docker", "version", "--format", "{{json .}}")
# All of `docker info` as JSON, once: a template naming the fields it needs would fail on a CLI
# that lacks one of them (`CDISpecDirs` is unknown to a 20.10 CLI), whatever the engine.
INFO_ARGV = ("docker", "info", "--format", "{{json .}}")


class EngineConfig(NamedTuple):
    """What `docker info` says of the engine that decides how a GPU container is made."""

    id: str
    runtimes: str  # the runtimes, as canonical JSON ("" when not shown)
    default_runtime: str
    cdi_spec_dirs: tuple[str, ...] | None  # where it reads CDI specs (None: not shown, no CDI)


def docker_version(timeout: float, env: Mapping[str, str] | None = None) -> CommandResult:
    return run(VERSION_ARGV, timeout=timeout, env=env, limit=PARSED_OUTPUT_MAX)


def start_version(env: Mapping[str, str] | None = None) -> Started:
    """`docker_version()` started now; `Started.finish(timeout)` collects it."""
    return start(VERSION_ARGV, env=env, limit=PARSED_OUTPUT_MAX)


def docker_info(timeout: float, env: Mapping[str, str] | None = None) -> CommandResult:
    return run(INFO_ARGV, timeout=timeout, env=env, limit=PARSED_OUTPUT_MAX)


def engine_config(timeout: float, env: Mapping[str, str] | None = None) -> EngineConfig | None:
    """The engine's ID, runtimes, default runtime and CDI spec directories, from one
    `docker info` (None when it cannot tell)."""
    result = docker_info(timeout, env)
    return parse_engine_config(result.stdout) if result.ok else None


def parse_engine_config(text: str) -> EngineConfig | None:
    """`EngineConfig` from the JSON of `docker info` (None when it is not that JSON)."""
    import json

    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    runtimes = data.get("Runtimes")
    dirs = data.get("CDISpecDirs")
    return EngineConfig(
        id=str(data.get("ID") or ""),
        runtimes=json.dumps(runtimes, sort_keys=True, separators=(",", ":")) if runtimes else "",
        default_runtime=str(data.get("DefaultRuntime") or ""),
        cdi_spec_dirs=tuple(str(d) for d in dirs) if isinstance(dirs, list) else None,
    )


def daemon_id(timeout: float, env: Mapping[str, str] | None = None) -> str:
    """The engine's ID from `docker info` ("" when it cannot tell)."""
    config = engine_config(timeout, env)
    return config.id if config else ""


def inspect_argv(image: str) -> tuple[str, ...]:
    return ("docker", "image", "inspect", "--format", "{{json .}}", "--", image)


def image_inspect(
    image: str, timeout: float, env: Mapping[str, str] | None = None
) -> tuple[ImageInfo | None, CommandResult]:
    import json

    from ..domain.records import ImageInfo

    result = run(inspect_argv(image), timeout=timeout, env=env, limit=PARSED_OUTPUT_MAX)
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
    import dataclasses

    from ..domain.pulls import plain_text

    result = run_streaming(
        ["docker", "pull", "--", image], timeout=timeout, env=env, on_output=on_output
    )
    return dataclasses.replace(result, stdout=plain_text(result.stdout))


def probe_argv(
    image: str, name: str, request: str = "all", fields: Sequence[str] = PROBE_FIELDS
) -> list[str]:
    """`docker run` of the image's nvidia-smi with the GPU request ``request`` (the one the
    experiment makes), no network, no implicit pull."""
    from ..domain.gpu_request import docker_args

    return [
        "docker",
        "run",
        "--rm",
        "--name",
        name,
        *docker_args(request),
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


def start_probe(
    image: str, name: str, request: str = "all", env: Mapping[str, str] | None = None
) -> Started:
    """Start the probe container; `Started.finish(timeout)` waits for its answer."""
    return start(probe_argv(image, name, request), env=env)


def remove_container(name: str, env: Mapping[str, str] | None = None, wait: bool = False) -> None:
    """`docker rm -f NAME`; detached unless ``wait`` (it blocks while an NVIDIA hook runs)."""
    argv = ["docker", "rm", "-f", name]
    if wait:
        run(argv, timeout=30, env=env)
    else:
        spawn_detached(argv, env=env)
