"""Tier 2: will each image the study runs get its GPUs?"""

from pytest_llem.checking import check
from pytest_llem.context import CheckContext
from pytest_llem.domain import verdicts


@check(tier=2, id="cuda-compat")
def check_cuda_compat(llem: CheckContext, llem_image: str) -> None:
    """The image's NVIDIA_REQUIRE_* holds for the host driver, judged before anything runs
    (on a remote daemon, by the image's own probe: the NVIDIA hook there checks it)."""
    image = llem.image(llem_image)
    llem.expect(
        verdicts.cuda_compat(
            image,
            llem.host,
            lambda: llem.probed_driver(llem_image),
            llem.compute_capability,
            probe=lambda: llem.probe(llem_image),
            driver_without_requirements=lambda: llem.driver_without_requirements(llem_image),
        )
    )


@check(tier=2, id="gpu-in-container")
def check_gpu_in_container(llem: CheckContext, llem_request: tuple[str, str]) -> None:
    """`docker run --gpus REQUEST IMAGE nvidia-smi` (`--device nvidia.com/gpu=N` through
    CDI; `podman run` on Podman), with the experiment's own GPU request, sees exactly the GPUs
    it asks for."""
    name, request = llem_request
    image = llem.image(name)
    compat_failed = llem.failed(f"cuda-compat[{name}]")
    probe = None if compat_failed or image.info is None else llem.probe(name, request)
    made = llem.label(request)  # the request as made: --gpus, or CDI devices
    llem.expect(
        verdicts.gpu_in_container(
            image, probe, llem.host, compat_failed, llem.settings.timeout_s, made
        )
    )
