"""`llem run` end to end against real Docker engines around a simulated GPU host."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from testbed import (
    Engine,
    HookBehaviour,
    HostTools,
    ProductRunner,
    ScenarioSetter,
    build_workload_image,
)

WORKLOAD = "llem-test/workload:1"
DRIVER_NOT_LOADED = "nvidia-container-cli: initialization error: nvml error: driver not loaded"
# A local experiment: writes its result beside the config llem wrote.
LOCAL_WORKLOAD = """\
import json, os
config = json.load(open(os.environ["LLEM_CONFIG_PATH"]))
json.dump({"energy_j": 3.0, "cwd": os.getcwd()}, open(config["result_path"], "w"))
"""


@pytest.fixture(scope="module")
def images(gpu_engine: Engine, plain_engine: Engine) -> None:
    for engine in (gpu_engine, plain_engine):
        build_workload_image(engine, WORKLOAD)


def write_study(host_tools: HostTools, body: str, name: str = "study.yaml") -> Path:
    path = host_tools.work / name
    path.write_text(body)
    return path


def docker_study(*experiments: str, extra: str = "") -> str:
    lines = "".join(f"  - {e}\n" for e in experiments)
    return f"name: e2e\nrunners: {{vllm: 'docker:{WORKLOAD}'}}\n{extra}experiments:\n{lines}"


def created_names(engine: Engine, since: float) -> list[str]:
    """Names of the containers the engine created from ``since`` on."""
    out = engine.docker(
        "events", f"--since={since:.6f}", f"--until={time.time():.6f}",
        "--filter=type=container", "--filter=event=create",
        "--format={{.Actor.Attributes.name}}",
    ).stdout  # fmt: skip
    return out.split()


def manifest_of(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    return data


def only_run_dir(host_tools: HostTools) -> Path:
    [run_dir] = (host_tools.work / "llem-runs").iterdir()
    return run_dir


def progress_only(stderr: str) -> None:
    """stderr holds llem's progress lines and its summary, nothing of the pre-flight."""
    *progress, summary = stderr.splitlines()
    assert all(line.startswith("llem: [") for line in progress), stderr
    assert summary.startswith("llem: 2 of 2 experiment(s) ok; manifest: "), stderr


# -- healthy ---------------------------------------------------------------------------------


