"""The state of one pre-flight session: its settings, facts, check results, and the report.

The session holds itself to the checks it was to run: every check its settings require
(`PreflightSettings.required_ids`) and every check collected for it, less those the person
skipped. One of them without a result makes the report `incomplete`, naming why it did not
run (deselected, not collected, collect-only, a crashed worker, interrupted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .checking import CheckEnded, CheckWarned, NotRun
from .context import VERDICT_KEY, CheckContext
from .domain.check_ids import BUILTIN_IDS, BY_ID, is_skipped
from .domain.report import CheckResult, Finding, Missing, Report
from .domain.text import printable

if TYPE_CHECKING:
    from .facts import Facts
    from .settings import PreflightSettings

__all__ = ["BUILTIN_IDS", "FACTS_KEY", "SESSION_KEY", "Session", "host_summary"]

# Facts a caller gathered before pytest started (`run_docker_preflight`), handed over.
FACTS_KEY = pytest.StashKey["Facts"]()
SESSION_KEY = pytest.StashKey["Session"]()


class Session:
    """One pre-flight session (also on each xdist worker): results keyed by check id."""

    def __init__(self, settings: PreflightSettings, facts: Facts) -> None:
        self.settings = settings
        self.facts = facts
        self.interrupted_by: int | None = None  # the signal that stopped the session
        # Why the checks without a result did not run, when the whole session says it
        # ("not run: collect only (--co)", a crashed worker); else `not_collected`.
        self.stopped: str | None = None
        self.not_collected = "not collected"
        self._expected: dict[str, int] = {}  # collected checks (id -> tier)
        self._not_run: dict[str, str] = {}  # id -> why that check did not run (deselected)
        self._results: dict[str, CheckResult] = {}
        self._order: dict[str, int] = {}
        self._durations: dict[str, float] = {}

    def context(self, item: pytest.Item) -> CheckContext:
        return CheckContext(self, item)

    def probe_eligible(self, image: str) -> bool:
        if self.outcome(f"cuda-compat[{image}]") == "failed":
            return False
        return self.facts.image(image).info is not None

    # --- results --------------------------------------------------------------------------

    def add_duration(self, check_id: str, seconds: float) -> None:
        self._durations[check_id] = self._durations.get(check_id, 0.0) + seconds
        if check_id in self._results:
            self._results[check_id].duration_s = self._durations[check_id]

    def record(self, result: CheckResult, order: int) -> None:
        result.duration_s = self._durations.get(result.id, 0.0)
        self._results[result.id] = result
        self._order[result.id] = order

    def outcome(self, check_id: str) -> str | None:
        result = self._results.get(check_id)
        return result.outcome if result else None

    def hard_failures_before(self, tier: int) -> list[str]:
        return [r.id for r in self._results.values() if r.tier < tier and r.outcome == "failed"]

    # --- the checks it was to run ---------------------------------------------------------

    def expect(self, check_id: str, tier: int, not_run: str | None = None) -> None:
        """Check ``check_id`` was collected for this session (``not_run``: why it will not run,
        as when another plugin deselected it)."""
        self._expected.setdefault(check_id, tier)
        if not_run is not None:
            self._not_run.setdefault(check_id, not_run)

    def expected(self) -> dict[str, list[Any]]:
        """The checks collected (id -> [tier, why it will not run or None]), as plain values
        (what an xdist worker hands its controller)."""
        return {cid: [tier, self._not_run.get(cid)] for cid, tier in self._expected.items()}

    def required(self) -> dict[str, int]:
        """Every check this session is to run (id -> tier): the built-ins its settings
        require, then the other checks collected, less the ones the person skipped; none
        when the whole pre-flight is skipped."""
        settings = self.settings
        if settings.skipped_by:
            return {}
        ids = {cid: BY_ID[cid.partition("[")[0]].tier for cid in settings.required_ids()}
        for cid, tier in self._expected.items():
            if not is_skipped(settings.skip, cid):
                ids.setdefault(cid, tier)
        return ids

    def missing(self) -> list[Missing]:
        """The required checks without a result, in tier order, each with why."""
        required = sorted(self.required().items(), key=lambda pair: pair[1])
        return [
            Missing(cid, tier, self._why(cid)) for cid, tier in required if cid not in self._results
        ]

    def _why(self, check_id: str) -> str:
        if check_id in self._not_run:
            return self._not_run[check_id]
        if self.interrupted_by is not None:
            import signal

            how = "SIGTERM" if self.interrupted_by == signal.SIGTERM else "Ctrl-C"
            return f"not run: interrupted ({how})"
        return self.stopped or self.not_collected

    def skipped_by(self, checks: list[CheckResult]) -> str | None:
        """What skipped every check: the study's skip of the whole pre-flight, or a skip list
        that covers every check the session was to run (and every one that reported)."""
        settings = self.settings
        if settings.skipped_by:
            return settings.skipped_by
        skip = settings.skip
        if not skip or self.required():
            return None
        if any(c.outcome != "skipped" or not is_skipped(skip, c.id) for c in checks):
            return None
        return skip_named(settings, ",".join(sorted(skip)))

    def report(self) -> Report:
        checks = sorted(self._results.values(), key=lambda r: self._order[r.id])
        host = host_summary(checks)
        if self.settings.allocation is not None:  # inside a Slurm job: which, and its GPUs
            host["slurm"] = self.settings.allocation.summary()
        return Report(
            checks=checks,
            host=host,
            interrupted=self.interrupted_by is not None,
            skipped_by=self.skipped_by(checks),
            missing=self.missing(),
        )


def skip_named(settings: PreflightSettings, ids: str) -> str:
    """Where the person named the skipped check ``ids``: ``--llem-skip all``,
    ``--skip-check gpu-idle``, ``execution.skip_checks in study.yaml (gpu-idle)``."""
    origin = settings.skip_origin or "--llem-skip"
    return f"{origin} {ids}" if " " not in origin else f"{origin} ({ids})"


def result_of_phase(
    item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport, cid: str, tier: int
) -> CheckResult | None:
    """The result a test phase decides (None when it decides nothing); adjusts ``report``."""
    exc = call.excinfo.value if call.excinfo else None
    verdict = item.stash.get(VERDICT_KEY, None) or CheckResult()
    if isinstance(exc, CheckEnded):
        result = exc.result.placed(cid, tier)
        if isinstance(exc, CheckWarned):
            report.outcome, report.longrepr = "passed", None
        elif result.finding:
            finding = result.finding  # shown by pytest: a tool's escapes made printable
            shown = (f"[{cid}] {finding.message}", finding.fix_line())
            report.longrepr = "\n".join(printable(line) for line in shown)
    elif isinstance(exc, NotRun):
        result = CheckResult(cid, tier, "not-run", reason=str(exc.msg))
    elif isinstance(exc, pytest.skip.Exception):
        result = CheckResult(cid, tier, "skipped", reason=str(exc.msg))
    elif exc is not None:
        if call.when == "teardown" and report.outcome != "failed":
            return None
        result = CheckResult(cid, tier, "failed", finding=_crash(exc).placed(cid, tier).finding)
    elif call.when == "call":
        result = verdict.placed(cid, tier)
        result.outcome = "passed"
    else:
        return None
    if not result.details:
        result.details = dict(verdict.details)
    result.reason = result.reason or verdict.reason
    result.cached = bool(result.details.get("cached"))
    return result


def _crash(exc: BaseException) -> CheckResult:
    """A check that raised something else (a plain assert, a bug): `check_error`."""
    text = str(exc).strip()
    message = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, AssertionError) and not text:
        message = "assertion failed"
    finding = Finding.of(
        "check_error",
        message,
        fix="See the check's traceback in the pytest output",
        details={"exception": type(exc).__name__},
    )
    return CheckResult(outcome="failed", finding=finding)


def host_summary(checks: list[CheckResult]) -> dict[str, Any]:
    """The JSON report's ``host`` block; without host-driver (the measurement tier alone), what
    the measurement checks read from the same ``nvidia-smi -q``."""
    from .domain.check_ids import MEASUREMENT_IDS

    by_id = {c.id: c.details for c in checks}
    daemon, driver = by_id.get("docker-daemon", {}), by_id.get("host-driver", {})
    if not driver.get("driver_version"):
        driver = next(
            (c.details for c in checks if c.id in MEASUREMENT_IDS and c.details.get("gpus")),
            driver,
        )
    return {
        "docker_server_version": daemon.get("server_version", ""),
        "driver_version": driver.get("driver_version", ""),
        "cuda_version": driver.get("cuda_version", ""),
        "gpus": [{k: g.get(k) for k in ("index", "name", "uuid")} for g in driver.get("gpus", [])],
        "remote_daemon": bool(daemon.get("remote_daemon", False)),
    }
