"""Pre-flight mode: collection of the built-in checks, ordering, gating, outcomes, report."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from .checking import CheckFailed, CheckWarned, NotRun
from .context import VERDICT_KEY, CheckContext
from .domain.report import Finding, Report
from .facts import Facts, PreparedFacts, new_facts
from .session import BUILTIN_IDS, Outcomes
from .settings import Settings

PREFLIGHT_KEY = pytest.StashKey["Preflight"]()


def checks_dir() -> Path:
    """Where the built-in checks are, installed (`pytest_llem/checks`) or in a checkout."""
    import importlib.util

    spec = importlib.util.find_spec("pytest_llem.checks")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).resolve().parent


class Preflight:
    """One session's settings, facts and outcomes (also on each xdist worker)."""

    def __init__(self, settings: Settings, facts: Facts | None = None) -> None:
        self.settings = settings
        self.facts = facts if facts is not None else new_facts(settings)
        self.outcomes = Outcomes()

    def context(self, item: pytest.Item) -> CheckContext:
        return CheckContext(self, item)

    def probe_eligible(self, image: str) -> bool:
        if self.outcomes.outcome(f"cuda-compat[{image}]") == "failed":
            return False
        return self.facts.image(image).info is not None


def _prepared_facts(config: pytest.Config, settings: Settings) -> Facts | None:
    """The handed-over facts, when they were gathered for these very settings."""
    for plugin in config.pluginmanager.get_plugins():
        if isinstance(plugin, PreparedFacts) and plugin.facts.settings.same_facts(settings):
            return plugin.facts
    return None


def marker_info(item: pytest.Item) -> tuple[str, int] | None:
    """(base id, tier) of a preflight-marked item, else None."""
    marker = item.get_closest_marker("preflight")
    if marker is None:
        return None
    tier = int(marker.kwargs.get("tier", marker.args[0] if marker.args else 1))
    base = marker.kwargs.get("id") or item.name.split("[")[0]
    for prefix in ("test_", "check_"):
        if base.startswith(prefix) and "id" not in marker.kwargs:
            base = base[len(prefix) :].replace("_", "-")
    return str(base), tier


def check_id(item: pytest.Item, base: str) -> str:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return base
    if "llem_image" in callspec.params:
        return f"{base}[{callspec.params['llem_image']}]"
    return f"{base}[{callspec.id}]"


class ChecksDirectory(pytest.Directory):
    """The built-in checks, imported as modules of the installed package (never by path)."""

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        for path in sorted(self.path.glob("*.py")):
            if not path.name.startswith("_"):
                yield CheckModule.from_parent(self, path=path)


class WayToChecks(pytest.Directory):
    """A directory above the checks: its one child is the next directory towards them."""

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        target = checks_dir()
        child = self.path / target.relative_to(self.path).parts[0]
        node = self.ihook.pytest_collect_directory(path=child, parent=self)
        if node is not None:
            yield node


class CheckModule(pytest.Module):
    def _getobj(self) -> Any:
        import importlib

        return importlib.import_module(f"pytest_llem.checks.{self.path.stem}")


