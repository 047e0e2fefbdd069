"""Whatever a study file holds, load_study returns a StudyConfig or raises one-line ConfigError."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_llem.errors import ConfigError
from pytest_llem.run.config import BACKENDS, StudyConfig, load_study

FIELDS = [
    "name", "execution", "skip_preflight", "runners", "docker", "probe_image",
    "probe_timeout_s", "pull_timeout_s", "probe_cache_s", "images", "experiments", "model",
    "backend", "id", "command", "image", "params", *sorted(BACKENDS), "modle", "",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "local",
            "docker",
            "docker:a/b:1",
            "docker:X Y",
            "vllm/vllm-openai:v0.6.3",
            "$(touch /tmp/x)",
            "",
            "gpt2",
            "python",
        ]
    ),
    st.text(max_size=12),
)
KEYS = st.one_of(st.sampled_from(FIELDS), st.text(max_size=8), st.integers(0, 3))
DATA = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=25,
)
STUDIES = st.fixed_dictionaries(
    {},
    optional={
        "name": SCALARS,
        "execution": st.one_of(DATA, st.fixed_dictionaries({"skip_preflight": SCALARS})),
        "runners": st.one_of(DATA, st.dictionaries(st.sampled_from(sorted(BACKENDS)), SCALARS)),
        "docker": st.one_of(DATA, st.dictionaries(st.sampled_from(FIELDS), DATA, max_size=4)),
        "experiments": st.lists(
            st.dictionaries(st.sampled_from(FIELDS), st.one_of(SCALARS, DATA), max_size=6),
            max_size=3,
        ),
    },
)

EXAMPLE = (
    "name: llama-energy\nexecution:\n  skip_preflight: false\nrunners:\n  pytorch: local\n"
    "  vllm: docker:vllm/vllm-openai:v0.6.3\ndocker:\n  probe_timeout_s: 30\nexperiments:\n"
    "  - {model: meta-llama/Llama-3.1-8B, backend: vllm}\n"
    "  - {model: gpt2, backend: pytorch, command: [python, bench.py]}\n"
)


@pytest.fixture(scope="module")
def study_file() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp) / "study.yaml"


def check(path: Path, content: str | bytes) -> StudyConfig | None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    try:
        study = load_study(path, env={"XDG_CONFIG_HOME": str(path.parent / "xdg")})
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message, message
        return None
    assert isinstance(study, StudyConfig)
    return study


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.text())
def test_any_text(study_file: Path, text: str) -> None:
    check(study_file, text.encode("utf-8", "surrogatepass"))


@PROPERTY
@given(st.binary(max_size=200))
def test_any_bytes(study_file: Path, data: bytes) -> None:
    check(study_file, data)


@PROPERTY
@given(STUDIES)
def test_any_structure(study_file: Path, data: dict[str, Any]) -> None:
    check(study_file, yaml.safe_dump(data, allow_unicode=True))


@PROPERTY
@given(st.integers(0, len(EXAMPLE)), st.text(min_size=1, max_size=6))
def test_edits_of_a_valid_study(study_file: Path, at: int, insert: str) -> None:
    check(study_file, EXAMPLE[:at] + insert + EXAMPLE[at:])


@PROPERTY
@given(
    st.sampled_from(
        [
            "&a [*a]",
            "&a {k: *a}",
            "!!python/object:os.system x",
            "!!binary Zm9v",
            "!!set {a, b}",
            "!!timestamp 2024-13-99",
            "!!int abc",
            "!!float x",
            "[" * 200,
            "{a: 1, a: 2}",
            "? [a, b]\n: c",
            "<<: 5",
            "\ufeffname: x",
            "!!omap [a: 1]",
            "*undefined",
        ]
    ),
    st.sampled_from(["", "params: ", "name: ", "experiments:\n  - params: {x: ", "- "]),
)
def test_yaml_oddities(study_file: Path, oddity: str, prefix: str) -> None:
    check(study_file, prefix + oddity + ("}" if prefix.endswith("{x: ") else "") + "\n")
