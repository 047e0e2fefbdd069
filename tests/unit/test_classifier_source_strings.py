"""The error strings of the sources themselves (tests/data/reference/source-strings.tsv): each
format string, filled in with realistic values, is classified as the cause it means."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from pytest_llem.domain.causes import CAUSES
from pytest_llem.domain.diagnosis import diagnose

TABLE = Path(__file__).parent.parent / "data" / "reference" / "source-strings.tsv"
ROWS: list[dict[str, str]] = list(csv.DictReader(TABLE.open(newline=""), delimiter="\t"))
PROGRAMS = {
    "docker-cli": "docker/cli",
    "docker-engine": "moby/moby",
    "nvidia-container-toolkit": "NVIDIA/nvidia-container-toolkit",
    "libnvidia-container": "NVIDIA/libnvidia-container",
    "podman": "containers/podman",
    "containers-common": "containers/common",
    "cdi": "cncf-tags/container-device-interface",
    "docker-desktop-wsl-stand-in": "(Docker Desktop, closed source: as its users posted it)",
}
_VERB = re.compile(r"%[-+# 0]*\d*(?:\.\d+)?[svwqdx]|\{\}")


def fill(fmt: str, values: str) -> str:
    """The format string with its verbs replaced, in order, by the row's values (Go's %q
    quotes its value; "(empty)" stands for an empty value)."""
    given = [] if not values else ["" if v == "(empty)" else v for v in values.split(" | ")]
    verbs = _VERB.findall(fmt)
    assert len(verbs) == len(given), (fmt, given)
    parts = iter(given)

    def value(m: re.Match[str]) -> str:
        v = next(parts)
        return json.dumps(v) if m.group(0).endswith("q") else v

    return _VERB.sub(value, fmt.replace("\\n", "\n"))


def test_the_table_covers_each_program_with_sources() -> None:
    assert {row["program"] for row in ROWS} == set(PROGRAMS)
    for row in ROWS:
        assert row["repository"] == PROGRAMS[row["program"]], row
        assert row["path"] and row["releases"] and row["format"], row
        assert row["cause"] in CAUSES and row["cause"] != "ok", row
    assert len(ROWS) >= 40


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['program']}:{r['format'][:48]}" for r in ROWS])
def test_a_filled_in_source_string_gives_its_cause(row: dict[str, str]) -> None:
    text = fill(row["format"], row["values"])
    for returncode in (None, 1, 125):
        d = diagnose(text, returncode)
        assert d.cause == row["cause"], (returncode, text, d)
        assert d.fix and d.url.startswith("https://")


@pytest.mark.parametrize("row", ROWS[:: max(1, len(ROWS) // 12)])
def test_a_source_string_wrapped_by_docker_run_keeps_its_cause(row: dict[str, str]) -> None:
    """As `docker run` or a log wraps it: a prefix before, a trailer after."""
    text = f"docker: Error response from daemon: {fill(row['format'], row['values'])}.\n"
    if row["program"] == "docker-desktop-wsl-stand-in":
        text = fill(row["format"], row["values"]) + "\n"
    text += "See 'docker run --help'.\n"
    assert diagnose(text, 125).cause == row["cause"]


@pytest.mark.parametrize(
    "text",
    [
        "Error: stat nvidia.com/gpu=all: no such file or directory",
        "Error: nvidia.com/gpu=0 is not a valid device: no such file or directory",
        "ERRO[0000] validating containers config: invalid device mode: nvidia.com/gpu=gpu0",
    ],
)
def test_a_cdi_name_taken_for_a_device_path_asks_for_a_podman_with_cdi(text: str) -> None:
    d = diagnose(text, 125)
    assert d.cause == "cdi_injection_failed"
    assert "4.1" in d.fix and d.details["cdi_device"].startswith("nvidia.com/gpu=")
    assert not d.details["cdi_device"].endswith(":")


def test_the_desktop_stand_in_fix_follows_the_wsl_version_it_names() -> None:
    wsl1 = diagnose(fill(ROWS[-3]["format"], "docker"), 1)
    wsl2 = diagnose(fill(ROWS[-1]["format"], "docker"), 1)
    assert wsl1.details["platform"] == "wsl1" and "--set-version" in wsl1.fix
    assert wsl2.details["platform"] == "wsl2" and "--set-version" not in wsl2.fix
    assert "WSL integration" in wsl2.fix
