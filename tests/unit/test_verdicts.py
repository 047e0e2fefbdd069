"""The built-in checks' judgements over hand-made facts: no Docker, no subprocess."""

from __future__ import annotations

from collections.abc import Callable

from pytest_llem.domain import verdicts
from pytest_llem.domain.nvidia_smi import GpuInfo, SmiInfo
from pytest_llem.domain.records import (
    CommandResult,
    Endpoint,
    HostFacts,
    ImageFacts,
    ImageInfo,
    ProbeFacts,
)

VERSION_OK = CommandResult(
    ("docker", "version"), 0, '{"Client":{"Version":"28.2.2"},"Server":{"Version":"27.3.1"}}'
)
CUDA124 = {
    "CUDA_VERSION": "12.4.1",
    "NVIDIA_REQUIRE_CUDA": "cuda>=12.4 brand=tesla,driver>=470,driver<471 "
    "brand=tesla,driver>=535,driver<536",
}


def _host(
    driver: str | None = "550.54.15",
    cuda: str | None = "12.4",
    brand: str = "Tesla",
    gpus: int = 2,
    version: CommandResult | None = VERSION_OK,
    url: str = "unix:///var/run/docker.sock",
    smi: CommandResult | None = None,
) -> HostFacts:
    info = None
    if driver:
        info = SmiInfo(
            driver,
            cuda,
            [
                GpuInfo(i, "NVIDIA H100", f"GPU-{i}", brand=brand, architecture="Hopper")
                for i in range(gpus)
            ],
        )
    return HostFacts(
        Endpoint(url),
        "/usr/bin/docker",
        version,
        {"nvidia-ctk": "/usr/bin/x"},
        smi or CommandResult(("nvidia-smi", "-q"), 0, "..."),
        info,
    )


def _image(env: dict[str, str], name: str = "img:1") -> ImageFacts:
    return ImageFacts(name, ImageInfo("sha256:abc", env), CommandResult(("docker",), 0))


def _probe(lines: list[tuple[str, str]], rc: int = 0, out: str = "") -> ProbeFacts:
    gpus = [
        {"index": str(i), "name": n, "uuid": u, "driver_version": "550.54.15"}
        for i, (n, u) in enumerate(lines)
    ]
    return ProbeFacts("img:1", "llem-probe-x", CommandResult(("docker", "run"), rc, "", out), gpus)


def test_daemon_passes_with_server_version() -> None:
    v = verdicts.docker_daemon(_host())
    assert v.outcome == "passed" and v.details["server_version"] == "27.3.1"


def test_daemon_permission_denied_is_not_unreachable() -> None:
    out = (
        "permission denied while trying to connect to the Docker daemon socket at "
        'unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.47/version":'
        " dial unix /var/run/docker.sock: connect: permission denied"
    )
    v = verdicts.docker_daemon(_host(version=CommandResult(("docker",), 1, '{"Client":{}}', out)))
    assert v.outcome == "failed" and v.finding is not None
    assert v.finding.cause == "daemon_permission_denied"
    assert "usermod -aG docker" in v.finding.fix


def test_daemon_down_and_daemon_hung() -> None:
    down = CommandResult(
        ("docker",),
        1,
        "",
        "Cannot connect to the Docker daemon at "
        "unix:///var/run/docker.sock. Is the docker daemon running?",
    )
    v = verdicts.docker_daemon(_host(version=down))
    assert v.finding is not None and v.finding.cause == "daemon_unreachable"
    hung = CommandResult(("docker", "version"), None, duration_s=10.0, timed_out=True)
    v = verdicts.docker_daemon(_host(version=hung))
    assert v.finding is not None and v.finding.cause == "daemon_unreachable"
    assert "did not answer `docker version" in v.finding.message


