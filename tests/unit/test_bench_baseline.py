"""The benchmark's baseline makes llem's own calls, so its ratios compare machinery alone."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from pytest_llem.host import docker, nvidia

BASELINE = Path(__file__).resolve().parents[2] / "bench" / "sequential_preflight.py"


def _baseline() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sequential_preflight", BASELINE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_baseline_runs_the_same_command_lines_as_llem() -> None:
    baseline = _baseline()
    assert tuple(baseline.VERSION) == docker.VERSION_ARGV
    assert tuple(baseline.SMI) == nvidia.SMI_ARGV
    assert tuple(baseline.inspect_argv("img:1")) == docker.inspect_argv("img:1")
    assert baseline.probe_argv("img:1", "some-name") == docker.probe_argv("img:1", "some-name")
