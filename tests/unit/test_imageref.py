"""Image references against Docker's reference grammar (distribution/reference)."""

from __future__ import annotations

import pytest

from pytest_llem.domain.imageref import image_ref_problem, invalid_image_message, is_image_ref

SHA = "sha256:" + "a" * 64

VALID = [
    "ubuntu",
    "ubuntu:22.04",
    "nvidia/cuda:12.0.0-base-ubuntu22.04",
    "vllm/vllm-openai:v0.6.3",
    "library/busybox:latest",
    "docker.io/library/ubuntu:22.04",
    "ghcr.io/org/team/image:1.0",
    "localhost/a",
    "localhost:5000/a/b:tag",
    "registry.example.com:443/ns/img",
    "127.0.0.1:5000/img:1",
    "[::1]:5000/img",
    "Registry.Example.com/ns/img",  # the host part may use upper case
    "my_image",
    "my__image",
    "my-----image",
    "a.b.c/d",
    "img:TAG_with.Dots-1",
    "img:" + "t" * 128,
    f"img@{SHA}",
    f"img:tag@{SHA}",
    f"localhost:5000/a/b:tag@{SHA}",
    "img@sha512:" + "0" * 128,
    "img@multihash+base58:" + "f" * 32,
    "llem-test/workload:1",
]

INVALID = [
    "",
    " ",
    "$(touch /tmp/x)",
    "`id`",
    "img;rm -rf /",
    "img name",
    "img\n",
    "Ubuntu",
    "nvidia/CUDA:12",
    "-privileged",
    "--privileged",
    "img:",
    "img:-tag",
    "img:" + "t" * 129,
    ":tag",
    "/img",
    "img/",
    "a//b",
    "img@",
    "img@sha256:abc",
    "img@sha256:" + "g" * 64,
    "img@sha256:" + "a" * 63,
    "img:tag:tag",
    "_img",
    "img_",
    "img..x",
    "localhost:port/img",
    "a" * 256,
    "imäge",
]


@pytest.mark.parametrize("ref", VALID)
def test_valid(ref: str) -> None:
    assert image_ref_problem(ref) is None
    assert is_image_ref(ref)
    assert invalid_image_message("images.vllm", ref) is None


@pytest.mark.parametrize("ref", INVALID)
def test_invalid(ref: str) -> None:
    assert image_ref_problem(ref)
    assert not is_image_ref(ref)


def test_message_names_the_field_and_the_value() -> None:
    message = invalid_image_message("--image", "$(touch /tmp/x)")
    assert message is not None
    assert message.startswith("--image: invalid image reference '$(touch /tmp/x)' (")
    assert "\n" not in message


def test_digest_length_is_checked_for_known_algorithms() -> None:
    assert "64 hex digits" in (image_ref_problem("img@sha256:" + "a" * 65) or "")
    assert image_ref_problem("img@sha256:" + "A" * 64) is None


def test_name_length_limit() -> None:
    assert is_image_ref("a" * 255)
    assert "255" in (image_ref_problem("a" * 256) or "")
