"""The test bed itself, proved against the real engine: the other integration tests rely on it."""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest
from testbed import (
    DEFAULT_GPUS,
    DELAY_ENV,
    REQUIREMENT_ERROR,
    Engine,
    Gpu,
    GpuScenario,
    HangingSocket,
    HookBehaviour,
    HostScenario,
    HostTools,
    ProductRunner,
    ScenarioSetter,
    as_user,
    build_workload_image,
    run,
    unsatisfied_requirement,
    user_command,
)

pytestmark = pytest.mark.testbed

IMAGE = "llem-test/base:1"
CUDA_128 = "llem-test/cuda:12.8"
QUERY = ["nvidia-smi", "--query-gpu=index,name,uuid,driver_version", "--format=csv,noheader"]
WRAPPED_REQUIREMENT = (
    "error running hook #0: error running hook: exit status 1, stdout: , stderr: "
    + REQUIREMENT_ERROR.format("cuda>=12.8")
    + ": unknown"
)


@pytest.fixture(scope="module")
def images(gpu_engine: Engine, plain_engine: Engine) -> None:
    for engine in (gpu_engine, plain_engine):
        engine.build_image(IMAGE)
    gpu_engine.build_image(
        CUDA_128,
        env={
            "CUDA_VERSION": "12.8.0",
            "NVIDIA_REQUIRE_CUDA": "cuda>=12.8 brand=tesla,driver>=535,driver<536",
        },
    )


CONTAINER_GRACE_S = 0.0  # the test bed's own operations leave nothing, at once


def gpu_run(engine: Engine, *args: str, image: str = IMAGE) -> subprocess.CompletedProcess[str]:
    return engine.docker("run", "--rm", "--gpus", "all", image, *args, check=False)


# -- requirement semantics, in process ------------------------------------------------------

CUDA_128_REQUIRE = "cuda>=12.8 brand=tesla,driver>=535,driver<536"


@pytest.mark.parametrize(
    ("env", "scenario", "failed"),
    [
        ({"NVIDIA_REQUIRE_CUDA": CUDA_128_REQUIRE}, GpuScenario(), "cuda>=12.8"),
        ({"NVIDIA_REQUIRE_CUDA": CUDA_128_REQUIRE}, GpuScenario(cuda_version="12.8"), None),
        ({"NVIDIA_REQUIRE_CUDA": CUDA_128_REQUIRE}, GpuScenario(driver_version="535.104.05"), None),
        (
            {"NVIDIA_REQUIRE_CUDA": CUDA_128_REQUIRE},
            GpuScenario(driver_version="535.1", brand="geforce"),
            "cuda>=12.8",
        ),
        (
            {"NVIDIA_REQUIRE_CUDA": CUDA_128_REQUIRE, "NVIDIA_DISABLE_REQUIRE": "true"},
            GpuScenario(),
            None,
        ),
        (
            {"NVIDIA_REQUIRE_CUDA": CUDA_128_REQUIRE, "NVIDIA_DISABLE_REQUIRE": "1"},
            GpuScenario(),
            None,
        ),
        (
            {"NVIDIA_REQUIRE_CUDA": "cuda>=12.4", "NVIDIA_REQUIRE_ARCH": "arch>=10.0"},
            GpuScenario(),
            "arch>=10.0",
        ),
        ({"NVIDIA_REQUIRE_DRIVER": "driver!=550.54.15"}, GpuScenario(), "driver!=550.54.15"),
        (
            {"NVIDIA_REQUIRE_X": "brand=TESLA,driver>550.54.14,driver<=550.54.15"},
            GpuScenario(),
            None,
        ),
        ({"CUDA_VERSION": "12.6.3"}, GpuScenario(), "cuda>=12.6"),
        ({"CUDA_VERSION": "12.6.3", "NVIDIA_REQUIRE_CUDA": "cuda>=12.0"}, GpuScenario(), None),
        ({}, GpuScenario(), None),
    ],
)
def test_requirement_semantics(
    env: dict[str, str], scenario: GpuScenario, failed: str | None
) -> None:
    assert unsatisfied_requirement(env, scenario) == failed


# -- the engine ----------------------------------------------------------------------------


def test_gpus_without_hook_is_the_real_driver_error(plain_engine: Engine, images: None) -> None:
    result = gpu_run(plain_engine, "true")
    assert result.returncode == 125
    assert 'could not select device driver "" with capabilities: [[gpu]]' in result.stderr