def test_the_daemon_message_names_its_address_once() -> None:
    """The CLI's own line repeats the address the message starts with: it is said once."""
    down = CommandResult(
        ("docker",),
        1,
        "",
        "Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?",
    )
    v = verdicts.docker_daemon(_host(version=down, url="unix:///x.sock"))
    assert v.finding is not None
    assert v.finding.message == (
        "Cannot reach the Docker daemon at unix:///x.sock: Is the docker daemon running?"
    )
    denied = CommandResult(
        ("docker",),
        1,
        "",
        "permission denied while trying to connect to the Docker daemon socket at "
        'unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.47/version":'
        " dial unix /var/run/docker.sock: connect: permission denied",
    )
    v = verdicts.docker_daemon(_host(version=denied))
    assert v.finding is not None
    assert v.finding.message == (
        "Permission denied on the Docker daemon socket at unix:///var/run/docker.sock: "
        'Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.47/version": dial unix '
        "/var/run/docker.sock: connect: permission denied"
    )
    assert v.finding.message.count("unix:///var/run/docker.sock") == 1
    # A line that names no address (or another one) is kept whole.
    other = CommandResult(("docker",), 1, "", "error during connect: this error may indicate")
    v = verdicts.docker_daemon(_host(version=other, url="unix:///x.sock"))
    assert v.finding is not None
    assert v.finding.message == (
        "Cannot reach the Docker daemon at unix:///x.sock: error during connect: this error "
        "may indicate"
    )


def test_remote_daemon_skips_host_side_checks() -> None:
    host = _host(url="ssh://me@gpu-box", driver=None)
    assert verdicts.nvidia_toolkit(host).outcome == "skipped"
    assert verdicts.host_driver(host).outcome == "skipped"


def test_host_driver_failures_only_warn() -> None:
    missing = CommandResult(("nvidia-smi",), 127, missing=True)
    assert verdicts.host_driver(_host(driver=None, smi=missing)).outcome == "warning"
    mismatch = CommandResult(
        ("nvidia-smi",),
        18,
        "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 550.67",
    )
    v = verdicts.host_driver(_host(driver=None, smi=mismatch))
    assert v.outcome == "warning" and v.finding is not None
    assert v.finding.cause == "nvml_driver_library_mismatch"


def test_cuda_compat_names_versions_and_minimum_driver() -> None:
    v = verdicts.cuda_compat(_image(CUDA124), _host("545.23.08", "12.3"), lambda: None)
    assert v.outcome == "failed" and v.finding is not None
    assert v.finding.cause == "cuda_requirement_unsatisfied"
    assert "12.4" in v.finding.message and "545.23.08" in v.finding.message
    assert "550.54" in v.finding.fix
    assert v.details["min_driver"].startswith("550.54")


def test_cuda_compat_brand_exemption() -> None:
    tesla = verdicts.cuda_compat(_image(CUDA124), _host("535.104.05", "12.2"), lambda: None)
    assert tesla.outcome == "passed"
    geforce = _host("535.104.05", "12.2", brand="GeForce")
    assert verdicts.cuda_compat(_image(CUDA124), geforce, lambda: None).outcome == "failed"


def test_cuda_compat_unknown_driver_uses_probe_or_warns() -> None:
    """A local daemon whose host has no nvidia-smi: the driver another probe saw, else a
    warning (judged before any container of the image starts, as with a known driver)."""
    local = _host(driver=None)
    seen = verdicts.cuda_compat(_image(CUDA124), local, lambda: "545.23.08")
    assert seen.outcome == "failed" and seen.details["driver_source"].startswith("driver seen")
    unknown = verdicts.cuda_compat(_image(CUDA124), local, lambda: None)
    assert unknown.outcome == "warning"


# --- cuda-compat on a remote daemon: the image's own probe decides ---------------------------

CUDA128 = {"CUDA_VERSION": "12.8.1", "NVIDIA_REQUIRE_CUDA": "cuda>=12.8 brand=tesla,driver>=535"}
REFUSED_128 = (
    "docker: Error response from daemon: failed to create task for container: failed to create "
    "shim task: OCI runtime create failed: runc create failed: unable to start container "
    "process: error during container init: error running prestart hook #0: exit status 1, "
    "stdout: , stderr: Auto-detected mode as 'legacy'\nnvidia-container-cli: requirement "
    "error: unsatisfied condition: cuda>=12.8, please update your driver to a newer version, or "
    "use an earlier cuda container: unknown"
)
REMOTE = _host(driver=None, url="tcp://gpu-box:2376", smi=CommandResult(("x",), None))


