"""Helpers for pytester runs of the plugin: a host with no docker and no NVIDIA tools."""

from __future__ import annotations

import pytest

BUILTINS = (
    "docker-cli,docker-daemon,nvidia-toolkit,host-driver,cuda-compat,gpu-in-container,"
    "gpu-idle,persistence-mode,mig-mode,clock-events,energy-counter,power-limit,gpu-health"
)


@pytest.fixture
def bare_host(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH holds nothing: no docker, no toolkit, no nvidia-smi; caches go to a temp dir."""
    empty = tmp_path_factory.mktemp("emptybin")
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path_factory.mktemp("dockercfg")))
