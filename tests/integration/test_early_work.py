"""Nothing speculative: before a study is valid, only read-only host queries reach the engine.

Every API call llem makes goes through a recording socket in front of the engine, so these
tests see an image inspect or pull, and a container create, whether it succeeds or not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from testbed import Engine, HostTools, ProductRunner, RecordingSocket, build_workload_image

WORKLOAD = "llem-test/workload:1"
VALID = f"""\
name: early
runners: {{vllm: 'docker:{WORKLOAD}'}}
experiments:
  - {{model: m, backend: vllm}}
"""
# Each is a study with a Docker runner whose image exists: only validation can stop it.
INVALID = {
    "unknown key": VALID + "colour: blue\n",
    "backend as a list": VALID.replace("backend: vllm", "backend: [vllm]"),
    "image as a list": VALID.replace(
        "{model: m, backend: vllm}", f"{{model: m, backend: vllm, image: [{WORKLOAD}]}}"
    ),
    "400-digit timeout": VALID + "docker: {probe_timeout_s: " + "9" * 400 + "}\n",
    "timeout out of range": VALID + "docker: {probe_timeout_s: 1e9}\n",
    "alias bomb": VALID.replace(
        "{model: m, backend: vllm}",
        "{model: m, backend: vllm, params: {a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "
        + ", ".join(f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 8))
        + "}}",
    ),
}


@pytest.fixture(scope="module")
def images(gpu_engine: Engine) -> None:
    build_workload_image(gpu_engine, WORKLOAD)


@pytest.fixture
def recorder(gpu_engine: Engine) -> Iterator[RecordingSocket]:
    with RecordingSocket(gpu_engine.unix_socket) as recording:
        yield recording


def llem(
    run_product: ProductRunner, host_tools: HostTools, recorder: RecordingSocket, *args: str
) -> tuple[int, str]:
    result = run_product(["llem", *args], env=host_tools.env(docker_host=recorder.docker_host))
    return result.returncode, result.stderr


def test_the_recording_sees_what_a_valid_study_starts(
    run_product: ProductRunner,
    host_tools: HostTools,
    recorder: RecordingSocket,
    images: None,
) -> None:
    """The control: a valid study's dry run inspects its image and creates its probe."""
    (host_tools.work / "study.yaml").write_text(VALID)
    code, err = llem(run_product, host_tools, recorder, "run", "study.yaml", "--dry-run")
    assert code == 0, err
    touched = recorder.touching_images_or_containers()
    assert any(r.startswith(f"GET /images/{WORKLOAD}/json") for r in touched), touched
    assert any(r.startswith("POST /containers/create") for r in touched), touched


@pytest.mark.parametrize("command", [["run"], ["run", "--dry-run"], ["preflight"]])
@pytest.mark.parametrize("case", sorted(INVALID))
def test_an_invalid_study_starts_nothing(
    run_product: ProductRunner,
    host_tools: HostTools,
    recorder: RecordingSocket,
    images: None,
    case: str,
    command: list[str],
) -> None:
    (host_tools.work / "study.yaml").write_text(INVALID[case])
    code, err = llem(run_product, host_tools, recorder, *command[:1], "study.yaml", *command[1:])
    assert code == 2, err
    assert err.startswith("llem: error: study.yaml") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert recorder.touching_images_or_containers() == []
    assert not (host_tools.work / "llem-runs").exists()


def test_a_local_only_study_starts_no_container(
    run_product: ProductRunner,
    host_tools: HostTools,
    recorder: RecordingSocket,
    images: None,
) -> None:
    """Images named in a study whose runners are all local are never inspected nor run."""
    (host_tools.work / "w.py").write_text("")
    (host_tools.work / "study.yaml").write_text(
        "name: local\n"
        "runners: {vllm: local}\n"
        f"docker: {{images: {{vllm: '{WORKLOAD}'}}}}\n"
        "experiments:\n"
        f"  - {{model: m, backend: vllm, image: '{WORKLOAD}', command: [python3, w.py]}}\n"
    )
    for _ in range(2):  # validated, then remembered
        code, err = llem(run_product, host_tools, recorder, "run", "study.yaml", "--dry-run")
        assert code == 0, err
        assert err.startswith("llem: dry run: 001 m (vllm, local from study runners.vllm)"), err
    assert recorder.touching_images_or_containers() == []


def test_a_study_swapped_during_a_dry_run_is_judged_by_what_was_read(
    run_product: ProductRunner,
    host_tools: HostTools,
    recorder: RecordingSocket,
    gpu_engine: Engine,
    images: None,
) -> None:
    """Two studies in turn under one name: each dry run probes its own study's image."""
    other = "llem-test/other:1"
    build_workload_image(gpu_engine, other)
    study: Path = host_tools.work / "study.yaml"
    for image in (WORKLOAD, other, WORKLOAD, other):
        study.write_text(VALID.replace(WORKLOAD, image))
        recorder.requests.clear()
        code, err = llem(run_product, host_tools, recorder, "run", "study.yaml", "--dry-run")
        assert code == 0, err
        assert f"docker from study runners.vllm): {image}" in err, err
        inspected = {
            r.split("/")[2] + "/" + r.split("/")[3]
            for r in recorder.touching_images_or_containers()
            if r.startswith("GET /images/")
        }
        assert inspected == {image}, recorder.requests


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_each_image_is_probed_once_with_or_without_workers(
    run_product: ProductRunner,
    host_tools: HostTools,
    recorder: RecordingSocket,
    images: None,
    workers: list[str],
) -> None:
    """Under xdist the controller and the idle worker start nothing: one probe per image."""
    result = run_product(
        [
            "pytest", "--llem-preflight", "--llem-no-cache", "-p", "no:cacheprovider",
            "--llem-image", WORKLOAD, *workers,
        ],
        env=host_tools.env(docker_host=recorder.docker_host),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    creates = [r for r in recorder.requests if r.startswith("POST /containers/create")]
    assert len(creates) == 1, recorder.requests
