"""A remembered probe is as good as a fresh one, or it is not used.

Each test lets the pre-flight remember a passed probe on the real engine, changes one thing
the probe's answer depends on, and sees the next pre-flight start a container again (the
engine's container events say so) and report what that fresh probe found.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from testbed import (
    DEFAULT_GPUS,
    Engine,
    Gpu,
    HostTools,
    ProductRunner,
    ScenarioSetter,
    run,
)
from testbed.preflight import JSON_NAME, PreflightRun, preflight_command, run_preflight

IMAGE = "llem-test/cache:1"
PROBE = f"gpu-in-container[{IMAGE}]"
ALT_RUNC = {"llem-alt": "runc"}  # another name for the engine's own runc: it works


@pytest.fixture(scope="module")
def images(gpu_engine: Engine) -> None:
    gpu_engine.build_image(IMAGE)


@pytest.fixture(scope="module")
def runtime_engine(_engines: list[Engine]) -> Engine:
    """An engine of this module's own, with the fake NVIDIA hook, whose daemon configuration
    (runtimes, default runtime) the tests change."""
    engine = Engine(gpu=True)
    _engines.append(engine)
    engine.start().build_image(IMAGE)
    return engine


def cache_file(host_tools: HostTools) -> Path:
    return Path(host_tools.env()["XDG_CACHE_HOME"]) / "llenergymeasure" / "probes.json"


def preflight(
    run_product: ProductRunner, host_tools: HostTools, env: Mapping[str, str] | None = None
) -> PreflightRun:
    return run_preflight(run_product, host_tools.work, "--llem-image", IMAGE, env=env)


def probed(engine: Engine, run_it: Callable[[], PreflightRun]) -> tuple[PreflightRun, bool]:
    """The run, and whether it started a container on ``engine``."""
    since = time.time()
    result = run_it()
    return result, bool(engine.created_since(since))


def remember(engine: Engine, run_it: Callable[[], PreflightRun]) -> PreflightRun:
    """A fresh probe that passes, and one that is then remembered (no container started)."""
    first, started = probed(engine, run_it)
    assert first.returncode == 0, first.describe()
    assert first.check(PROBE)["cached"] is False and started
    second, started = probed(engine, run_it)
    assert second.returncode == 0, second.describe()
    assert second.check(PROBE)["cached"] is True and not started, "the probe was not remembered"
    return second


def assert_probed_afresh(run: PreflightRun, started: bool) -> None:
    assert started, f"no container started: a remembered probe answered\n{run.describe()}"
    assert run.check(PROBE)["cached"] is False, run.describe()


@pytest.mark.parametrize(
    "gpus",
    [
        DEFAULT_GPUS[:1],
        (DEFAULT_GPUS[0], Gpu(DEFAULT_GPUS[1].name, "GPU-0b1d2c3e-4f50-4617-8293-a4b5c6d7e8f9")),
    ],
    ids=["one GPU fewer", "a GPU replaced"],
)
def test_a_changed_gpu_set_is_probed_afresh(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    scenario: ScenarioSetter,
    images: None,
    gpus: tuple[Gpu, ...],
) -> None:
    """The remembered answer (two GPUs) is not compared with the new host: a healthy host
    passes with what a fresh probe sees."""
    remember(gpu_engine, lambda: preflight(run_product, host_tools))
    scenario(gpus=gpus)
    run, started = probed(gpu_engine, lambda: preflight(run_product, host_tools))
    assert run.returncode == 0, run.describe()
    assert set(run.outcomes.values()) == {"passed"}, run.describe()
    assert_probed_afresh(run, started)
    seen = [gpu["uuid"] for gpu in run.check(PROBE)["details"]["gpus"]]
    assert seen == [gpu.uuid for gpu in gpus]


def test_a_changed_driver_is_probed_afresh(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    scenario: ScenarioSetter,
    images: None,
) -> None:
    remember(gpu_engine, lambda: preflight(run_product, host_tools))
    scenario(driver_version="550.90.07")
    run, started = probed(gpu_engine, lambda: preflight(run_product, host_tools))
    assert run.returncode == 0, run.describe()
    assert_probed_afresh(run, started)
    assert run.check(PROBE)["details"]["driver_version"] == "550.90.07"


@pytest.mark.parametrize(
    ("before", "after", "outcome"),
    [
        ({}, {"runtimes": ALT_RUNC}, "passed"),
        ({"runtimes": ALT_RUNC}, {"runtimes": ALT_RUNC, "default_runtime": "llem-alt"}, "passed"),
        # The engine's containers cannot start any more: a fresh probe says so.
        ({}, {"runtimes": {"broken": "/bin/false"}, "default_runtime": "broken"}, "failed"),
    ],
    ids=["another runtime", "another default runtime", "a broken default runtime"],
)
def test_a_changed_engine_runtime_setup_is_probed_afresh(
    run_product: ProductRunner,
    host_tools: HostTools,
    runtime_engine: Engine,
    before: dict[str, Any],
    after: dict[str, Any],
    outcome: str,
) -> None:
    env = host_tools.env(runtime_engine)
    runtime_engine.reconfigure(**before)
    try:
        remember(runtime_engine, lambda: preflight(run_product, host_tools, env))
        runtime_engine.reconfigure(**after)
        run, started = probed(runtime_engine, lambda: preflight(run_product, host_tools, env))
    finally:
        runtime_engine.reconfigure()
    assert_probed_afresh(run, started)
    assert run.outcomes[PROBE] == outcome, run.describe()


@pytest.mark.parametrize("other", ["device=0", "device=1", "device=0,1"])
def test_another_gpu_request_is_not_answered_by_a_remembered_probe(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    images: None,
    other: str,
) -> None:
    """What was remembered for `--gpus all` does not answer `--gpus device=...`: the study's
    `gpus:` changed, and the probe makes the new request, in a container of its own."""
    remember(gpu_engine, lambda: preflight(run_product, host_tools))
    devices = other.removeprefix("device=")
    run, started = probed(
        gpu_engine,
        lambda: run_preflight(
            run_product, host_tools.work, "--llem-image", IMAGE, "--llem-gpus", devices
        ),
    )
    assert run.returncode == 0, run.describe()
    assert_probed_afresh(run, started)
    probe = run.check(PROBE)["details"]
    assert probe["gpu_request"] == f"--gpus {other}"
    wanted = [DEFAULT_GPUS[int(i)].uuid for i in devices.split(",")]
    assert [gpu["uuid"] for gpu in probe["gpus"]] == wanted


@pytest.mark.parametrize(
    ("stored", "expires"),
    [(86400.0, 86400.0 + 900), (0.0, 86400.0)],
    ids=["stored tomorrow", "living a day"],
)
def test_a_future_dated_entry_is_not_used(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    images: None,
    stored: float,
    expires: float,
) -> None:
    remember(gpu_engine, lambda: preflight(run_product, host_tools))
    path = cache_file(host_tools)
    data = json.loads(path.read_text())
    now = time.time()
    for entry in data["entries"].values():
        entry.update(stored=now + stored, expires=now + expires)
    path.write_text(json.dumps(data))
    run, started = probed(gpu_engine, lambda: preflight(run_product, host_tools))
    assert run.returncode == 0, run.describe()
    assert_probed_afresh(run, started)
    [entry] = json.loads(path.read_text())["entries"].values()
    assert entry["stored"] <= time.time() < entry["expires"] <= entry["stored"] + 900


def test_a_rebuilt_image_is_probed_afresh(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine
) -> None:
    """The same tag, another image: what was remembered of the old one does not count."""
    image = "llem-test/rebuilt:1"
    probe = f"gpu-in-container[{image}]"
    old_id = gpu_engine.build_image(image, env={"LLEM_BUILD": "1"})

    def run_it() -> PreflightRun:
        return run_preflight(run_product, host_tools.work, "--llem-image", image)

    first, started = probed(gpu_engine, run_it)
    assert first.returncode == 0 and started, first.describe()
    second, started = probed(gpu_engine, run_it)
    assert second.check(probe)["cached"] is True and not started, second.describe()
    new_id = gpu_engine.build_image(image, env={"LLEM_BUILD": "2"})
    assert new_id != old_id
    run, started = probed(gpu_engine, run_it)
    assert run.returncode == 0, run.describe()
    assert started and run.check(probe)["cached"] is False, run.describe()


# --- the toolkit's config file, seen through a private /etc ---------------------------------

# Runs a command with /etc overlaid in a mount namespace of its own, so that
# /etc/nvidia-container-runtime/config.toml holds $2 for that command alone: nothing of this
# machine's /etc changes.
_OWN_ETC = r"""set -e
product_path=$PATH
PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t tmpfs llem-etc "$1"
mkdir "$1/upper" "$1/work"
mount -t overlay llem-etc -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc
mkdir -p /etc/nvidia-container-runtime
printf '%s' "$2" > /etc/nvidia-container-runtime/config.toml
shift 2
PATH=$product_path
exec "$@"
"""
UNSHARE = shutil.which("unshare", path="/usr/bin:/bin:/usr/sbin:/sbin")


def with_toolkit_config(cmd: Sequence[str], config: str, scratch: Path) -> list[str]:
    """``cmd`` run where the toolkit's config file holds ``config``."""
    assert UNSHARE is not None
    scratch.mkdir(exist_ok=True)
    shell = ["/bin/sh", "-c", _OWN_ETC, "sh", str(scratch), config]
    return [UNSHARE, "-m", "--propagation", "private", *shell, *cmd]


