"""The pre-flight as JUnit XML (`llem preflight --junit PATH`), for a CI system's test report.

One test suite (a fleet's: one per host, named by the host; a host that could not be reached
has one error case, `host-reachable`), with one test case per check (class `llem.tier<N>`,
name the check id): a failure carries its cause
as the failure type, the numbered report's message and fix, and the details; a warning passes
with its finding under `system-out`; `skipped` and `not-run` checks are skipped, the kind being
the skip's type. Each case's properties name its outcome and cause, as `pytest --junitxml` does
for the same checks (`llem_outcome`, `llem_cause`).

A required check that did not run (an incomplete pre-flight) is a test case of its own with an
`error` of type `incomplete` saying why, so that no test-report viewer reads an incomplete
run as a pass; `with_missing` adds the same cases to the file `pytest --junitxml` wrote. The
suite's `llem_status` property is the verdict.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from .fleet import REACHABLE_ID, FleetReport
from .report import CheckResult, Finding, Missing, Report

SUITE = "llem-preflight"
# Characters XML 1.0 cannot hold (a tool's output may carry them): shown as #xNN.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def _text(value: object) -> str:
    return _ILLEGAL.sub(lambda m: f"#x{ord(m.group()):02X}", str(value))


def _finding_text(finding: Finding) -> str:
    lines = [f"[{finding.id}] {finding.message}"]
    if finding.fix_line():
        lines.append(finding.fix_line())
    lines.append(f"cause: {finding.cause}")
    if finding.details:
        lines.append("details: " + json.dumps(finding.details, default=str, sort_keys=True))
    return "\n".join(lines)


def _case(check: CheckResult) -> ET.Element:
    case = ET.Element(
        "testcase",
        classname=f"llem.tier{check.tier}",
        name=_text(check.id),
        time=f"{check.duration_s:.3f}",
    )
    properties = ET.SubElement(case, "properties")
    ET.SubElement(properties, "property", name="llem_outcome", value=check.outcome)
    finding = check.finding
    if finding is not None:
        ET.SubElement(properties, "property", name="llem_cause", value=finding.cause)
    if check.outcome == "failed" and finding is not None:
        kind = "error" if check.id == REACHABLE_ID else "failure"  # (no check could run there)
        failure = ET.SubElement(
            case, kind, type=finding.cause, message=_text(f"[{check.id}] {finding.message}")
        )
        failure.text = _text(_finding_text(finding))
    elif check.outcome in ("skipped", "not-run"):
        ET.SubElement(case, "skipped", type=check.outcome, message=_text(check.reason))
    if check.outcome == "warning" and finding is not None:
        out = ET.SubElement(case, "system-out")
        out.text = _text("warning: " + _finding_text(finding))
    return case


def _missing_case(missing: Missing) -> ET.Element:
    case = ET.Element(
        "testcase", classname=f"llem.tier{missing.tier}", name=_text(missing.id), time="0.000"
    )
    message = _text(f"[{missing.id}] {missing.reason}")
    error = ET.SubElement(case, "error", type="incomplete", message=message)
    error.text = message
    return case


def _counts(checks: list[CheckResult], missing: int = 0) -> dict[str, int]:
    errors = sum(c.id == REACHABLE_ID and c.outcome == "failed" for c in checks)
    return {
        "tests": len(checks) + missing,
        "failures": sum(c.outcome == "failed" for c in checks) - errors,
        "errors": errors + missing,
        "skipped": sum(c.outcome in ("skipped", "not-run") for c in checks),
    }


def _attributes(counts: dict[str, int], time_s: float) -> dict[str, str]:
    return {**{key: str(value) for key, value in counts.items()}, "time": f"{time_s:.3f}"}


def _suite(name: str, report: Report, timestamp: float | None, hostname: str) -> ET.Element:
    checks = report.checks
    suite = ET.Element(
        "testsuite",
        {
            "name": _text(name),
            **_attributes(_counts(checks, len(report.missing)), sum(c.duration_s for c in checks)),
        },
    )
    if timestamp is not None:
        when = datetime.fromtimestamp(timestamp, timezone.utc)
        suite.set("timestamp", when.isoformat(timespec="seconds"))
    if hostname:
        suite.set("hostname", _text(hostname))
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="llem_status", value=report.status)
    for key in ("docker_server_version", "driver_version", "cuda_version"):
        if report.host.get(key):
            ET.SubElement(properties, "property", name=key, value=_text(report.host[key]))
    suite.extend(_case(check) for check in checks)
    suite.extend(_missing_case(missing) for missing in report.missing)
    return suite


def _document(suites: list[ET.Element]) -> str:
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    time_s = sum(float(suite.get("time", "0")) for suite in suites)
    root = ET.Element("testsuites", {"name": "llem preflight", **_attributes(totals, time_s)})
    root.extend(suites)
    ET.indent(root)
    return _DECLARATION + ET.tostring(root, "unicode") + "\n"


_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>\n'


def junit_xml(report: Report, *, timestamp: float | None = None, hostname: str = "") -> str:
    """The report's checks as a JUnit XML document (one suite, `llem-preflight`)."""
    return _document([_suite(SUITE, report, timestamp, hostname)])


def fleet_junit_xml(report: FleetReport, *, timestamp: float | None = None) -> str:
    """A fleet's report as a JUnit XML document: one suite per host (named, and with the
    hostname, of the host), in the order given. A host that could not be reached, or was lost,
    has an error case (`host-reachable`, of type ``host_unreachable``) besides the checks it
    ran."""
    return _document([_suite(name, r, timestamp, name) for name, r in report.hosts])


def with_missing(xml: str, status: str, missing: list[Missing]) -> str:
    """A JUnit XML document (what `pytest --junitxml` wrote) with the verdict as its first
    suite's `llem_status` property and an `error` test case per check in ``missing``; the
    counts of the suite and of the document follow."""
    root = ET.fromstring(xml)
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        suite = ET.SubElement(root, "testsuite", name=SUITE, tests="0", errors="0")
    properties = suite.find("properties")
    if properties is None:
        properties = ET.Element("properties")
        suite.insert(0, properties)
    ET.SubElement(properties, "property", name="llem_status", value=status)
    suite.extend(_missing_case(m) for m in missing)
    for element in {root, suite}:
        for key in ("tests", "errors"):
            if key in element.attrib or element is suite:
                element.set(key, str(int(element.get(key, "0")) + len(missing)))
    return _DECLARATION + ET.tostring(root, "unicode")
