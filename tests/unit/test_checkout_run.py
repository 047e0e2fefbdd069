"""`python -m pytest_llem` in a checkout's root, with pytest-llem installed elsewhere or not at
all: the package comes from the checkout, which has no `pytest_llem.checks` of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_checkouts_checks_are_found(tmp_path: Path) -> None:
    # -S: no site-packages processing, so no installed (or editable) pytest-llem is seen;
    # pytest and the other dependencies come from PYTHONPATH alone.
    dependencies = str(Path(pytest.__file__).resolve().parents[1])
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "PYTHONPATH": dependencies,
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    argv = [sys.executable, "-S", "-m", "pytest_llem", "preflight", "--measurement-only"]
    result = subprocess.run(
        [*argv, "--json", str(tmp_path / "r.json")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert sorted(c["id"] for c in data["checks"]) == [
        "clock-events", "energy-counter", "gpu-health", "gpu-idle", "mig-mode",
        "persistence-mode", "power-limit",
    ]  # fmt: skip
