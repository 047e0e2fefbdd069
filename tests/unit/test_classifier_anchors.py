"""The literal anchors that gate the classifier's rules (what keeps it fast on long outputs)
are really in every match: a wrong anchor would silently switch a rule off.

Its speed itself is measured by `python bench/classifier_report.py`, not by a timed test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llem.domain import diagnosis
from pytest_llem.domain.diagnosis import _anchors

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tests" / "data" / "reference"


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