class PreflightHooks:
    def __init__(self, config: pytest.Config) -> None:
        from .domain.imageref import invalid_image_message

        self.config = config
        settings = Settings.from_config(config)
        for image in settings.images:
            problem = invalid_image_message("--llem-image", image)
            if problem:
                raise pytest.UsageError(problem)
        if settings.json_path:
            parent = Path(settings.json_path).resolve().parent
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                raise pytest.UsageError(
                    f"--llem-json: cannot write {settings.json_path}: {parent} is not a "
                    "writable directory"
                )
        self.preflight = Preflight(settings, _prepared_facts(config, settings))
        config.stash[PREFLIGHT_KEY] = self.preflight
        # A pre-flight reports every failure of a tier together: -x / --maxfail would hide some.
        config.option.maxfail = 0
        self.checks_dir = checks_dir()
        explicit = config.args_source == pytest.Config.ArgsSource.ARGS
        given = [Path(a).resolve() for a in config.args] if explicit else []
        # The checks' own directory may be named too (llem does, to keep pytest away from the
        # caller's directory and its conftest.py); it is collected once either way.
        self.user_paths = [p for p in given if p != self.checks_dir]
        config.args = [str(self.checks_dir), *(str(p) for p in self.user_paths)]
        self.preflight.facts.start()  # the read-only commands overlap collection
        self.interrupted_by: int | None = None  # the signal that stopped the session
        self._previous_sigterm: Any = None
        if threading.current_thread() is threading.main_thread() and signal.getsignal(
            signal.SIGTERM
        ) in (signal.SIG_DFL, None):
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.interrupted_by = signal.SIGTERM
        raise KeyboardInterrupt("SIGTERM")

    def pytest_unconfigure(self) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)

    # --- collection -------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path: Path, parent: pytest.Collector) -> Any:
        if path == self.checks_dir:
            return ChecksDirectory.from_parent(parent, path=path)
        if path in self.checks_dir.parents and not any(
            p == path or path in p.parents for p in self.user_paths
        ):
            # A directory pytest walks through to reach the checks: never list it (it may be
            # unreadable, and nothing else in it is ours to collect).
            return WayToChecks.from_parent(parent, path=path)
        return None

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        path = collection_path.resolve()
        if path == self.checks_dir or path in self.checks_dir.parents:
            return None  # the checks, and the directories pytest walks down to reach them
        if any(path == p or p in path.parents or path in p.parents for p in self.user_paths):
            return None
        return True

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "llem_image" in metafunc.fixturenames:
            images = list(self.preflight.settings.images)
            metafunc.parametrize("llem_image", images, ids=images)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        yield
        # Runs after every other reordering plugin: keep preflight items, in a stable order.
        keep: list[tuple[tuple[int, str, int], pytest.Item]] = []
        dropped: list[pytest.Item] = []
        for index, item in enumerate(items):
            info = marker_info(item)
            if info is None:
                dropped.append(item)
                continue
            base, tier = info
            item.stash[ITEM_KEY] = (check_id(item, base), base, tier)
            keep.append(((tier, base, index), item))
        keep.sort(key=lambda pair: pair[0])
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = [item for _, item in keep]
        for order, item in enumerate(items):
            item.stash[ORDER_KEY] = order
        self._validate_skip([item.stash[ITEM_KEY] for item in items])

    def _validate_skip(self, ids: list[tuple[str, str, int]]) -> None:
        known = {"all", *BUILTIN_IDS} | {cid for cid, _, _ in ids} | {b for _, b, _ in ids}
        unknown = sorted(self.preflight.settings.skip - known)
        if unknown:
            raise pytest.UsageError(
                f"--llem-skip: unknown check id {', '.join(map(repr, unknown))}; valid ids: "
                + ", ".join(sorted(known))
            )

    # --- running ----------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        cid, base, tier = item.stash[ITEM_KEY]
        skip = self.preflight.settings.skip
        if {"all", cid, base} & skip:
            pytest.skip(f"skipped by --llem-skip {next(iter({'all', cid, base} & skip))}")
        blocking = self.preflight.outcomes.hard_failures_before(tier)
        if blocking:
            raise NotRun(f"not run: {', '.join(blocking)} failed")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        cid, _base, tier = item.stash[ITEM_KEY]
        report.llem_id = cid  # type: ignore[attr-defined]
        report.llem_order = item.stash[ORDER_KEY]  # type: ignore[attr-defined]
        data = outcome_of(item, call, report, cid, tier)
        if data is not None:
            report.llem = data  # type: ignore[attr-defined]
            finding = data.get("finding")
            if finding:
                item.user_properties.append(("llem_cause", finding["cause"]))
            item.user_properties.append(("llem_outcome", data["outcome"]))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        cid = getattr(report, "llem_id", None)
        if cid is None:
            return
        outcomes = self.preflight.outcomes
        outcomes.add_duration(cid, report.duration)
        data = getattr(report, "llem", None)
        if data is not None:
            outcomes.record(data, getattr(report, "llem_order", 0))

    # --- the end ----------------------------------------------------------------------

    def report(self) -> Report:
        return self.preflight.outcomes.report(interrupted=self.interrupted_by is not None)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.preflight.facts.close()
        if self.interrupted_by is not None:
            session.exitstatus = 128 + self.interrupted_by  # 130 Ctrl-C, 143 SIGTERM
        if hasattr(self.config, "workerinput"):
            return
        path = self.preflight.settings.json_path
        if path:
            write_json(Path(path), self.report())

    def pytest_keyboard_interrupt(self) -> None:
        from .host.proc import kill_all

        if self.interrupted_by is None:
            self.interrupted_by = signal.SIGINT
        kill_all()
        self.preflight.facts.close()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput"):
            return
        report = self.report()
        text = report.render()
        terminalreporter.section("llem pre-flight")
        if text:
            for line in text.splitlines():
                terminalreporter.line(line)
        else:
            terminalreporter.line(f"Docker pre-flight passed ({len(report.checks)} checks)")


ITEM_KEY = pytest.StashKey[tuple[str, str, int]]()
ORDER_KEY = pytest.StashKey[int]()


def outcome_of(
    item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport, cid: str, tier: int
) -> dict[str, Any] | None:
    """The llem outcome a phase decides (None when it decides nothing); adjusts ``report``."""
    exc = call.excinfo.value if call.excinfo else None
    verdict = item.stash.get(VERDICT_KEY, None)
    base: dict[str, Any] = {"id": cid, "tier": tier, "reason": "", "details": {}}
    if verdict is not None:
        base["details"] = verdict.details
        base["reason"] = verdict.reason
        base["cached"] = bool(verdict.details.get("cached"))
    if isinstance(exc, (CheckFailed, CheckWarned)):
        finding = exc.finding
        finding.id, finding.tier = cid, tier
        warning = isinstance(exc, CheckWarned)
        finding.severity = "warning" if warning else "error"
        base.update(
            outcome="warning" if warning else "failed",
            finding=finding_dict(finding),
            details=finding.details or base["details"],
        )
        if warning:
            report.outcome = "passed"
            report.longrepr = None
        else:
            report.longrepr = f"[{cid}] {finding.message}\n{finding.fix_line()}"
        return base
    if isinstance(exc, NotRun):
        base.update(outcome="not-run", reason=str(exc.msg))
        return base
    if isinstance(exc, pytest.skip.Exception):
        base.update(outcome="skipped", reason=str(exc.msg))
        return base
    if exc is not None:
        if call.when == "teardown" and report.outcome != "failed":
            return None
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, AssertionError) and not str(exc).strip():
            message = "assertion failed"
        finding = Finding(
            cid,
            tier,
            "check_error",
            message,
            fix="See the check's traceback in the pytest output",
            details={"exception": type(exc).__name__},
        )
        base.update(outcome="failed", finding=finding_dict(finding))
        return base
    if call.when == "call":
        base.update(outcome="passed")
        return base
    return None


def finding_dict(finding: Finding) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(finding)


def write_json(path: Path, report: Report) -> None:
    try:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(
            json.dumps(report.to_json(), indent=2, default=str, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        os.replace(tmp, path)
    except OSError as exc:
        print(f"llem: cannot write the JSON report to {path}: {exc.strerror}", file=sys.stderr)
