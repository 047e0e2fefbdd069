"""A fleet's pre-flight: one report per host, one verdict for them all (DESIGN §9 "Fleets").

The text is one numbered report (DESIGN §2) per host that has findings, each headed by
``Host NAME:`` (a host without findings has its pass line), then one summary line:
``Docker pre-flight: 3 of 4 hosts ready; failed: gpu3``. The JSON is the single-host shape
(DESIGN §5) with every host's findings and checks (each naming its ``host``) and a ``hosts``
list of per-host reports; its ``status`` is the worst: failed > incomplete > passed > skipped.
A host whose checks did not all run proves less than one that passed; a skip is the person's
choice, made for every host alike, so it is the fleet's verdict only when every host skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .report import SCHEMA, CheckResult, Finding, Missing, Report, Status
from .text import printable

# The pseudo-check of a host that could not be reached: it stands for all of that host's checks.
REACHABLE_ID = "host-reachable"

_RANK = {"skipped": 0, "passed": 1, "incomplete": 2, "failed": 3}


def unreachable(
    message: str, fix: str = "", details: dict[str, Any] | None = None, url: str = ""
) -> Report:
    """The report of a host where no check could run: one `host_unreachable` failure."""
    if fix and not url:  # a fix of its own, with the cause's link
        from .remedies import remedy

        url = remedy("host_unreachable").url
    finding = Finding.of("host_unreachable", message, fix=fix, url=url, details=details)
    finding.id, finding.tier = REACHABLE_ID, 0
    return Report(checks=[CheckResult(REACHABLE_ID, 0, "failed", finding=finding)])


@dataclass
class FleetReport:
    hosts: list[tuple[str, Report]] = field(default_factory=list)  # in the order given

    @property
    def status(self) -> Status:
        statuses: list[Status] = [report.status for _, report in self.hosts] or ["failed"]
        return max(statuses, key=lambda s: _RANK[s])

    @property
    def ok(self) -> bool:
        return self.status in ("passed", "skipped")

    @property
    def ready(self) -> list[str]:
        return [name for name, r in self.hosts if r.status == "passed"]

    @property
    def unready(self) -> list[str]:
        return [name for name, r in self.hosts if r.status != "passed"]

    @property
    def missing(self) -> list[Missing]:
        """Every host's checks that did not run, each reason naming the host."""
        return [
            replace(m, reason=f"{m.reason} (host {name})")
            for name, report in self.hosts
            for m in report.missing
        ]

    @property
    def failures(self) -> list[Finding]:
        return [f for _, report in self.hosts for f in report.failures]

    @property
    def warnings(self) -> list[Finding]:
        return [w for _, report in self.hosts for w in report.warnings]

    def summary(self) -> str:
        """``Docker pre-flight: 2 of 4 hosts ready; failed: gpu3; incomplete: gpu4``."""
        line = f"Docker pre-flight: {len(self.ready)} of {len(self.hosts)} hosts ready"
        if not self.hosts:
            return line + "; no host given"
        for status in ("failed", "incomplete", "skipped"):
            names = [name for name, r in self.hosts if r.status == status]
            if names:
                line += f"; {status}: {printable(', '.join(names))}"
        return line

    def render(self) -> str:
        """Each host's numbered report (a pass line for a host without findings), then the
        summary line."""
        lines: list[str] = []
        for host, report in self.hosts:
            name, text = printable(host), report.render()
            if text:
                lines += [f"Host {name}:", text]
            else:
                lines.append(f"Host {name}: Docker pre-flight passed ({len(report.checks)} checks)")
        lines.append(self.summary())
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        hosts = []
        failures: list[dict[str, Any]] = []
        warnings: list[dict[str, Any]] = []
        checks: list[dict[str, Any]] = []
        missing: list[dict[str, Any]] = []
        for name, report in self.hosts:
            data = report.to_json()
            hosts.append(
                {
                    "host": name,
                    "status": data["status"],
                    "failures": data["failures"],
                    "warnings": data["warnings"],
                    "checks": data["checks"],
                    "missing": data["missing"],
                    "host_facts": data["host"],
                }
            )
            for item in data["failures"]:
                failures.append({**item, "number": len(failures) + 1, "host": name})
            warnings += [{**item, "host": name} for item in data["warnings"]]
            checks += [{**item, "host": name} for item in data["checks"]]
            missing += [{**item, "host": name} for item in data["missing"]]
        return {
            "schema": SCHEMA,
            "status": self.status,
            "failures": failures,
            "warnings": warnings,
            "checks": checks,
            "missing": missing,
            "skipped_by": next((r.skipped_by for _, r in self.hosts if r.skipped_by), None),
            "host": {},
            "hosts": hosts,
        }
