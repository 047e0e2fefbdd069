"""diagnose() stays fast on long outputs, and the literal anchors that gate its rules are
really in every match (a wrong anchor would silently switch a rule off)."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

from pytest_llem.domain import diagnosis
from pytest_llem.domain.diagnosis import _anchors, diagnose

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tests" / "data" / "reference"


def _speed_inputs() -> dict[str, float]:
    spec = importlib.util.spec_from_file_location(
        "classifier_report", ROOT / "bench" / "classifier_report.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["classifier_report"] = module
    spec.loader.exec_module(module)
    times: dict[str, float] = module.speed(rounds=5)
    return times


def test_128_kb_inputs_take_milliseconds() -> None:
    """The figures (about 5 to 15 ms here) are in the report; this bound is generous so that a
    busy machine does not fail it, yet catches a return to quadratic scanning."""
    for name, ms in _speed_inputs().items():
        assert ms < 60, (name, ms)


def test_a_huge_error_flood_is_still_quick() -> None:
    text = "Error: something failed: could not connect\n" * 100_000
    started = time.perf_counter()
    assert diagnose(text, None).cause == "unknown"
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    ("pattern", "anchors"),
    [
        (r"pull\s+access\s+denied", ("access", "denied", "pull")),
        (
            r'unknown\s+or\s+invalid\s+runtime\s+name:?\s+"?nvidia',
            ("invalid", "unknown", "runtime", "nvidia", "name"),
        ),
        (r"lib(?:nvidia-ml|cuda)\.so(?:\.1)?:\s+cannot", ("cannot", "lib", ".so")),
        (r"x{2,3}yz|abc", ()),
        (r"ab+cd", ()),
        (r"bpf_prog_query\(bpf_cgroup_device\)", ("bpf_prog_query(bpf_cgroup_device)",)),
        (r"[^\s:]{0,99}?(?:docker|podman)[^\s:]{0,99}:\s+connect:", ("connect:",)),
    ],
)
def test_anchors_are_the_required_literal_runs(pattern: str, anchors: tuple[str, ...]) -> None:
    assert set(_anchors(pattern)) == set(anchors)


def _texts() -> list[str]:
    texts = []
    for path in REFERENCE.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            m = json.loads(line)
            texts.append("\n".join(p for p in (m["stdout"], m["stderr"]) if p))
    return texts


def test_every_match_of_a_rule_contains_its_anchors() -> None:
    matched = 0
    for text in _texts():
        low = diagnosis._lower(diagnosis._normalise(text))
        for rule in diagnosis._RULES:
            for alternative in rule.alternatives:
                for m in alternative.pattern.finditer(low):
                    matched += 1
                    assert all(a in m.group(0) for a in alternative.anchors), alternative
    assert matched > 150
