"""Input that cannot become an argument, an environment value, a file or a container name is
refused with the study: exit 2, one line naming the field, before the pre-flight starts
anything (no container created, no run directory)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from testbed import Engine, HostTools, ProductRunner, build_workload_image

WORKLOAD = "llem-test/workload:1"
# Records the directory it runs in.
WHERE = """\
import json, os
config = json.load(open(os.environ["LLEM_CONFIG_PATH"]))
json.dump({"cwd": os.getcwd()}, open(config["result_path"], "w"))
"""


@pytest.fixture(scope="module")
def images(gpu_engine: Engine) -> None:
    build_workload_image(gpu_engine, WORKLOAD)


def study(*experiments: str, name: str = "v") -> str:
    lines = "".join(f"  - {e}\n" for e in experiments)
    return (
        f"name: {json.dumps(name)}\nrunners: {{vllm: 'docker:{WORKLOAD}', pytorch: local}}\n"
        f"experiments:\n{lines}"
    )


PLAIN = "{model: m, backend: vllm}"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            study('{model: m, backend: pytorch, command: ["echo", "a\\0b"]}', PLAIN),
            "study.yaml: experiments.0.command.1: contains a NUL byte",
        ),
        (
            study('{model: m, backend: vllm, command: ["/bin/sh", "\\udcff"]}', PLAIN),
            "study.yaml: experiments.0.command.1: contains bytes that are not valid UTF-8",
        ),
        (
            study('{model: "m\\0", backend: vllm}'),
            "study.yaml: experiments.0.model: contains a NUL byte",
        ),
        (
            study('{model: m, backend: vllm, params: {"k\\0": 1}}'),
            "study.yaml: experiments.0.params: key 'k\\x00' contains a NUL byte",
        ),
        (
            study(PLAIN, name="s" * 300),
            "study.yaml: name: too long to name a run directory (300 characters after unsafe "
            "ones are replaced; at most 232)",
        ),
    ],
    ids=["nul-in-command", "undecodable-command", "nul-in-model", "nul-in-params-key", "long-name"],
)
def test_a_study_that_cannot_be_dispatched_is_refused_before_anything_runs(
    run_product: ProductRunner,
    host_tools: HostTools,
    gpu_engine: Engine,
    images: None,
    body: str,
    message: str,
) -> None:
    (host_tools.work / "study.yaml").write_text(body)
    since = time.time()
    result = run_product(["llem", "run", "study.yaml"])
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"llem: error: {message}\n"
    assert gpu_engine.created_since(since) == []
    assert not (host_tools.work / "llem-runs").exists()


def test_undecodable_bytes_in_model_are_refused(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine
) -> None:
    result = run_product(
        ["llem", "run", "--model", "m\udcff", "--backend", "vllm", "--runner", "vllm=local"]
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == "llem: error: --model: contains bytes that are not valid UTF-8\n"


@pytest.mark.parametrize("index", ["²", "١", "0,²"])
def test_gpu_indices_are_ascii_digits(
    run_product: ProductRunner, host_tools: HostTools, index: str
) -> None:
    shown = repr(index.split(",")[-1])
    llem = run_product(["llem", "preflight", "--gpus", index])
    assert llem.returncode == 2, llem.stderr
    assert f"--gpus: expected GPU indices (0, 1, ...), got {shown}" in llem.stderr
    pytest_run = run_product(["pytest", "--llem-preflight", f"--llem-gpus={index}"])
    assert pytest_run.returncode == 4, pytest_run.stdout + pytest_run.stderr
    assert f"--llem-gpus: expected GPU indices (0, 1, ...), got {shown}" in pytest_run.stderr
    assert "INTERNALERROR" not in pytest_run.stdout + pytest_run.stderr


def test_a_study_read_from_a_pipe_runs_its_commands_in_the_callers_directory(
    host_tools: HostTools,
) -> None:
    (host_tools.work / "where.py").write_text(WHERE)
    experiment = {"model": "m", "backend": "pytorch", "command": [sys.executable, "where.py"]}
    body = f"name: piped\nrunners: {{pytorch: local}}\nexperiments:\n  - {json.dumps(experiment)}\n"
    for source in ("/dev/stdin", "/dev/fd/0"):
        result = subprocess.run(
            [sys.executable, "-m", "pytest_llem", "run", source, "--skip-preflight",
             "--output", "out", "--overwrite"],
            input=body, capture_output=True, text=True, env=host_tools.env(),
            cwd=host_tools.work, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        manifest = json.loads((host_tools.work / "out" / "manifest.json").read_text())
        assert manifest["experiments"][0]["result"] == {"cwd": str(host_tools.work)}, source
