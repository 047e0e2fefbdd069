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
# Schemes of a daemon on another machine (as `Endpoint.remote` has them). A DOCKER_HOST is
# normalised first (no scheme means tcp://), so only a context's host can be http(s)://.
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
    """The daemon the docker CLI will talk to, decided as the CLI decides it.

    Reads the CLI's own files instead of running `docker context inspect` (one process less).
    """
    from ..domain.records import Endpoint

    return Endpoint(*_endpoint_parts(os.environ if env is None else env))


def daemon_is_remote(env: Mapping[str, str] | None = None) -> bool:
    """`daemon_endpoint(env).remote`, without loading the records (asked before they are)."""
    url, _, _, error = _endpoint_parts(os.environ if env is None else env)
    return not error and url.startswith(REMOTE_SCHEMES)


def _endpoint_parts(env: Mapping[str, str]) -> tuple[str, str | None, str, str]:
    """The endpoint's URL, context, where it was found, and why the CLI rejects it ("").

    The docker CLI's order (github.com/docker/cli, cli/command/cli.go, `resolveContextName`
    and `getServerHost`): a non-empty DOCKER_HOST selects the default context, whatever
    DOCKER_CONTEXT says; then DOCKER_CONTEXT; then `currentContext` of config.json; else the
    default context. The default context's host is DOCKER_HOST as `ParseHost` reads it.
    """
    tls = bool(env.get("DOCKER_TLS") or env.get("DOCKER_TLS_VERIFY"))  # cli/flags/options.go
    if env.get("DOCKER_HOST"):  # any non-empty value, blanks included
        url, error = parse_host(env["DOCKER_HOST"], tls)
        return url, None, "DOCKER_HOST", error
    config_dir = _docker_config_dir(env)
    context = env.get("DOCKER_CONTEXT")
    source = "DOCKER_CONTEXT"
    if not context:
        data = _json_file(os.path.join(config_dir, "config.json"))
        current = data.get("currentContext") if data else None
        context = current if isinstance(current, str) else None  # damaged: the CLI's default
        source = "docker context"
    if not context or context == "default":
        return parse_host("", tls)[0], None, "default", ""
    import hashlib

    digest = hashlib.sha256(context.encode()).hexdigest()
    meta_path = os.path.join(config_dir, "contexts", "meta", digest, "meta.json")
    if not os.path.exists(meta_path):
        return DEFAULT_HOST, context, source, f'context "{context}" not found ({meta_path})'
    meta = _json_file(meta_path)
    try:
        host = meta["Endpoints"]["docker"]["Host"]  # type: ignore[index]
    except (KeyError, TypeError):
        host = None
    if not isinstance(host, str) or not host:
        return DEFAULT_HOST, context, source, ""
    # A context's host is used as written (the API client's `ParseHostURL`): it needs a scheme.
    _, sep, rest = host.partition("://")
    error = "" if sep and rest else f"unable to parse docker host `{host}`"
    return host, context, source, error


# --- DOCKER_HOST as the docker CLI reads it ------------------------------------------------
# A port of `ParseHost`, `parseDockerDaemonHost`, `parseSimpleProtoAddr` and `ParseTCPAddr`
# of github.com/docker/cli, opts/hosts.go and opts/hosts_unix.go
# (https://github.com/docker/cli/blob/master/opts/hosts.go): surrounding blanks are trimmed;
# no scheme means tcp://; tcp:// gets host "localhost" and port 2375 where they are missing;
# unix:// and npipe:// get their default socket where the path is missing; fd:// and ssh://
# are taken as written; any other scheme is refused. A blank value is the default socket,
# or tcp://localhost:2376 when TLS is asked for (DOCKER_TLS or DOCKER_TLS_VERIFY).

