"""The pre-flight report: findings, per-check outcomes, the verdict, rendering (DESIGN §2, §10)
and JSON (§5).

The verdict (`Report.status`) is one of four words:

- ``failed``: a check failed (the host is unfit, whatever else happened);
- ``incomplete``: no check failed, but a check the session was to run did not run (deselected,
  not collected, a crashed worker, collect-only, interrupted): nothing proves the host fit;
- ``skipped``: the person skipped every check (a study's ``execution.skip_preflight``, or a skip
  list that covers every check);
- ``passed``: every check the session was to run ran, and none failed (warnings allowed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from .text import printable

Outcome = Literal["passed", "failed", "warning", "skipped", "not-run"]
Severity = Literal["error", "warning"]
Status = Literal["passed", "failed", "incomplete", "skipped"]
STATUSES: tuple[Status, ...] = ("passed", "failed", "incomplete", "skipped")

SCHEMA = 1


@dataclass
class Finding:
    """A failure or a warning of one check, with what to do about it."""

    id: str
    tier: int
    cause: str
    message: str
    fix: str = ""
    url: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    severity: Severity = "error"

    @classmethod
    def of(
        cls,
        cause: str,
        message: str,
        fix: str = "",
        url: str = "",
        details: dict[str, Any] | None = None,
        severity: Severity = "error",
    ) -> Finding:
        """A finding of a check not yet known (id and tier are filled in from its marker).

        Without a fix or a link of its own it gets the cause's standard remedy.
        """
        if not fix and not url:
            from .remedies import remedy

            fix, url = remedy(cause)
        return cls("", 0, cause, message, fix, url, dict(details or {}), severity)

    def fix_line(self) -> str:
        if self.fix and self.url:
            return f"Fix: {self.fix} — {self.url}"
        return f"Fix: {self.fix or self.url}" if (self.fix or self.url) else ""


@dataclass
class CheckResult:
    """What happened to one check: the one shape from the check's verdict to the report.

    A verdict is made before the check's id and tier are known; `placed` fills them in.
    """

    id: str = ""
    tier: int = 0
    outcome: Outcome = "passed"
    duration_s: float = 0.0
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    cached: bool = False
    finding: Finding | None = None

    def placed(self, check_id: str, tier: int) -> CheckResult:
        """This result as check ``check_id`` of ``tier`` reports it."""
        finding = self.finding
        if finding is not None:
            finding = replace(finding, id=check_id, tier=tier)
        return replace(self, id=check_id, tier=tier, finding=finding)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (it travels from an xdist worker to the controller)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        finding = data.get("finding")
        return cls(**{**data, "finding": Finding(**finding) if finding else None})


@dataclass(frozen=True)
class Missing:
    """A check the session was to run that has no result, and why it did not run."""

    id: str
    tier: int
    reason: str  # "deselected by -k 'not cli'", "not run: collect only (--co)", ...


@dataclass
class Report:
    checks: list[CheckResult] = field(default_factory=list)
    host: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False  # stopped before every check ended: it proves nothing
    skipped_by: str | None = None  # what skipped every check (the whole pre-flight)
    missing: list[Missing] = field(default_factory=list)  # required checks that did not run

    @property
    def failures(self) -> list[Finding]:
        return [c.finding for c in self.checks if c.outcome == "failed" and c.finding]

    @property
    def warnings(self) -> list[Finding]:
        return [c.finding for c in self.checks if c.outcome == "warning" and c.finding]

    @property
    def status(self) -> Status:
        """The verdict: a failure wins over checks that did not run, which win over a skip."""
        if self.failures:
            return "failed"
        if self.missing or self.interrupted:
            return "incomplete"
        if self.skipped_by:
            return "skipped"
        return "passed"

    @property
    def ok(self) -> bool:
        """Whether the verdict lets the work go on (exit status 0): passed or skipped."""
        return self.status in ("passed", "skipped")

    def render(self) -> str:
        """The numbered report, then what did not run and the warnings; empty when every check
        passed without a warning.

        Each line is made printable: a tool's terminal escapes or line breaks are shown escaped.
        """
        failures, warnings, status = self.failures, self.warnings, self.status
        lines: list[str] = []
        if failures:
            lines.append(f"Docker pre-flight failed: {len(failures)} issue(s) found")
            for number, f in enumerate(failures, 1):
                lines.append(f"  {number}. [{f.id}] {f.message}")
                if f.fix_line():
                    lines.append(f"     {f.fix_line()}")
        if self.missing:
            lines.append(
                f"Docker pre-flight incomplete: {len(self.missing)} required check(s) did not run"
            )
            lines += [f"  - [{m.id}] {m.reason}" for m in self.missing]
        elif status == "incomplete":  # interrupted once every check had ended
            lines.append(
                f"Docker pre-flight incomplete: interrupted after {len(self.checks)} check(s)"
            )
        if status == "skipped":
            lines.append(f"Docker pre-flight skipped: {self.skipped_by}")
        elif status == "passed" and warnings:
            lines.append(f"Docker pre-flight passed with {len(warnings)} warning(s)")
        if warnings:
            lines.append("Warnings:")
            for w in warnings:
                lines.append(f"  - [{w.id}] {w.message}")
                if w.fix_line():
                    lines.append(f"    {w.fix_line()}")
        return "\n".join(printable(line) for line in lines)

    def to_json(self) -> dict[str, Any]:
        def finding(f: Finding, number: int | None) -> dict[str, Any]:
            d: dict[str, Any] = {"number": number} if number is not None else {}
            d.update(
                id=f.id,
                tier=f.tier,
                cause=f.cause,
                message=f.message,
                fix=f.fix,
                url=f.url,
                details=f.details,
            )
            return d

        return {
            "schema": SCHEMA,
            "status": self.status,
            "failures": [finding(f, n) for n, f in enumerate(self.failures, 1)],
            "warnings": [finding(w, None) for w in self.warnings],
            "checks": [
                {
                    "id": c.id,
                    "tier": c.tier,
                    "outcome": c.outcome,
                    "duration_s": round(c.duration_s, 3),
                    "reason": c.reason,
                    "details": c.details,
                    "cached": c.cached,
                }
                for c in self.checks
            ],
            "missing": [asdict(m) for m in self.missing],
            "skipped_by": self.skipped_by,
            "host": self.host,
        }