def _remote_probe(
    rc: int | None = 0, err: str = "", timed_out: bool = False, gpus: int = 1
) -> ProbeFacts:
    result = CommandResult(("docker", "run"), rc, "", err, 1.0, timed_out=timed_out)
    rows = [{"index": "0", "name": "NVIDIA H100", "uuid": "GPU-0", "driver_version": "550.54.15"}]
    return ProbeFacts("img:1", "llem-probe-x", result, rows[:gpus] if result.ok else [])


def _asked(answer: str | None) -> tuple[list[str], Callable[[], str | None]]:
    asked: list[str] = []

    def ask() -> str | None:
        asked.append("asked")
        return answer

    return asked, ask


def _never(why: str) -> Callable[[], str | None]:
    def ask() -> str | None:
        raise AssertionError(why)

    return ask


def test_remote_cuda_compat_is_proved_by_the_images_own_probe() -> None:
    asked, ask = _asked("550.54.15")
    v = verdicts.cuda_compat(
        _image(CUDA124),
        REMOTE,
        _never("no other image's probe is needed"),
        _never("this machine's GPUs are not the daemon's"),
        probe=_remote_probe,
        driver_without_requirements=ask,
    )
    assert v.outcome == "passed" and v.finding is None, v
    assert v.details["driver_version"] == "550.54.15"
    assert v.details["driver_source"] == "driver seen inside a container"
    assert (v.details["cuda_version"], v.details["required_cuda"]) == ("12.4", "12.4")
    assert asked == []  # the probe saw the driver: no second container


def test_remote_cuda_compat_fails_when_the_hook_refuses_the_probe() -> None:
    asked, ask = _asked("550.54.15")
    v = verdicts.cuda_compat(
        _image(CUDA128),
        REMOTE,
        lambda: None,
        probe=lambda: _remote_probe(125, REFUSED_128),
        driver_without_requirements=ask,
    )
    assert v.outcome == "failed" and v.finding is not None
    assert v.finding.cause == "cuda_requirement_unsatisfied"
    assert asked == ["asked"]
    details = v.finding.details
    assert (details["required_cuda"], details["driver_version"], details["cuda_version"]) == (
        "12.8",
        "550.54.15",
        "12.4",
    )
    assert details["min_driver"].startswith("570.") and details["unsatisfied"] == "cuda>=12.8"
    assert v.finding.message.startswith(
        "img:1 requires CUDA 12.8 (cuda>=12.8); the remote daemon's driver 550.54.15 supports "
        "CUDA 12.4"
    ), v.finding.message
    assert "tcp://gpu-box:2376" in v.finding.message
    assert "570." in v.finding.fix and "this machine" not in v.finding.fix


def test_remote_cuda_compat_fails_even_when_the_driver_cannot_be_read() -> None:
    v = verdicts.cuda_compat(
        _image(CUDA128),
        REMOTE,
        lambda: None,
        probe=lambda: _remote_probe(125, REFUSED_128),
        driver_without_requirements=lambda: None,
    )
    assert v.outcome == "failed" and v.finding is not None
    assert "requires CUDA 12.8" in v.finding.message
    assert "driver version could not be read" in v.finding.message
    assert v.details["driver_version"] == "" and v.details["required_cuda"] == "12.8"


def test_remote_cuda_compat_waits_for_a_probe_that_shows_nothing_of_the_requirement() -> None:
    """A probe that failed otherwise (or ran out of time) proves nothing either way: the
    failure is gpu-in-container's to report, cuda-compat is not run."""
    for probe in (
        _remote_probe(125, "nvidia-container-cli: initialization error: driver not loaded"),
        _remote_probe(None, timed_out=True),
        _remote_probe(0, gpus=0),  # started, but listed no GPU
    ):
        v = verdicts.cuda_compat(_image(CUDA124), REMOTE, lambda: None, probe=lambda p=probe: p)
        assert v.outcome == "not-run" and "gpu-in-container[img:1]" in v.reason, v