@functools.cache
def own_etc_unavailable_reason() -> str | None:
    if UNSHARE is None:
        return "no unshare(1) here"
    with tempfile.TemporaryDirectory() as scratch:
        cmd = with_toolkit_config(
            ["cat", "/etc/nvidia-container-runtime/config.toml"], "probe", Path(scratch) / "etc"
        )
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"no private /etc here: {exc}"
    if done.returncode != 0 or done.stdout != "probe":
        return f"no private /etc here: {done.stderr.strip()}"
    return None


def test_a_changed_toolkit_config_is_probed_afresh(
    host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    reason = own_etc_unavailable_reason()
    if reason:
        pytest.skip(reason)
    env = host_tools.env(gpu_engine)
    cmd = preflight_command("--llem-image", IMAGE)
    report = host_tools.work / JSON_NAME

    def run_with(config: str) -> Callable[[], PreflightRun]:
        def run_it() -> PreflightRun:
            report.unlink(missing_ok=True)
            began = time.monotonic()
            done = run(
                with_toolkit_config(cmd, config, host_tools.root / "etc"),
                env,
                timeout=120,
                cwd=host_tools.work,
            )
            assert report.is_file(), done.stdout + done.stderr
            return PreflightRun(done, json.loads(report.read_text()), time.monotonic() - began)

        return run_it

    remember(gpu_engine, run_with('[nvidia-container-cli]\nldconfig = "@/sbin/ldconfig"\n'))
    changed = '[nvidia-container-cli]\nldconfig = "@/sbin/ldconfig"\nno-cgroups = true\n'
    result, started = probed(gpu_engine, run_with(changed))
    assert result.returncode == 0, result.describe()
    assert_probed_afresh(result, started)


@pytest.fixture(autouse=True)
def _no_runtime_engine_container(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "runtime_engine" in request.fixturenames:
        engine: Engine = request.getfixturevalue("runtime_engine")
        assert engine.wait_no_containers() == [], "runtime_engine kept a container"
