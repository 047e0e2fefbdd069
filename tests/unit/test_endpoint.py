"""Which daemon the docker CLI will talk to: DOCKER_HOST, DOCKER_CONTEXT, the current context."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_llem.domain import verdicts
from pytest_llem.domain.records import CommandResult, Endpoint, HostFacts
from pytest_llem.host.docker import DEFAULT_HOST, daemon_endpoint, daemon_is_remote, parse_host


def _context(config: Path, name: str, host: str) -> None:
    meta = config / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Endpoints": {"docker": {"Host": host}}})
    )


def test_default_socket(tmp_path: Path) -> None:
    endpoint = daemon_endpoint({"DOCKER_CONFIG": str(tmp_path)})
    assert endpoint.url == DEFAULT_HOST and not endpoint.remote


def test_docker_host_wins(tmp_path: Path) -> None:
    _context(tmp_path, "far", "ssh://gpu-box")
    env = {
        "DOCKER_CONFIG": str(tmp_path),
        "DOCKER_HOST": "tcp://10.0.0.5:2376",
        "DOCKER_CONTEXT": "far",
    }
    endpoint = daemon_endpoint(env)
    assert endpoint.url == "tcp://10.0.0.5:2376" and endpoint.remote


def test_current_context_from_cli_config(tmp_path: Path) -> None:
    _context(tmp_path, "far", "ssh://user@gpu-box")
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "far"}))
    endpoint = daemon_endpoint({"DOCKER_CONFIG": str(tmp_path)})
    assert endpoint.url == "ssh://user@gpu-box" and endpoint.remote
    assert endpoint.context == "far"


def test_rootless_context_is_local(tmp_path: Path) -> None:
    _context(tmp_path, "rootless", "unix:///run/user/1000/docker.sock")
    endpoint = daemon_endpoint({"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "rootless"})
    assert endpoint.url == "unix:///run/user/1000/docker.sock" and not endpoint.remote


def test_damaged_cli_config_falls_back(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes(b"\xff{not json")
    assert daemon_endpoint({"DOCKER_CONFIG": str(tmp_path)}).url == DEFAULT_HOST


def test_a_damaged_cli_config_of_any_shape_falls_back(tmp_path: Path) -> None:
    """The CLI itself warns and uses its default for these: so does llem, without a crash."""
    for config in (
        {"currentContext": 5},
        {"currentContext": ["far"]},
        {"currentContext": None},
        [1, 2],
        "far",
    ):
        (tmp_path / "config.json").write_text(json.dumps(config))
        assert daemon_endpoint({"DOCKER_CONFIG": str(tmp_path)}).url == DEFAULT_HOST, config


def test_a_damaged_context_falls_back(tmp_path: Path) -> None:
    for meta in ({"Endpoints": []}, {"Endpoints": {"docker": {"Host": 5}}}, [], {"Endpoints": 1}):
        name = f"c{abs(hash(json.dumps(meta)))}"
        folder = tmp_path / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text(json.dumps(meta))
        endpoint = daemon_endpoint({"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": name})
        assert endpoint.url == DEFAULT_HOST and endpoint.context == name, meta


def test_the_early_remote_check_agrees_with_the_endpoint(tmp_path: Path) -> None:
    """`daemon_is_remote` decides whether `nvidia-smi -q` starts before the records load: it
    must say what `daemon_endpoint(...).remote` says, for every way of naming a daemon."""
    _context(tmp_path, "far", "ssh://user@gpu-box")
    _context(tmp_path, "rootless", "unix:///run/user/1000/docker.sock")
    envs = [
        {"DOCKER_CONFIG": str(tmp_path)},
        {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "far"},
        {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "rootless"},
        *(
            {"DOCKER_CONFIG": str(tmp_path), "DOCKER_HOST": url}
            for url in (
                "tcp://10.0.0.5:2376",
                "ssh://gpu-box",
                "http://gpu-box:2375",
                "https://gpu-box:2376",
                "unix:///var/run/docker.sock",
                "npipe:////./pipe/docker_engine",
                "fd://",
            )
        ),
    ]
    seen = set()
    for env in envs:
        remote = daemon_endpoint(env).remote
        assert daemon_is_remote(env) is remote, env
        seen.add(remote)
    assert seen == {True, False}


# --- DOCKER_HOST as the docker CLI reads it (github.com/docker/cli, opts/hosts.go) ----------


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("127.0.0.1:2375", "tcp://127.0.0.1:2375"),  # no scheme: tcp
        ("gpu-box", "tcp://gpu-box:2375"),  # no port: 2375
        (":2376", "tcp://localhost:2376"),  # no host: localhost
        ("tcp://", "tcp://localhost:2375"),
        ("tcp://gpu-box:", "tcp://gpu-box:2375"),
        ("[::1]:", "tcp://[::1]:2375"),
        ("::1", "tcp://[::1]:2375"),
        ("tcp://user@gpu-box:2376/base?q=1#f", "tcp://gpu-box:2376/base"),
        (" tcp://10.0.0.5:2376", "tcp://10.0.0.5:2376"),  # blanks around are trimmed
        ("\ttcp://10.0.0.5:2376\n ", "tcp://10.0.0.5:2376"),
        ("\u00a010.0.0.5:2376\u3000", "tcp://10.0.0.5:2376"),
        (" ssh://user@gpu-box ", "ssh://user@gpu-box"),
    ],
)
def test_docker_host_forms_of_a_tcp_or_ssh_daemon_are_remote(
    tmp_path: Path, value: str, url: str
) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_HOST": value}
    endpoint = daemon_endpoint(env)
    assert (endpoint.url, endpoint.error, endpoint.source) == (url, "", "DOCKER_HOST")
    assert endpoint.remote and daemon_is_remote(env)


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("unix:///run/user/1000/docker.sock", "unix:///run/user/1000/docker.sock"),
        (" unix:///run/docker.sock ", "unix:///run/docker.sock"),
        ("unix://", DEFAULT_HOST),
        ("unix://unix:///run/docker.sock", "unix:///run/docker.sock"),
        ("npipe://", "npipe:////./pipe/docker_engine"),
        ("fd://", "fd://"),
        ("fd://3", "fd://3"),
        (" ", DEFAULT_HOST),  # blank but set: the default socket
    ],
)
def test_docker_host_forms_of_a_local_daemon(tmp_path: Path, value: str, url: str) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_HOST": value}
    endpoint = daemon_endpoint(env)
    assert (endpoint.url, endpoint.error) == (url, "")
    assert not endpoint.remote and not daemon_is_remote(env)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("http://gpu-box:2375", "invalid bind address format: http://gpu-box:2375"),
        ("https://gpu-box:2376", "invalid bind address format: https://gpu-box:2376"),
        ("TCP://gpu-box:2375", "invalid bind address format: TCP://gpu-box:2375"),
        ("tcp://a://b", "invalid proto, expected tcp: a://b"),
        ("unix://a://b", "invalid proto, expected unix: a://b"),
        ("127.0.0.1:abc", 'parse "tcp://127.0.0.1:abc": invalid port ":abc" after host'),
        ("gpu box:2375", 'parse "tcp://gpu box:2375": invalid character " " in host name'),
        ("[::1", "parse \"tcp://[::1\": missing ']' in host"),
        ("gpu%zz:1", 'parse "tcp://gpu%zz:1": invalid URL escape "%zz"'),
        ("{x@gpu-box:1", 'parse "tcp://{x@gpu-box:1": net/url: invalid userinfo'),
    ],
)
def test_docker_host_values_the_cli_refuses(tmp_path: Path, value: str, error: str) -> None:
    """The CLI stops with "unable to resolve docker endpoint: ERROR": no daemon is reached,
    remote or local; llem keeps the value as it was given and the CLI's reason."""
    env = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_HOST": value}
    endpoint = daemon_endpoint(env)
    assert (endpoint.url, endpoint.error) == (value, error)
    assert not endpoint.remote and not daemon_is_remote(env)
    assert parse_host(value) == (value, error)