_GO_SPACE = (  # what Go's strings.TrimSpace trims (unicode.IsSpace)
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
_DEFAULT_TCP = ("localhost", "2375")
_DEFAULT_TLS_HOST = "tcp://localhost:2376"
_DEFAULT_SOCKETS = {"unix": "/var/run/docker.sock", "npipe": "//./pipe/docker_engine"}
# Besides ASCII letters and digits, what Go's net/url lets stand unescaped in a host and in
# the user information before "@".
_HOST_CHARS = "-_.~!$&'()*+,;=:[]<>\""
_USERINFO_CHARS = "-._:~!$&'()*+,;=%@"
_HEX = "0123456789abcdefABCDEF"


def parse_host(value: str, tls: bool = False) -> tuple[str, str]:
    """The daemon address the docker CLI makes of ``value`` (a DOCKER_HOST or `-H`), and why
    it refuses the value ("" when it does not; the value itself is returned then)."""
    host = value.strip(_GO_SPACE)
    if not host:
        return (_DEFAULT_TLS_HOST if tls else DEFAULT_HOST), ""
    scheme, sep, rest = host.partition("://")
    if not sep:
        scheme, rest = "tcp", host
    try:
        if scheme == "tcp":
            return _tcp_address(rest), ""
        if scheme in _DEFAULT_SOCKETS:
            path = rest.removeprefix(f"{scheme}://")
            if "://" in path:
                raise ValueError(f"invalid proto, expected {scheme}: {path}")
            return f"{scheme}://{path or _DEFAULT_SOCKETS[scheme]}", ""
        if scheme in ("fd", "ssh"):
            return host, ""
        raise ValueError(f"invalid bind address format: {host}")
    except ValueError as refused:
        return value, str(refused)


def _tcp_address(tried: str) -> str:
    """`ParseTCPAddr(tried, "tcp://localhost:2375")`: the address, else ValueError."""
    if tried in ("", "tcp://"):
        return "tcp://" + ":".join(_DEFAULT_TCP)
    addr = tried.removeprefix("tcp://")
    if "://" in addr or not addr:
        raise ValueError(f"invalid proto, expected tcp: {tried}")
    if addr.endswith("]:"):
        addr += _DEFAULT_TCP[1]
    authority, path = _url_host_and_path(addr)
    try:
        host, port = _split_host_port(authority)
    except ValueError:
        try:
            host, port = _split_host_port(_join_host_port(authority, _DEFAULT_TCP[1]))
        except ValueError:
            raise ValueError(f"invalid bind address format: {tried}") from None
    host = host or _DEFAULT_TCP[0]
    port = port or _DEFAULT_TCP[1]  # (digits: `_url_host_and_path` saw to that)
    return f"tcp://{_join_host_port(host, port)}{path}"


def _url_host_and_path(addr: str) -> tuple[str, str]:
    """Host and path of Go's `url.Parse("tcp://" + addr)` (net/url), else ValueError."""
    where = f'parse "tcp://{addr}"'
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in addr):
        raise ValueError(f"{where}: net/url: invalid control character in URL")
    rest, _, fragment = addr.partition("#")
    _unescape(fragment, where)
    authority, slash, path = rest.partition("?")[0].partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at and not all(c.isascii() and (c.isalnum() or c in _USERINFO_CHARS) for c in userinfo):
        raise ValueError(f"{where}: net/url: invalid userinfo")
    _unescape(userinfo, where)
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise ValueError(f"{where}: missing ']' in host")
        port = host[end + 1 :]
    else:
        colon = host.rfind(":")
        port = host[colon:] if colon >= 0 else ""
    if port and not (port.startswith(":") and all("0" <= c <= "9" for c in port[1:])):
        raise ValueError(f'{where}: invalid port "{port}" after host')
    return _unescape(host, where, in_host=True), _unescape(slash + path, where)


def _unescape(text: str, where: str, in_host: bool = False) -> str:
    """Go's `url.unescape`: %XX escapes decoded; in a host, only of non-ASCII bytes (or
    "%25"), and no character there that would need one."""
    raw = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "%":
            escape = text[i : i + 3]
            if len(escape) < 3 or not all(h in _HEX for h in escape[1:]):
                raise ValueError(f'{where}: invalid URL escape "{escape}"')
            if in_host and int(escape[1], 16) < 8 and escape != "%25":
                raise ValueError(f'{where}: invalid URL escape "{escape}"')
            raw.append(int(escape[1:], 16))
            i += 3
            continue
        if in_host and c < "\x80" and not (c.isalnum() or c in _HOST_CHARS):
            raise ValueError(f'{where}: invalid character "{c}" in host name')
        raw += c.encode()
        i += 1
    return raw.decode(errors="replace")


def _split_host_port(hostport: str) -> tuple[str, str]:
    """Go's `net.SplitHostPort`, else ValueError."""
    colon = hostport.rfind(":")
    if colon < 0:
        raise ValueError("missing port in address")
    start, end = 0, 0  # no '[' may follow the first, no ']' the closing one
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0 or close + 1 != colon:
            raise ValueError("bad brackets or port in address")
        host, start, end = hostport[1:close], 1, close + 1
    else:
        host = hostport[:colon]
        if ":" in host:
            raise ValueError("too many colons in address")
    if "[" in hostport[start:] or "]" in hostport[end:]:
        raise ValueError("unexpected bracket in address")
    return host, hostport[colon + 1 :]


