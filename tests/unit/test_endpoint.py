"""Which daemon the docker CLI will talk to: DOCKER_HOST, DOCKER_CONTEXT, the current context."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pytest_llem.host.docker import DEFAULT_HOST, daemon_endpoint, daemon_is_remote


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