def test_healthy_run(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    write_study(
        host_tools,
        docker_study("{model: m1, backend: vllm}", "{model: m2, backend: vllm, id: second}"),
    )
    since = time.time()
    result = run_product(["llem", "run", "study.yaml"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    progress_only(result.stderr)
    run_dir = only_run_dir(host_tools)
    assert run_dir.name.startswith("e2e-")
    manifest = manifest_of(run_dir)
    assert manifest["study"] == "e2e"
    assert [(e["id"], e["status"], e["runner"], e["image"]) for e in manifest["experiments"]] == [
        ("001", "ok", "docker", WORKLOAD),
        ("second", "ok", "docker", WORKLOAD),
    ]
    first = manifest["experiments"][0]
    assert (first["exit_status"], first["result"]["energy_j"]) == (0, 12.5)
    # The workload read the config through the mount, at the path llem gave it.
    assert first["result"]["config"]["result_path"] == "/run/llem/001_result.json"
    assert json.loads((run_dir / "second_result.json").read_text())["config"]["id"] == "second"
    # llem-<study>-<run id>-<id>, one run id for the whole run
    names = [n for n in created_names(gpu_engine, since) if n.startswith("llem-e2e-")]
    [run_id] = {n.split("-")[2] for n in names}
    assert names == [f"llem-e2e-{run_id}-001", f"llem-e2e-{run_id}-second"]


def test_container_name_is_sanitised(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    write_study(
        host_tools,
        docker_study("{model: m, backend: vllm, id: x.1}").replace(
            "name: e2e", "name: 'my study/ü'"
        ),
    )
    since = time.time()
    result = run_product(["llem", "run", "study.yaml", "--skip-preflight", "--output", "out"])
    assert result.returncode == 0, result.stderr
    [name] = created_names(gpu_engine, since)
    assert re.fullmatch(r"llem-my-study-[0-9a-f]{8}-[0-9a-f]{8}-x\.1", name), name


# -- failures --------------------------------------------------------------------------------


def test_failing_experiment(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    write_study(
        host_tools,
        docker_study(
            "{model: m, backend: vllm, params: {x: fail-me}}", "{model: m2, backend: vllm}"
        ),
    )
    result = run_product(["llem", "run", "study.yaml", "--output", "out"])
    assert result.returncode == 1, result.stderr
    manifest = manifest_of(host_tools.work / "out")
    failed, ok = manifest["experiments"]
    assert (failed["status"], failed["exit_status"]) == ("failed", 3)
    assert failed["cause"] and failed["message"] == "001_error.json: fail-me requested"
    assert ok["status"] == "ok"
    assert (
        "llem-workload: failing as the config asks"
        in (host_tools.work / "out" / "001.log").read_text()
    )


def test_gpu_failure_is_diagnosed(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    scenario: ScenarioSetter,
    images: None,
) -> None:
    scenario(hook=HookBehaviour(mode="fail", message=DRIVER_NOT_LOADED))
    write_study(host_tools, docker_study("{model: m, backend: vllm}"))
    result = run_product(["llem", "run", "study.yaml", "--skip-preflight", "--output", "out"])
    assert result.returncode == 1, result.stderr
    [record] = manifest_of(host_tools.work / "out")["experiments"]
    assert (record["status"], record["exit_status"]) == ("failed", 125)
    assert record["cause"] == "driver_not_loaded"
    assert "[driver_not_loaded]" in result.stderr


# -- runners ---------------------------------------------------------------------------------


def test_local_runner_needs_no_docker(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine
) -> None:
    host_tools.use_docker(None)  # no Docker at all: no pre-flight is due
    (host_tools.work / "sub").mkdir()
    (host_tools.work / "sub" / "w.py").write_text(LOCAL_WORKLOAD)
    write_study(
        host_tools,
        f"name: local\nexperiments:\n  - {{model: gpt2, backend: pytorch, "
        f"command: [{sys.executable}, w.py]}}\n",
        name="sub/study.yaml",
    )
    since = time.time()
    result = run_product(["llem", "run", "sub/study.yaml", "--output", "out"])
    assert result.returncode == 0, result.stderr
    [record] = manifest_of(host_tools.work / "out")["experiments"]
    assert (record["runner"], record["status"], record["image"]) == ("local", "ok", None)
    assert record["result"]["cwd"] == str(host_tools.work / "sub")
    assert gpu_engine.created_since(since) == []


def test_env_runner_override(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    write_study(host_tools, "name: e\nexperiments: [{model: m, backend: vllm}]\n")
    env = host_tools.env(gpu_engine, extra={"LLEM_RUNNER_VLLM": f"docker:{WORKLOAD}"})
    result = run_product(["llem", "run", "study.yaml", "--output", "out"], env=env)
    assert result.returncode == 0, result.stderr
    assert manifest_of(host_tools.work / "out")["experiments"][0]["image"] == WORKLOAD


# -- dry run and skips -----------------------------------------------------------------------


def test_dry_run_dispatches_nothing(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    write_study(host_tools, docker_study("{model: m, backend: vllm}"))
    since = time.time()
    result = run_product(["llem", "run", "study.yaml", "--dry-run"])
    assert result.returncode == 0, result.stderr
    assert "pre-flight" not in result.stderr
    assert not (host_tools.work / "llem-runs").exists()
    assert not any(name.startswith("llem-e2e-") for name in created_names(gpu_engine, since))


def split_imports(stderr: str) -> tuple[set[str], str]:
    """The top-level modules `PYTHONPROFILEIMPORTTIME` reported, and the rest of stderr."""
    imported, rest = set(), []
    for line in stderr.splitlines(keepends=True):
        if line.startswith("import time:"):
            imported.add(line.rsplit("|", 1)[-1].strip().split(".")[0])
        else:
            rest.append(line)
    return imported, "".join(rest)


def test_remembered_dry_run_still_runs_the_preflight(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    plain_engine: Engine,
    images: None,
) -> None:
    """An unchanged study's dry run replays its plan without pydantic; the pre-flight runs."""
    write_study(host_tools, docker_study("{model: m, backend: vllm}"))
    first = run_product(["llem", "run", "study.yaml", "--dry-run"])
    assert first.returncode == 0, first.stderr
    profile = {"PYTHONPROFILEIMPORTTIME": "1"}

    again = run_product(
        ["llem", "run", "study.yaml", "--dry-run"], env=host_tools.env(gpu_engine, extra=profile)
    )
    imported, said = split_imports(again.stderr)
    assert again.returncode == 0, said
    assert said == first.stderr
    assert "pytest" in imported and "pydantic" not in imported

    unfit = run_product(
        ["llem", "run", "study.yaml", "--dry-run"], env=host_tools.env(plain_engine, extra=profile)
    )
    imported, said = split_imports(unfit.stderr)
    assert unfit.returncode == 1, said
    assert said.startswith("Docker pre-flight failed: 1 issue(s) found\n"), said
    assert "could not select device driver" in said, said
    assert "llem: dry run:" not in said
    assert "pydantic" not in imported


def test_remembered_dry_run_keeps_the_skip_line(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    write_study(
        host_tools,
        docker_study("{model: m, backend: vllm}", extra="execution: {skip_preflight: true}\n"),
    )
    first = run_product(["llem", "run", "study.yaml", "--dry-run"])
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines()[0] == (
        "llem: warning: Docker pre-flight skipped (execution.skip_preflight in study.yaml)"
    )
    again = run_product(
        ["llem", "run", "study.yaml", "--dry-run"],
        env=host_tools.env(gpu_engine, extra={"PYTHONPROFILEIMPORTTIME": "1"}),
    )
    imported, said = split_imports(again.stderr)
    assert again.returncode == 0 and said == first.stderr
    assert "pydantic" not in imported and "pytest" not in imported


def test_yaml_skip_is_obeyed_and_announced(
    run_product: ProductRunner, host_tools: HostTools, plain_engine: Engine, images: None
) -> None:
    write_study(
        host_tools,
        docker_study("{model: m, backend: vllm}", extra="execution: {skip_preflight: true}\n"),
    )
    result = run_product(
        ["llem", "run", "study.yaml", "--output", "out"], env=host_tools.env(plain_engine)
    )
    # No pre-flight: the experiment itself meets the engine without GPU support.
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        "llem: warning: Docker pre-flight skipped (execution.skip_preflight in study.yaml)"
    )
    [record] = manifest_of(host_tools.work / "out")["experiments"]
    assert record["cause"] == "gpu_driver_not_configured"


def test_no_skip_flag_wins_over_the_yaml(
    run_product: ProductRunner, host_tools: HostTools, plain_engine: Engine, images: None
) -> None:
    write_study(
        host_tools,
        docker_study("{model: m, backend: vllm}", extra="docker: {skip_preflight: true}\n"),
    )
    result = run_product(
        ["llem", "run", "study.yaml", "--no-skip-preflight", "--output", "out"],
        env=host_tools.env(plain_engine),
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Docker pre-flight failed: ")
    assert not (host_tools.work / "out").exists()


def test_skip_flag_wins_over_the_yaml(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    write_study(
        host_tools,
        docker_study("{model: m, backend: vllm}", extra="execution: {skip_preflight: false}\n"),
    )
    result = run_product(["llem", "run", "study.yaml", "--skip-preflight", "--output", "o"])
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == (
        "llem: warning: Docker pre-flight skipped (--skip-preflight)"
    )


# -- pre-flight failures ---------------------------------------------------------------------


def test_engine_without_gpu_support_stops_the_run(
    run_product: ProductRunner, host_tools: HostTools, plain_engine: Engine, images: None
) -> None:
    write_study(host_tools, docker_study("{model: m, backend: vllm}"))
    since = time.time()
    result = run_product(["llem", "run", "study.yaml"], env=host_tools.env(plain_engine))
    assert result.returncode == 1
    assert result.stderr.startswith("Docker pre-flight failed: ")
    assert "  1. [" in result.stderr and "     Fix: " in result.stderr
    assert not (host_tools.work / "llem-runs").exists()
    assert not any(n.startswith("llem-e2e-") for n in created_names(plain_engine, since))


def test_missing_toolkit_starts_no_container(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    host_tools.use_toolkit([])
    write_study(host_tools, docker_study("{model: m, backend: vllm}"))
    since = time.time()
    result = run_product(["llem", "run", "study.yaml"])
    assert result.returncode == 1
    assert "[nvidia-toolkit]" in result.stderr
    assert gpu_engine.created_since(since) == []


def test_incompatible_image_starts_no_container(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    """The probe may start while pytest loads, but never for an image cuda-compat rejects."""
    image = "llem-test/cuda:12.8.1"
    gpu_engine.build_image(
        image,
        {
            "CUDA_VERSION": "12.8.1",
            "NVIDIA_REQUIRE_CUDA": "cuda>=12.8 brand=tesla,driver>=535,driver<536",
        },
    )
    write_study(
        host_tools,
        f"name: e2e\nrunners: {{vllm: 'docker:{image}'}}\n"
        "experiments:\n  - {model: m, backend: vllm}\n",
    )
    since = time.time()
    result = run_product(["llem", "run", "study.yaml"])
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("Docker pre-flight failed: 1 issue(s) found\n")
    assert f"  1. [cuda-compat[{image}]] {image} requires CUDA 12.8" in result.stderr
    assert "570." in result.stderr  # the minimum driver for CUDA 12.8
    assert gpu_engine.created_since(since) == []


# -- isolation from the caller's directory ---------------------------------------------------


def test_callers_pytest_settings_do_not_leak_in(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    work = host_tools.work
    (work / "conftest.py").write_text("raise RuntimeError('user conftest imported')\n")
    (work / "pytest.ini").write_text("[pytest]\naddopts = --bogus-option -x\n")
    write_study(host_tools, docker_study("{model: m, backend: vllm}"))
    env = host_tools.env(gpu_engine, extra={"PYTEST_ADDOPTS": "--also-bogus"})
    result = run_product(["llem", "run", "study.yaml", "--output", "out"], env=env)
    assert result.returncode == 0, result.stderr
    assert "pre-flight" not in result.stderr
    assert not (work / ".pytest_cache").exists()
    assert manifest_of(work / "out")["experiments"][0]["status"] == "ok"


# -- interrupts ------------------------------------------------------------------------------


def test_sigterm_removes_the_running_container(
    host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    write_study(host_tools, docker_study("{model: m, backend: vllm, params: {x: sleep-me}}"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_llem", "run", "study.yaml", "--skip-preflight",
         "--output", "out"],
        cwd=host_tools.work, env=host_tools.env(gpu_engine),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not gpu_engine.docker("ps", "-q").stdout.strip():
        assert time.monotonic() < deadline, "the experiment's container never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert gpu_engine.containers() == []
    [record] = manifest_of(host_tools.work / "out")["experiments"]
    assert record["status"] == "interrupted"


def test_run_experiment_raises_docker_error_with_its_diagnosis(
    host_tools: HostTools,
    gpu_engine: Engine,
    scenario: ScenarioSetter,
    images: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from pytest_llem.errors import DockerError
    from pytest_llem.run.config import load_study
    from pytest_llem.run.study import run_experiment

    for key, value in host_tools.env(gpu_engine).items():
        monkeypatch.setenv(key, value)
    scenario(hook=HookBehaviour(mode="fail", message=DRIVER_NOT_LOADED))
    study = load_study(write_study(host_tools, docker_study("{model: m, backend: vllm}")))
    with pytest.raises(DockerError) as info:
        run_experiment(study, study.experiments[0], tmp_path)
    assert info.value.diagnosis.cause == "driver_not_loaded"
    assert info.value.diagnosis.details["image"] == WORKLOAD
