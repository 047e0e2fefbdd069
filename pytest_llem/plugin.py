"""pytest hooks of pytest-llem: options, the `preflight` marker, and pre-flight mode.

Without ``--llem-preflight`` only the options and the marker are registered; everything else
lives on `PreflightHooks`, registered for pre-flight sessions alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .context import CheckContext
    from .runtime import Preflight


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llem", "Docker/NVIDIA GPU pre-flight (pytest-llem)")
    group.addoption(
        "--llem-preflight",
        action="store_true",
        default=False,
        help="run the Docker pre-flight checks (and preflight-marked items)",
    )
    group.addoption(
        "--llem-image",
        action="append",
        default=[],
        metavar="IMAGE",
        help="image whose CUDA requirement and GPU access tier 2 checks (repeatable)",
    )
    group.addoption(
        "--llem-config",
        metavar="PATH",
        default=None,
        help="study YAML: its Docker runners' images and docker: settings",
    )
    group.addoption(
        "--llem-skip",
        action="append",
        default=[],
        metavar="ID",
        help="check ids not to run, repeatable or comma-separated; 'all' skips all",
    )
    group.addoption(
        "--llem-json", metavar="PATH", default=None, help="write the JSON report to PATH"
    )
    group.addoption(
        "--llem-no-cache",
        action="store_true",
        default=False,
        help="ignore cached results of earlier GPU probes",
    )
    group.addoption(
        "--llem-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="limit for one container probe (default 30)",
    )
    group.addoption(
        "--llem-pull-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="limit for pulling one image (default 600)",
    )
    group.addoption(
        "--llem-cache-s",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long a passed probe is remembered (default 900, 0 = off)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "preflight(tier=1, id=None): a pytest-llem pre-flight check of the given tier and id",
    )
    if not config.getoption("llem_preflight", False):
        return
    from .runtime import PreflightHooks

    hooks = PreflightHooks(config)
    config.pluginmanager.register(hooks, "llem-preflight")
    if config.pluginmanager.hasplugin("xdist"):
        from .xdist_hooks import XdistHooks

        config.pluginmanager.register(XdistHooks(), "llem-xdist")


@pytest.fixture
def llem(request: pytest.FixtureRequest) -> CheckContext:
    """The pre-flight facts and verdict helpers for the current check."""
    from .runtime import PREFLIGHT_KEY

    preflight: Preflight | None = request.config.stash.get(PREFLIGHT_KEY, None)
    if preflight is None:
        pytest.skip("pytest-llem checks run only with --llem-preflight")
    return preflight.context(request.node)