def test_a_blank_docker_host_still_wins_over_the_context(tmp_path: Path) -> None:
    """Any non-empty DOCKER_HOST selects the default context, as in the CLI's
    `resolveContextName`; trimmed to nothing, it is the default socket."""
    _context(tmp_path, "far", "ssh://user@gpu-box")
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "far"}))
    env = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_HOST": "  ", "DOCKER_CONTEXT": "far"}
    endpoint = daemon_endpoint(env)
    assert (endpoint.url, endpoint.context, endpoint.remote) == (DEFAULT_HOST, None, False)
    assert daemon_endpoint({**env, "DOCKER_HOST": ""}).url == "ssh://user@gpu-box"


@pytest.mark.parametrize("tls", ["DOCKER_TLS_VERIFY", "DOCKER_TLS"])
def test_tls_makes_the_default_daemon_tcp_2376(tmp_path: Path, tls: str) -> None:
    for env in (
        {"DOCKER_CONFIG": str(tmp_path), tls: "1"},
        {"DOCKER_CONFIG": str(tmp_path), tls: "1", "DOCKER_HOST": " "},
        {"DOCKER_CONFIG": str(tmp_path), tls: "1", "DOCKER_CONTEXT": "default"},
    ):
        endpoint = daemon_endpoint(env)
        assert (endpoint.url, endpoint.remote) == ("tcp://localhost:2376", True), env
        assert daemon_is_remote(env)
    # A host without a port still gets 2375, TLS or not (ParseTCPAddr's default).
    env = {"DOCKER_CONFIG": str(tmp_path), tls: "1", "DOCKER_HOST": "gpu-box"}
    assert daemon_endpoint(env).url == "tcp://gpu-box:2375"


def test_a_context_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "nope"}
    endpoint = daemon_endpoint(env)
    assert endpoint.context == "nope" and 'context "nope" not found' in endpoint.error
    assert not endpoint.remote and not daemon_is_remote(env)