def _join_host_port(host: str, port: str) -> str:
    """Go's `net.JoinHostPort`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
    # Where it reads CDI specs: None when not shown (before Docker 25), () when CDI is off.
    cdi_spec_dirs: tuple[str, ...] | None
    server_version: str = ""
    # The CDI devices its CDI driver found (Docker 28.2+), None when not shown.
    discovered: tuple[str, ...] | None = None


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
    devices = data.get("DiscoveredDevices")
    return EngineConfig(
        id=str(data.get("ID") or ""),
        runtimes=json.dumps(runtimes, sort_keys=True, separators=(",", ":")) if runtimes else "",
        default_runtime=str(data.get("DefaultRuntime") or ""),
        cdi_spec_dirs=tuple(str(d) for d in dirs) if isinstance(dirs, list) else None,
        server_version=str(data.get("ServerVersion") or ""),
        discovered=(
            tuple(str(d["ID"]) for d in devices if isinstance(d, dict) and d.get("ID"))
            if isinstance(devices, list)
            else None
        ),
    )


def daemon_id(timeout: float, env: Mapping[str, str] | None = None) -> str:
    """The engine's ID from `docker info` ("" when it cannot tell)."""
    config = engine_config(timeout, env)
    return config.id if config else ""


def inspect_argv(image: str, cli: str = "docker") -> tuple[str, ...]:
    """`docker image inspect` (or `podman image inspect`: ``cli`` is the engine's CLI)."""
    return (cli, "image", "inspect", "--format", "{{json .}}", "--", image)


def image_inspect(
    image: str, timeout: float, env: Mapping[str, str] | None = None, cli: str = "docker"
) -> tuple[ImageInfo | None, CommandResult]:
    import json

    from ..domain.records import ImageInfo

    result = run(inspect_argv(image, cli), timeout=timeout, env=env, limit=PARSED_OUTPUT_MAX)
    if not result.ok:
        return None, result
    try:
        data = json.loads(result.stdout)
        if isinstance(data, list) and len(data) == 1:  # Podman 4 prints the list of one
            data = data[0]
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
    cli: str = "docker",
) -> CommandResult:
    """`docker pull` (or ``cli`` pull); with ``on_output``, the CLI's progress goes there as
    it comes (its standard output, a terminal's redraws included; the result keeps it as plain
    lines)."""
    if on_output is None:
        return run([cli, "pull", "--quiet", "--", image], timeout=timeout, env=env)
    import dataclasses

    from ..domain.pulls import plain_text

    result = run_streaming(
        [cli, "pull", "--", image], timeout=timeout, env=env, on_output=on_output
    )
    return dataclasses.replace(result, stdout=plain_text(result.stdout))


def probe_argv(
    image: str,
    name: str,
    request: str = "all",
    fields: Sequence[str] = PROBE_FIELDS,
    check_requirements: bool = True,
    cli: str = "docker",
) -> list[str]:
    """`docker run` (``cli`` run) of the image's nvidia-smi with the GPU request ``request``
    (the one the experiment makes), no network, no implicit pull; without
    ``check_requirements``, the NVIDIA hook ignores the image's NVIDIA_REQUIRE_*."""
    from ..domain.gpu_request import docker_args

    unchecked = [] if check_requirements else ["-e", "NVIDIA_DISABLE_REQUIRE=1"]
    return [
        cli,
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
        *unchecked,
        "--entrypoint",
        "nvidia-smi",
        "--",
        image,
        f"--query-gpu={','.join(fields)}",
        "--format=csv,noheader",
    ]


def start_probe(
    image: str,
    name: str,
    request: str = "all",
    env: Mapping[str, str] | None = None,
    fields: Sequence[str] = PROBE_FIELDS,
    check_requirements: bool = True,
    cli: str = "docker",
) -> Started:
    """Start the probe container; `Started.finish(timeout)` waits for its answer."""
    return start(probe_argv(image, name, request, fields, check_requirements, cli), env=env)


def remove_container(
    name: str, env: Mapping[str, str] | None = None, wait: bool = False, cli: str = "docker"
) -> None:
    """`docker rm -f NAME` (``cli`` rm); detached unless ``wait`` (it blocks while an NVIDIA
    hook runs)."""
    argv = [cli, "rm", "-f", "-v", name]  # with its anonymous volumes
    if wait:
        run(argv, timeout=30, env=env)
    else:
        spawn_detached(argv, env=env)
