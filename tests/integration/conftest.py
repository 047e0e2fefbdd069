"""Fixtures of the end-to-end suite: real private Docker engines around a simulated GPU host."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # makes `testbed` importable

from testbed import (
    Engine,
    GpuScenario,
    HostTools,
    ProductRunner,
    ScenarioSetter,
    engine_unavailable_reason,
    run,
    user_command,
)

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.testbed)


class _UnavailableModule(pytest.Module):
    """A test module of this suite where no engine can be had: skipped, or failed under CI."""

    def collect(self) -> list[pytest.Item | pytest.Collector]:
        reason = engine_unavailable_reason() or "no engine"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the engine test bed is required)", pytrace=False)
        pytest.skip(reason)


def pytest_pycollect_makemodule(
    module_path: Path, parent: pytest.Collector
) -> pytest.Module | None:
    """Skip the whole suite with one reason where no engine can be had."""
    if engine_unavailable_reason() is None:
        return None
    return _UnavailableModule.from_parent(parent, path=module_path)


@pytest.fixture(scope="session", autouse=True)
def _engines() -> Iterator[list[Engine]]:
    """Every engine of the session; after all of them stopped, none may have left a process."""
    engines: list[Engine] = []
    yield engines
    for engine in engines:
        engine.stop()
    left = {str(e.dir): e.leftover_pids() for e in engines}
    assert not any(left.values()), f"engines left processes behind: {left}"
    assert not [e.dir for e in engines if e.dir.exists()], "engines left their directories"


@pytest.fixture(scope="session")
def gpu_engine(_engines: list[Engine]) -> Engine:
    """A dockerd with the fake NVIDIA hook; its scenario is reset by the `scenario` fixture."""
    engine = Engine(gpu=True)
    _engines.append(engine)
    return engine.start()


@pytest.fixture(scope="session")
def plain_engine(_engines: list[Engine]) -> Engine:
    """A dockerd without NVIDIA support: `--gpus` fails as on a host without the toolkit."""
    engine = Engine(gpu=False)
    _engines.append(engine)
    return engine.start()


@pytest.fixture(autouse=True)
def _no_container_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test, no engine it used keeps a container. A module's CONTAINER_GRACE_S (default
    30 s) is how long a detached `docker rm -f` may take to finish."""
    yield
    grace = getattr(request.module, "CONTAINER_GRACE_S", 30.0)
    for name in ("gpu_engine", "plain_engine"):
        if name in request.fixturenames:
            engine: Engine = request.getfixturevalue(name)
            assert engine.wait_no_containers(timeout=grace) == [], f"{name} kept a container"


@pytest.fixture(scope="session")
def _host_base() -> Iterator[Path]:
    """A directory that the non-root test user can traverse (pytest's tmp_path is root-only)."""
    base = Path(tempfile.mkdtemp(prefix="llem-host-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def host_tools(_host_base: Path) -> Iterator[HostTools]:
    """A healthy host for one test: docker, nvidia-smi and the NVIDIA toolkit on its PATH."""
    root = Path(tempfile.mkdtemp(dir=_host_base))
    root.chmod(0o755)
    yield HostTools(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def scenario(gpu_engine: Engine, host_tools: HostTools) -> Iterator[ScenarioSetter]:
    """`scenario(**changes)` shows a GPU scenario on the engine and the host tools alike.

    The engine is back to the healthy scenario after the test.
    """

    def apply(base: GpuScenario | None = None, /, **changes: Any) -> GpuScenario:
        chosen = dataclasses.replace(base or GpuScenario(), **changes)
        gpu_engine.set_scenario(chosen)
        host_tools.use_scenario(chosen)
        return chosen

    yield apply
    gpu_engine.set_scenario(GpuScenario())


_ENTRY_POINTS = {
    "pytest": [sys.executable, "-m", "pytest"],
    "llem": [sys.executable, "-m", "pytest_llem"],  # what the `llem` console script runs
}


@pytest.fixture
def run_product(request: pytest.FixtureRequest, host_tools: HostTools) -> ProductRunner:
    """Run `["llem", ...]` or `["pytest", ...]` as a subprocess of this interpreter.

    The environment defaults to the healthy host around `gpu_engine`; the working directory to
    `host_tools.work`. `user=True` runs it as the non-root test user.
    """

    def run_it(
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        *,
        user: bool = False,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        program, *rest = args
        cmd = [*_ENTRY_POINTS[program], *rest]
        if env is None:
            env = host_tools.env(request.getfixturevalue("gpu_engine"))
        if user:
            host_tools.give_to()
            cmd = user_command(cmd)
        return run(cmd, env, timeout=timeout, cwd=cwd or host_tools.work)

    return run_it