def test_a_context_host_is_taken_as_written(tmp_path: Path) -> None:
    """The API client takes a context's host as it is (no default scheme or port), so that
    http(s):// is a TCP daemon there, and a host without a scheme is refused."""
    _context(tmp_path, "web", "https://gpu-box:2376")
    _context(tmp_path, "bare", "gpu-box:2375")
    web = daemon_endpoint({"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "web"})
    assert (web.url, web.remote, web.error) == ("https://gpu-box:2376", True, "")
    bare = daemon_endpoint({"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "bare"})
    assert bare.error == "unable to parse docker host `gpu-box:2375`" and not bare.remote


def test_the_daemon_check_names_a_refused_docker_host() -> None:
    endpoint = Endpoint("http://gpu-box:2375", None, "DOCKER_HOST", "invalid bind address format")
    out = "Failed to initialize: unable to resolve docker endpoint: invalid bind address format"
    version = CommandResult(("docker", "version"), 1, "", out)
    host = HostFacts(endpoint, "/usr/bin/docker", version, {}, None, None)
    verdict = verdicts.docker_daemon(host)
    assert verdict.outcome == "failed" and verdict.finding is not None
    assert verdict.finding.cause == "daemon_unreachable"
    assert verdict.finding.message == (
        "DOCKER_HOST='http://gpu-box:2375' is not a daemon address the docker CLI accepts: "
        "invalid bind address format"
    )
    assert "tcp://HOST:PORT" in verdict.finding.fix
    assert verdict.details["remote_daemon"] is False


def test_the_daemon_check_names_a_context_it_cannot_use(tmp_path: Path) -> None:
    endpoint = daemon_endpoint({"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "nope"})
    out = 'Failed to initialize: unable to resolve docker endpoint: context "nope": not found'
    version = CommandResult(("docker", "version"), 1, "", out)
    host = HostFacts(endpoint, "/usr/bin/docker", version, {}, None, None)
    verdict = verdicts.docker_daemon(host)
    assert verdict.finding is not None and verdict.finding.cause == "daemon_unreachable"
    assert verdict.finding.message.startswith(
        'the docker context "nope" (DOCKER_CONTEXT) cannot be used: context "nope" not found'
    )
    assert "docker context ls" in verdict.finding.fix


def test_the_daemon_check_trusts_the_cli_over_the_reading() -> None:
    """Should llem read an address the CLI takes as refused, the CLI's answer decides."""
    endpoint = Endpoint("odd", None, "DOCKER_HOST", "some reason")
    version = CommandResult(("docker", "version"), 0, '{"Server":{"Version":"27.3.1"}}')
    host = HostFacts(endpoint, "/usr/bin/docker", version, {}, None, None)
    assert verdicts.docker_daemon(host).outcome == "passed"


DOCKER = shutil.which("docker")
AGREED_VALUES = [
    "127.0.0.1:2375", " tcp://127.0.0.1:2375", "gpu-box", ":1", "[::1]:", "::1", "tcp://",
    "tcp://h:1/p?q#f", "u@h:1", "unix://", "unix://unix:///x", "npipe://", "fd://", "ssh://u@h",
    " ", "\t", "http://h:1", "foo://x", "tcp://a://b", "127.0.0.1:abc", "a b:1", "a%41:1",
    "a%25:1", "[::1", "[::1]x", "x:1:2", "{x@h:1", "h:1#%zz",
]  # fmt: skip


# Read differently by the docker CLI before 23 (Debian 12's docker.io is 20.10): llem reads as
# the current CLI does, so these are compared with a current one only.
CHANGED_SINCE_20_10 = {"npipe://", "a%25:1"}


def _client_major(docker: str) -> int:
    out = subprocess.run(
        [docker, "version", "--format", "{{.Client.Version}}"],
        env={"PATH": os.environ.get("PATH", "")}, capture_output=True, text=True, timeout=30,
        check=False,
    ).stdout  # fmt: skip
    head = out.strip().split(".")[0]
    return int(head) if head.isascii() and head.isdigit() else 0


@pytest.mark.skipif(DOCKER is None, reason="no docker CLI on PATH")
def test_the_reading_agrees_with_the_docker_cli(tmp_path: Path) -> None:
    """`docker context inspect default` shows the address the CLI makes of DOCKER_HOST, or
    fails where it refuses it: llem reads every value the same way (an older CLI's wording
    differs in case, and two values were read otherwise before 23)."""
    assert DOCKER is not None
    current = _client_major(DOCKER) >= 23
    values = (
        AGREED_VALUES if current else [v for v in AGREED_VALUES if v not in CHANGED_SINCE_20_10]
    )
    assert len(values) >= len(AGREED_VALUES) - len(CHANGED_SINCE_20_10)
    for value in values:
        env = {"PATH": os.environ.get("PATH", ""), "DOCKER_CONFIG": str(tmp_path)}
        env["DOCKER_HOST"] = value
        cli = subprocess.run(
            [DOCKER, "context", "inspect", "default", "--format", "{{.Endpoints.docker.Host}}"],
            env=env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        url, error = parse_host(value)
        if cli.returncode == 0:
            assert (url, error) == (cli.stdout.rstrip("\n"), ""), value
        else:
            assert error and error.lower() in cli.stderr.lower(), (value, cli.stderr)
