"""Tier 1: can this host reach a container engine (Docker, Podman) that can give containers
NVIDIA GPUs?"""

from pytest_llem.checking import check
from pytest_llem.context import CheckContext
from pytest_llem.domain import gpu_access, verdicts


@check(tier=1, id="docker-cli")
def check_docker_cli(llem: CheckContext) -> None:
    """The docker CLI is on PATH."""
    llem.expect(verdicts.docker_cli(llem.host))


@check(tier=1, id="docker-daemon")
def check_docker_daemon(llem: CheckContext) -> None:
    """The CLI reaches a daemon (DOCKER_HOST and docker contexts honoured)."""
    llem.expect(verdicts.docker_daemon(llem.host))


@check(tier=1, id="nvidia-toolkit")
def check_nvidia_toolkit(llem: CheckContext) -> None:
    """An NVIDIA Container Toolkit CLI is installed next to a local daemon."""
    llem.expect(verdicts.nvidia_toolkit(llem.host))


@check(tier=1, id="podman-cli")
def check_podman_cli(llem: CheckContext) -> None:
    """A local podman CLI is on PATH and answers (a Podman study's engine)."""
    llem.expect(gpu_access.podman_cli(llem.host))


@check(tier=1, id="cdi-spec")
def check_cdi_spec(llem: CheckContext) -> None:
    """The GPU requests that go through CDI can be served: the engine reads CDI specs, and a
    spec there names every requested GPU, for this driver and these GPUs."""
    llem.expect(gpu_access.cdi_spec(llem.access_host))


@check(tier=1, id="host-driver")
def check_host_driver(llem: CheckContext) -> None:
    """Host nvidia-smi reports the driver and the CUDA version it supports (warning only)."""
    llem.expect(verdicts.host_driver(llem.host))
