"""`llem preflight --junit PATH`: the checks as JUnit XML, and the command's handling of it."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pytest_llem.cli import main
from pytest_llem.domain.fleet import FleetReport, unreachable
from pytest_llem.domain.junit import fleet_junit_xml, junit_xml, with_missing
from pytest_llem.domain.report import CheckResult, Finding, Missing, Report
from pytest_llem.errors import DockerPreFlightError


def finding(check_id: str, cause: str, message: str, severity: str = "error") -> Finding:
    return Finding(check_id, 1, cause, message, fix="Do this", url="https://x.example/fix",
                   details={"output": "bad\x1b[0m byte"}, severity=severity)  # type: ignore[arg-type]  # fmt: skip


REPORT = Report(
    checks=[
        CheckResult("docker-cli", 1, "passed", 0.01, details={"path": "/usr/bin/docker"}),
        CheckResult("docker-daemon", 1, "failed", 0.02,
                    finding=finding("docker-daemon", "daemon_unreachable", "Cannot reach it")),
        CheckResult("host-driver", 1, "warning", 0.03,
                    finding=finding("host-driver", "host_driver_unavailable", "no nvidia-smi",
                                    "warning")),
        CheckResult("cuda-compat[v/img:1]", 2, "not-run", reason="not run: docker-daemon failed"),
        CheckResult("gpu-in-container[v/img:1]", 2, "skipped", reason="skipped by --llem-skip"),
    ],
    host={"docker_server_version": "", "driver_version": "550.54.15"},
)  # fmt: skip


def cases(root: ET.Element) -> dict[str, ET.Element]:
    return {case.get("name", ""): case for case in root.iter("testcase")}


def properties(element: ET.Element) -> dict[str, str]:
    found = element.find("properties")
    assert found is not None
    return {p.get("name", ""): p.get("value", "") for p in found}


def test_one_case_per_check() -> None:
    root = ET.fromstring(junit_xml(REPORT, timestamp=0, hostname="gpu-7"))
    assert root.tag == "testsuites"
    [suite] = root.findall("testsuite")
    counts = ("tests", "failures", "errors", "skipped")
    assert [suite.get(k) for k in counts] == ["5", "1", "0", "2"]
    assert [root.get(k) for k in counts] == ["5", "1", "0", "2"]
    assert (suite.get("name"), suite.get("hostname")) == ("llem-preflight", "gpu-7")
    assert suite.get("timestamp") == "1970-01-01T00:00:00+00:00"
    assert properties(suite) == {"llem_status": "failed", "driver_version": "550.54.15"}
    found = cases(root)
    assert list(found) == [c.id for c in REPORT.checks]
    assert [c.get("classname") for c in found.values()] == ["llem.tier1"] * 3 + ["llem.tier2"] * 2
    assert found["docker-cli"].get("time") == "0.010"
    assert [child.tag for child in found["docker-cli"]] == ["properties"]


def test_a_failure_carries_its_cause_message_and_fix() -> None:
    case = cases(ET.fromstring(junit_xml(REPORT)))["docker-daemon"]
    failure = case.find("failure")
    assert failure is not None
    assert (failure.get("type"), failure.get("message")) == (
        "daemon_unreachable",
        "[docker-daemon] Cannot reach it",
    )
    assert (failure.text or "").splitlines() == [
        "[docker-daemon] Cannot reach it",
        "Fix: Do this — https://x.example/fix",
        "cause: daemon_unreachable",
        'details: {"output": "bad\\u001b[0m byte"}',
    ]
    assert properties(case) == {"llem_outcome": "failed", "llem_cause": "daemon_unreachable"}


def test_characters_xml_cannot_hold_are_shown_as_codes() -> None:
    bad = finding("docker-daemon", "unknown", "bad\x1b[0m\x00 output")
    check = CheckResult("docker-daemon", 1, "failed", finding=bad)
    failure = ET.fromstring(junit_xml(Report(checks=[check]))).find(".//failure")
    assert failure is not None
    assert failure.get("message") == "[docker-daemon] bad#x1B[0m#x00 output"


def test_warnings_pass_and_skips_say_which_kind() -> None:
    found = cases(ET.fromstring(junit_xml(REPORT)))
    warning = found["host-driver"]
    assert warning.find("failure") is None and warning.find("skipped") is None
    out = warning.find("system-out")
    assert out is not None and (out.text or "").startswith("warning: [host-driver] no nvidia-smi")
    for name, kind in (
        ("cuda-compat[v/img:1]", "not-run"),
        ("gpu-in-container[v/img:1]", "skipped"),
    ):
        skipped = found[name].find("skipped")
        assert skipped is not None and skipped.get("type") == kind
        assert (
            skipped.get("message")
            == REPORT.checks[[c.id for c in REPORT.checks].index(name)].reason
        )


# -- a fleet ----------------------------------------------------------------------------------


def fleet_report() -> FleetReport:
    lost = unreachable("the connection to gpu3 was lost: Killed", details={"host": "gpu3"})
    lost.checks.append(CheckResult("docker-cli", 1, "passed", 0.5))  # (what it sent before)
    return FleetReport(
        [
            ("gpu1", Report(checks=[CheckResult("docker-cli", 1, "passed", 0.25)])),
            ("gpu2", REPORT),
            ("gpu3", lost),
            ("gpu<4>", unreachable("cannot reach gpu<4> over ssh: Connection refused")),
        ]
    )


def test_a_fleet_is_one_suite_per_host() -> None:
    root = ET.fromstring(fleet_junit_xml(fleet_report(), timestamp=0))
    suites = root.findall("testsuite")
    assert [(s.get("name"), s.get("hostname")) for s in suites] == [
        (host, host) for host in ("gpu1", "gpu2", "gpu3", "gpu<4>")
    ]
    counts = ("tests", "failures", "errors", "skipped")
    assert [[s.get(k) for k in counts] for s in suites] == [
        ["1", "0", "0", "0"],
        ["5", "1", "0", "2"],
        ["2", "0", "1", "0"],
        ["1", "0", "1", "0"],
    ]
    assert [root.get(k) for k in counts] == ["9", "1", "2", "2"]
    assert root.get("time") == "0.810"  # (0.25, 0.06 for gpu2's, 0.5)
    assert [properties(s)["llem_status"] for s in suites] == ["passed", "failed"] + ["failed"] * 2
    assert suites[0].get("timestamp") == "1970-01-01T00:00:00+00:00"


def test_a_host_that_could_not_be_reached_is_an_error_case() -> None:
    root = ET.fromstring(fleet_junit_xml(fleet_report()))
    lost = root.findall("testsuite")[2]
    assert [c.get("name") for c in lost.iter("testcase")] == ["host-reachable", "docker-cli"]
    case = next(lost.iter("testcase"))
    assert case.find("failure") is None
    error = case.find("error")
    assert error is not None
    assert (error.get("type"), error.get("message")) == (
        "host_unreachable",
        "[host-reachable] the connection to gpu3 was lost: Killed",
    )
    assert properties(case) == {"llem_outcome": "failed", "llem_cause": "host_unreachable"}


def test_llem_preflight_hosts_writes_junit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        "pytest_llem.preflight.run_fleet_preflight", lambda hosts, *, settings: fleet_report()
    )
    monkeypatch.chdir(tmp_path)
    assert main(["preflight", "--host", "gpu1", "--junit", "f.xml", "--json", "f.json"]) == 1
    root = ET.parse("f.xml").getroot()
    assert [s.get("name") for s in root.findall("testsuite")] == ["gpu1", "gpu2", "gpu3", "gpu<4>"]
    assert Path("f.json").is_file()
    assert capsys.readouterr().err == ""


# -- the command ------------------------------------------------------------------------------


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    """run_docker_preflight stands in: it answers REPORT (a failure)."""
    calls: list[dict[str, Any]] = []

    def fake(**kwargs: Any) -> Report:
        calls.append(kwargs)
        raise DockerPreFlightError(REPORT)

    monkeypatch.setattr("pytest_llem.preflight.run_docker_preflight", fake)
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DOCKER_"):
            monkeypatch.delenv(name)
    return calls


def test_llem_preflight_writes_both_reports(
    ran: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["preflight", "--json", "p.json", "--junit", "p.xml"]) == 1
    root = ET.parse("p.xml").getroot()
    assert [c.get("name") for c in root.iter("testcase")] == [c.id for c in REPORT.checks]
    assert Path("p.json").is_file()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--junit", ""], "--junit: expected a path, got ''"),
        (["--junit", "nodir/p.xml"], "--junit: cannot write nodir/p.xml: "),
        (["--junit", "."], "--junit: cannot write .: is a directory"),
        (["--junit"], "argument --junit: expected one argument"),
    ],
)
def test_a_junit_path_that_cannot_be_written_is_a_usage_error(
    ran: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["preflight", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"llem: error: {message}") and err.count("\n") == 1
    assert ran == []  # found before any check ran


INCOMPLETE = Report(
    checks=[REPORT.checks[0]], missing=[Missing("nvidia-toolkit", 1, "deselected by -k 'x'")]
)


def test_a_check_that_did_not_run_is_an_error_case() -> None:
    """An incomplete pre-flight never reads as a pass in a test-report viewer."""
    root = ET.fromstring(junit_xml(INCOMPLETE))
    [suite] = root.findall("testsuite")
    counts = ("tests", "failures", "errors", "skipped")
    assert [suite.get(k) for k in counts] == ["2", "0", "1", "0"]
    assert properties(suite)["llem_status"] == "incomplete"
    case = cases(root)["nvidia-toolkit"]
    error = case.find("error")
    assert error is not None and case.get("classname") == "llem.tier1"
    assert (error.get("type"), error.get("message")) == (
        "incomplete",
        "[nvidia-toolkit] deselected by -k 'x'",
    )


PYTEST_XML = (
    '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
    '<testsuite name="pytest" errors="0" failures="0" skipped="0" tests="1" time="0.1">'
    '<testcase classname="host_checks" name="check_host_driver" time="0.001" />'
    "</testsuite></testsuites>"
)


def test_the_file_of_pytest_junitxml_gets_the_verdict_and_the_missing_checks() -> None:
    root = ET.fromstring(with_missing(PYTEST_XML, "incomplete", INCOMPLETE.missing))
    [suite] = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("errors"), suite.get("failures")) == ("2", "1", "0")
    assert properties(suite) == {"llem_status": "incomplete"}
    assert [c.get("name") for c in suite.iter("testcase")] == [
        "check_host_driver",
        "nvidia-toolkit",
    ]
    assert suite[0].tag == "properties"  # before the cases, as the schema wants
    passed = ET.fromstring(with_missing(PYTEST_XML, "passed", []))
    assert properties(passed.findall("testsuite")[0]) == {"llem_status": "passed"}
    assert passed.findall("testsuite")[0].get("errors") == "0"