def test_healthy_scenario_shows_its_gpus(
    gpu_engine: Engine, scenario: ScenarioSetter, images: None
) -> None:
    since = time.time()
    result = gpu_run(gpu_engine, *QUERY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{i}, {gpu.name}, {gpu.uuid}, 550.54.15" for i, gpu in enumerate(GpuScenario().gpus)
    ]
    [call] = gpu_engine.hook_calls(since)
    assert call["env"]["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert len(gpu_engine.created_since(since)) == 1


def test_scenario_changes_what_containers_see(
    gpu_engine: Engine, scenario: ScenarioSetter, images: None
) -> None:
    scenario(
        driver_version="535.104.05",
        cuda_version="12.2",
        gpus=(Gpu("NVIDIA A100-SXM4-80GB", "GPU-a1"),),
    )
    assert gpu_run(gpu_engine, *QUERY).stdout == "0, NVIDIA A100-SXM4-80GB, GPU-a1, 535.104.05\n"
    banner = gpu_run(gpu_engine, "nvidia-smi").stdout
    assert "Driver Version: 535.104.05" in banner and "CUDA Version: 12.2" in banner


def test_visible_devices_select_gpus(
    gpu_engine: Engine, scenario: ScenarioSetter, images: None
) -> None:
    one = gpu_engine.docker(
        "run", "--rm", "--gpus", "device=1", IMAGE, "nvidia-smi", "-L", check=False
    )
    assert (
        one.stdout == f"GPU 0: {GpuScenario().gpus[1].name} (UUID: {GpuScenario().gpus[1].uuid})\n"
    )
    scenario(gpus=())
    none = gpu_run(gpu_engine, "nvidia-smi")
    assert (none.returncode, none.stdout) == (6, "No devices were found\n")


def test_cuda_requirement_fails_with_the_real_message(
    gpu_engine: Engine, scenario: ScenarioSetter, images: None
) -> None:
    result = gpu_run(gpu_engine, "true", image=CUDA_128)
    assert result.returncode == 125
    assert WRAPPED_REQUIREMENT in result.stderr


def test_brand_exemption(gpu_engine: Engine, scenario: ScenarioSetter, images: None) -> None:
    scenario(driver_version="535.104.05", cuda_version="12.2")
    assert gpu_run(gpu_engine, *QUERY, image=CUDA_128).returncode == 0
    scenario(driver_version="535.104.05", cuda_version="12.2", brand="geforce")
    assert WRAPPED_REQUIREMENT in gpu_run(gpu_engine, "true", image=CUDA_128).stderr


def test_fail_mode_passes_its_message(
    gpu_engine: Engine, scenario: ScenarioSetter, images: None
) -> None:
    message = "nvidia-container-cli: initialization error: nvml error: driver not loaded"
    scenario(hook=HookBehaviour(mode="fail", message=message))
    result = gpu_run(gpu_engine, "true")
    assert result.returncode == 125
    assert f"stderr: {message}: unknown" in result.stderr


def test_garbage_mode(gpu_engine: Engine, scenario: ScenarioSetter, images: None) -> None:
    scenario(hook=HookBehaviour(mode="garbage", garbage_bytes=5000))
    result = gpu_engine.docker("run", "--rm", "--gpus", "all", IMAGE, "true", check=False)
    assert result.returncode == 125
    assert "\ufffd" * 100 in result.stderr


def test_sleep_mode_sleeps_after_the_delay(
    gpu_engine: Engine, scenario: ScenarioSetter, images: None
) -> None:
    scenario(hook=HookBehaviour(mode="sleep", sleep_s=1.0, delay_s=0.5))
    start = time.monotonic()
    result = gpu_run(gpu_engine, *QUERY)
    assert result.returncode == 0
    assert time.monotonic() - start >= 1.5


@pytest.mark.parametrize(
    ("container_smi", "code", "text"),
    [
        ("missing", 127, 'exec: "nvidia-smi": executable file not found in $PATH'),
        ("nvml_unknown", 255, "Failed to initialize NVML: Unknown Error"),
    ],
)
def test_container_smi_failures(
    gpu_engine: Engine,
    scenario: ScenarioSetter,
    images: None,
    container_smi: str,
    code: int,
    text: str,
) -> None:
    scenario(container_smi=container_smi)
    result = gpu_run(gpu_engine, "nvidia-smi")
    assert result.returncode == code
    assert text in result.stdout + result.stderr


def test_private_engine_life_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook gets the daemon's environment; stop() leaves no process, mount or directory."""
    monkeypatch.setenv(DELAY_ENV, "0.5")
    engine = Engine(gpu=True).start()
    engine.build_image(IMAGE)
    start = time.monotonic()
    assert engine.docker("run", "--rm", "--gpus", "all", IMAGE, "true").returncode == 0
    assert time.monotonic() - start >= 0.5
    engine.docker("run", "-d", IMAGE, "sleep", "300")
    assert engine.leftover_pids() and engine.mounts()
    engine.stop()
    assert engine.leftover_pids() == []
    assert engine.mounts() == []
    assert not engine.dir.exists()


# -- images --------------------------------------------------------------------------------


def test_build_image_keeps_env_literal(gpu_engine: Engine) -> None:
    env = {"NVIDIA_REQUIRE_CUDA": CUDA_128_REQUIRE, "ODD": 'a $HOME "quoted" b'}
    gpu_engine.build_image("llem-test/env:1", env=env, files={"/etc/motd": "hello\n"})
    inspected = gpu_engine.docker(
        "image", "inspect", "llem-test/env:1", "--format", "{{json .Config.Env}}"
    )
    assert {f"{k}={v}" for k, v in env.items()} <= set(json.loads(inspected.stdout))
    assert (
        gpu_engine.docker("run", "--rm", "llem-test/env:1", "cat", "/etc/motd").stdout == "hello\n"
    )


@pytest.mark.parametrize(
    ("content", "code", "written"), [("{}", 0, "result"), ('{"x": "fail-me"}', 3, "error")]
)
def test_workload_image(
    gpu_engine: Engine, tmp_path: Path, content: str, code: int, written: str
) -> None:
    build_workload_image(gpu_engine, "llem-test/workload:1")
    (tmp_path / "001_config.json").write_text(content)
    result = gpu_engine.docker(
        "run", "--rm", "--gpus", "all", "-v", f"{tmp_path}:/run/llem",
        "-e", "LLEM_CONFIG_PATH=/run/llem/001_config.json", "llem-test/workload:1",
        check=False,
    )  # fmt: skip
    assert result.returncode == code, result.stderr
    assert json.loads((tmp_path / f"001_{written}.json").read_text())["config"] == json.loads(
        content
    )


# -- host scenarios ------------------------------------------------------------------------


def test_gpu_states_in_the_real_q_layout() -> None:
    """Each GPU's persistence, MIG, clock events, load and processes, as the capture's lines."""
    from testbed.scenario import GpuProcess, nvidia_smi_script

    first, second = DEFAULT_GPUS
    busy = dataclasses.replace(
        second,
        persistence=False,
        mig=True,
        clock_events=("HW Power Brake Slowdown",),
        utilization_pct=55,
        processes=(GpuProcess(77, "python3", 300),),
    )
    script = nvidia_smi_script(GpuScenario(gpus=(first, busy), arch="6.1"))
    text = subprocess.run(["sh", "-c", script, "nvidia-smi", "-q"], capture_output=True, text=True)
    _, one, two = text.stdout.split("\nGPU 0000")
    width = 55
    assert f"    {'Persistence Mode':<{width - 4}}: Enabled" in one
    assert f"    {'Persistence Mode':<{width - 4}}: Disabled" in two
    assert f"        {'Current':<{width - 8}}: Enabled" in two
    assert f"            {'HW Power Brake Slowdown':<{width - 12}}: Active" in two
    assert f"        {'Idle':<{width - 8}}: Not Active" in two
    assert f"        {'GPU':<{width - 8}}: 55 %" in two
    assert f"        {'Process ID':<{width - 8}}: 77\n" in two
    assert f"            {'Used GPU Memory':<{width - 12}}: 300 MiB" in two
    assert f"    {'Product Architecture':<{width - 4}}: Pascal" in one
    assert f"    {'Processes':<{width - 4}}: None" in one


def test_host_tools_are_healthy_by_default(host_tools: HostTools, gpu_engine: Engine) -> None:
    env = host_tools.env(gpu_engine)
    assert env["PATH"] == str(host_tools.bin)
    assert host_tools.tools() == [
        "docker",
        "nvidia-container-cli",
        "nvidia-container-runtime",
        "nvidia-ctk",
        "nvidia-smi",
    ]
    query = run(["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"], env)
    assert query.stdout.splitlines()[0] == "550.54.15, NVIDIA H100 80GB HBM3"
    full = run(["nvidia-smi", "-q"], env).stdout
    # The layout of the real driver 580 capture (':' at column 55), the scenario's values in it.
    assert "    Product Brand                                      : Tesla\n" in full
    assert "    Product Architecture                               : Hopper\n" in full
    assert "    Processes                                          : None\n" in full
    assert full.count("\nGPU 0000") == 2
    ctk = run(["nvidia-ctk", "--version"], env).stdout
    assert ctk.startswith("NVIDIA Container Toolkit CLI version 1.14.3\ncommit: ")
    for cli in ("/usr/bin/docker", "/usr/local/bin/docker"):
        host_tools.use_docker(cli)
        assert (
            run(["docker", "version", "--format", "{{.Server.Version}}"], env).stdout.strip()
            == gpu_engine.server_version
        )


@pytest.mark.parametrize(
    ("state", "code", "first_line"),
    [
        (
            "driver_not_loaded",
            9,
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
        ),
        ("nvml_mismatch", 18, "Failed to initialize NVML: Driver/library version mismatch"),
        ("no_devices", 6, "No devices were found"),
    ],
)
def test_host_nvidia_smi_failures(
    host_tools: HostTools, state: str, code: int, first_line: str
) -> None:
    host_tools.use_nvidia_smi(state)  # type: ignore[arg-type]
    result = run(["nvidia-smi"], host_tools.env())
    assert result.returncode == code
    assert result.stdout.startswith(first_line)


def test_host_without_tools(host_tools: HostTools) -> None:
    host_tools.use_docker(None)
    host_tools.use_nvidia_smi("missing")
    host_tools.use_toolkit([])
    assert host_tools.tools() == []
    with pytest.raises(FileNotFoundError):
        run(["docker", "version"], host_tools.env())


def test_daemon_down(host_tools: HostTools) -> None:
    result = run(["docker", "version"], host_tools.env(docker_host=host_tools.dead_docker_host))
    assert result.returncode == 1
    assert "Cannot connect to the Docker daemon at unix://" in result.stderr


def test_socket_permission_denied(host_tools: HostTools, gpu_engine: Engine) -> None:
    host_tools.give_to()
    result = as_user(["docker", "version"], host_tools.env(gpu_engine), cwd=host_tools.work)
    assert result.returncode == 1
    assert "permission denied while trying to connect to the Docker daemon socket" in result.stderr


def test_give_to_creates_a_missing_user(host_tools: HostTools) -> None:
    """On a machine that never ran the suite the user does not exist yet: give_to() makes it."""
    user = f"llemfresh{os.getpid() % 100000}"
    subprocess.run(["userdel", user], capture_output=True, check=False)
    try:
        host_tools.give_to(user)
        owner = pwd.getpwnam(user)
        assert (host_tools.work.stat().st_uid, host_tools.home.stat().st_uid) == (
            owner.pw_uid,
            owner.pw_uid,
        )
    finally:
        subprocess.run(["userdel", user], capture_output=True, check=False)


def test_remote_daemon_over_tcp(host_tools: HostTools, gpu_engine: Engine, images: None) -> None:
    host = gpu_engine.enable_tcp()
    env = host_tools.env(docker_host=host)
    assert run(
        ["docker", "run", "--rm", "--gpus", "all", IMAGE, "nvidia-smi", "-L"], env
    ).stdout.startswith("GPU 0:")


@pytest.mark.parametrize(
    ("name", "docker_answer", "host_smi_code"),
    [
        ("healthy", 0, 0),
        ("no_docker", None, 0),
        ("daemon_down", 1, 0),
        ("permission_denied", 1, 0),
        ("remote", 0, None),
        ("toolkit_missing", 0, 0),
        ("smi_missing", 0, None),
        ("driver_not_loaded", 0, 9),
        ("nvml_mismatch", 0, 18),
        ("no_devices", 0, 6),
    ],
)
def test_named_host_scenarios(
    host_tools: HostTools,
    gpu_engine: Engine,
    name: HostScenario,
    docker_answer: int | None,
    host_smi_code: int | None,
) -> None:
    env, user = host_tools.prepare(name, gpu_engine)
    assert ("nvidia-ctk" in host_tools.tools()) == (name not in ("remote", "toolkit_missing"))
    if docker_answer is None:
        assert "docker" not in host_tools.tools()
    else:
        version = ["docker", "version", "--format", "{{.Server.Version}}"]
        result = run(user_command(version) if user else version, env, cwd=host_tools.work)
        assert result.returncode == docker_answer, result.stderr
    if host_smi_code is None:
        assert "nvidia-smi" not in host_tools.tools()
    else:
        assert run(["nvidia-smi"], env).returncode == host_smi_code


def test_hanging_daemon(host_tools: HostTools) -> None:
    with HangingSocket() as hanging, pytest.raises(subprocess.TimeoutExpired):
        run(["docker", "version"], host_tools.env(docker_host=hanging.docker_host), timeout=1)


def test_run_product(run_product: ProductRunner, host_tools: HostTools) -> None:
    (host_tools.work / "test_probe.py").write_text(
        "import os, shutil\n"
        "def test_env():\n"
        "    assert shutil.which('docker') and os.environ['DOCKER_HOST'].startswith('unix://')\n"
    )
    result = run_product(["pytest", "-q", "-p", "no:cacheprovider", "test_probe.py"])
    assert result.returncode == 0, result.stdout + result.stderr
    as_user = run_product(["pytest", "-q", "-p", "no:cacheprovider", "test_probe.py"], user=True)
    assert as_user.returncode == 0, as_user.stdout + as_user.stderr
    assert run_product(["llem", "--version"]).stdout.startswith("llem ")