def test_remote_cuda_compat_without_a_probe_warns_without_blaming_this_machine() -> None:
    v = verdicts.cuda_compat(_image(CUDA124), REMOTE, lambda: "550.54.15")
    assert v.outcome == "warning" and v.finding is not None
    assert "tcp://gpu-box:2376" in v.finding.message
    assert "Install the NVIDIA driver" not in v.finding.fix


def test_gpu_in_container_count_and_timeout() -> None:
    host = _host(gpus=2)
    ok = verdicts.gpu_in_container(
        _image({}), _probe([("H100", "GPU-0"), ("H100", "GPU-1")]), host, False, 30
    )
    assert ok.outcome == "passed" and ok.details["gpu_request"] == "--gpus all"
    fewer = verdicts.gpu_in_container(_image({}), _probe([("H100", "GPU-0")]), host, False, 30)
    assert fewer.finding is not None and fewer.finding.cause == "gpu_count_mismatch"
    assert fewer.finding.message == "1 of the host's 2 GPU(s) visible inside img:1"
    timed = ProbeFacts(
        "img:1", "llem-probe-x", CommandResult(("docker", "run"), None, timed_out=True)
    )
    v = verdicts.gpu_in_container(_image({}), timed, host, False, 3)
    assert v.finding is not None and v.finding.cause == "probe_timeout"
    assert "img:1" in v.finding.message and "3s" in v.finding.message


def test_gpu_in_container_not_run_after_compat_failure() -> None:
    assert verdicts.gpu_in_container(_image({}), None, _host(), True, 30).outcome == "not-run"


def test_pull_failure_is_an_image_problem_not_a_gpu_one() -> None:
    pull = CommandResult(
        ("docker", "pull"),
        1,
        "",
        "Error response from daemon: Get "
        '"https://registry-1.docker.io/v2/": dial tcp: lookup '
        "registry-1.docker.io on 127.0.0.53:53: no such host",
    )
    image = ImageFacts(
        "nvidia/cuda:12.4.1-base-ubuntu22.04",
        None,
        CommandResult(("docker",), 1, "", "No such image"),
        pull,
    )
    v = verdicts.gpu_in_container(image, None, _host(), False, 30)
    assert v.finding is not None and v.finding.cause == "registry_unreachable"
    assert verdicts.cuda_compat(image, _host(), lambda: None).outcome == "not-run"


def test_gpu_in_container_passes_only_for_the_gpus_it_asked_for() -> None:
    host = _host(gpus=4)
    one = _probe([("H100", "GPU-2")])  # inside the container the one GPU is index 0
    v = verdicts.gpu_in_container(_image({}), one, host, False, 30, "device=2")
    assert v.outcome == "passed" and v.details["gpu_request"] == "--gpus device=2"
    wrong = verdicts.gpu_in_container(_image({}), one, host, False, 30, "device=1")
    assert wrong.finding is not None and wrong.finding.cause == "gpu_count_mismatch"
    assert "GPU-2 instead of GPU 1" in wrong.finding.message
    two = verdicts.gpu_in_container(_image({}), one, host, False, 30, "device=1,2")
    assert two.finding is not None and "1 GPU(s) visible where 2 were asked for" in str(
        two.finding.message
    )


def test_a_gpu_request_the_host_cannot_meet_fails_without_a_probe() -> None:
    v = verdicts.gpu_in_container(_image({}), None, _host(gpus=2), False, 30, "device=7")
    assert v.outcome == "failed" and v.finding is not None
    assert v.finding.cause == "no_devices"
    assert v.finding.message == "GPU 7 is not on this host (it has GPU 0, 1)"
    assert v.details["gpu_request"] == "--gpus device=7"


def test_a_remote_daemon_counts_the_gpus_of_a_device_request() -> None:
    remote = _host(driver=None, url="tcp://gpu:2376")
    one = _probe([("H100", "GPU-x")])
    assert verdicts.gpu_in_container(_image({}), one, remote, False, 30, "device=3").outcome == (
        "passed"
    )
    v = verdicts.gpu_in_container(_image({}), one, remote, False, 30, "device=0,1")
    assert v.finding is not None and v.finding.cause == "gpu_count_mismatch"
