"""pytest-llem's pytest hooks: the table of contents of the plugin's behaviour.

Without ``--llem-preflight`` only the options and the marker are registered. With it,
`PreflightHooks` runs the session: collect the checks (`collect`; each id once), order and gate
them, turn each phase into one `CheckResult` (`session`), and report; the verdict (passed,
failed, incomplete, skipped) decides the exit status. `XdistHooks` keeps every check on one
worker, in order, so gating holds under ``-n``, and tells the controller what each worker
collected, deselected or crashed on.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from .settings import setting_fields

if TYPE_CHECKING:
    from .context import CheckContext
    from .domain.fleet import FleetReport
    from .domain.report import Report
    from .fleet import Fleet
    from .host.jsonfile import ReportTarget
    from .session import Session
    from .settings import PreflightSettings


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llem", "Docker/NVIDIA GPU pre-flight (pytest-llem)")
    group.addoption(
        "--llem-preflight",
        action="store_true",
        default=False,
        help="run the Docker pre-flight checks (and preflight-marked items)",
    )
    group.addoption(
        "--llem-config",
        metavar="PATH",
        default=None,
        help="study YAML: its Docker runners' images and docker: settings",
    )
    for f in setting_fields():  # every other option is a PreflightSettings field
        kind, meta = f.metadata["kind"], f.metadata
        if kind == "flag":
            group.addoption(meta["option"], action="store_true", default=False, help=meta["help"])
        else:
            many = kind in ("images", "ids", "indices")
            group.addoption(
                meta["option"],
                action="append" if many else "store",
                default=[] if many else None,
                metavar=meta["metavar"],
                help=meta["help"],
            )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "preflight(tier=1, id=None): a pytest-llem pre-flight check of the given tier and id",
    )
    if not config.getoption("llem_preflight", False):
        return
    hooks = PreflightHooks(config)
    config.pluginmanager.register(hooks, "llem-preflight")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(hooks), "llem-xdist")


@pytest.fixture
def llem(request: pytest.FixtureRequest) -> CheckContext:
    """The pre-flight facts and verdict helpers for the current check."""
    from .session import SESSION_KEY

    session = request.config.stash.get(SESSION_KEY, None)
    if session is None:
        pytest.skip("pytest-llem checks run only with --llem-preflight")
    return session.context(request.node)


def settings_of(config: pytest.Config) -> PreflightSettings:
    """The session's settings: the options, over a `--llem-config` study's, over the defaults.

    An invalid value is a usage error naming its option (exit status 4).
    """
    from .settings import PreflightSettings, SettingError

    handed = config.stash.get(SETTINGS_KEY, None)
    if handed is not None:  # from llem (or another caller of pytest.main), as an object
        return handed
    given = getattr(config, "workerinput", {}).get(WORKER_SETTINGS)
    if given is not None:  # an xdist worker, maybe on another host: the controller's settings
        return settings_from_plain(given)
    below = PreflightSettings()
    path = config.option.llem_config
    if path:
        from .errors import ConfigError
        from .run.runners import preflight_settings_from_study

        try:
            below = preflight_settings_from_study(path)
        except ConfigError as exc:
            raise pytest.UsageError(f"--llem-config: {exc}") from None
    try:
        settings = PreflightSettings.from_options(vars(config.option), below)
    except SettingError as exc:
        raise pytest.UsageError(str(exc)) from None
    if config.getoption("dist", "no") == "each":  # a fleet: the hosts' GPUs, not this job's
        return settings
    from .domain.allocation import allocation_of  # inside a Slurm job: its GPUs by default

    return settings.with_allocation(allocation_of(os.environ))


class PreflightHooks:
    """The hooks of a pre-flight session."""

    def __init__(self, config: pytest.Config) -> None:
        from .collect import checks_dir
        from .facts import Facts
        from .progress import Progress
        from .session import FACTS_KEY, SESSION_KEY, Session
        from .signals import sigterm_interrupts

        self.config = config
        settings = settings_of(config)
        worker = getattr(config, "workerinput", None)
        # Where the JSON report goes, judged before anything runs (the controller writes it).
        self.json_target = (
            _json_target(config, settings.json_path)
            if settings.json_path and worker is None
            else None
        )
        explicit = config.args_source == pytest.Config.ArgsSource.ARGS
        given = [Path(a).resolve() for a in config.args] if explicit else []
        # The checks' own directory may be named too (llem does, to keep pytest away from the
        # caller's directory and its conftest.py); it is collected once either way.
        self.user_paths = [p for p in given if p != checks_dir()]
        config.args = [str(checks_dir()), *(str(p) for p in self.user_paths)]
        handed = config.stash.get(FACTS_KEY, None)  # from llem, with its own progress
        facts = handed or Facts()
        # Long work shows progress on stderr, except in pytest-xdist's controller (no checks).
        controller = getattr(config.option, "dist", "no") != "no" and not hasattr(
            config, "workerinput"
        )
        self._progress = None if handed or controller else Progress.to_stderr_fd()
        if handed is None:
            facts.progress = self._progress
        self.session = Session(settings, facts.adopt(settings))
        config.stash[SESSION_KEY] = self.session
        # A pre-flight reports every failure of a tier together: -x / --maxfail would hide
        # some (and so would --sw: see pytest_sessionstart).
        config.option.maxfail = 0
        self.session.stopped = _no_run_reason(config)  # --co, --setup-only, --setup-plan
        if config.getoption("lf", False):  # it collects only the files of the last failures
            self.session.not_collected = "not collected (--lf: only what failed last time)"
        self.fleet = _fleet(config, self.session)
        self.verdict: Report | FleetReport | None = None  # made at the session's end
        self._ours = False  # while this plugin deselects items itself
        # Check id, tier and place of each item a report came from (an xdist worker's crash
        # is reported by node id alone).
        self._items: dict[str, tuple[str, int, int]] = {}
        # The controller of -n N or of a fleet runs no check: it starts no host work; nor
        # does a session that runs none (--co, --setup-only).
        if self.fleet is None and not _xdist_controller(config) and not self.session.stopped:
            self.session.facts.start_host()  # the read-only queries overlap collection
            if not self.user_paths and not _xdist_worker(config):
                # The built-in checks alone, in this process: their image work can start now.
                self.session.facts.start_image_work()
        self._signals = contextlib.ExitStack()
        self.signals = self._signals.enter_context(sigterm_interrupts(keep_others=True))

    def pytest_unconfigure(self) -> None:
        self._signals.close()
        if self._progress is not None:
            self._progress.stream.close()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self) -> None:
        # --sw / --stepwise / --sw-skip would stop at the first failure and deselect what ran
        # before it: a pre-flight reports every failure together (as with -x, --maxfail).
        manager = self.config.pluginmanager
        if manager.get_plugin("stepwiseplugin") is not None:
            manager.unregister(name="stepwiseplugin")

    # --- collection -------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path: Path, parent: pytest.Collector) -> Any:
        from .collect import directory_node

        return directory_node(path, parent, self.user_paths)

    def pytest_ignore_collect(self, collection_path: Path) -> bool | None:
        from .collect import ignored

        return True if ignored(collection_path, self.user_paths) else None

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        settings = self.session.settings
        if "llem_image" in metafunc.fixturenames:
            images = list(settings.images_to_check)
            metafunc.parametrize("llem_image", images, ids=images)
        if "llem_request" in metafunc.fixturenames:  # one per (image, GPU request)
            from .domain.check_ids import BY_ID, param_ids

            requests = list(settings.launch_requests)
            labels = param_ids(BY_ID["gpu-in-container"], (), requests)
            ids = [label.partition("[")[2][:-1] for label in labels]
            metafunc.parametrize("llem_request", requests, ids=ids)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        from .collect import ITEM_KEY, of_other_kinds, order_checks

        self._unique_ids(items)  # all of them, before any is deselected
        yield  # after every other reordering plugin: keep the checks, in a stable order
        self._ours = True
        dropped = order_checks(items, tiers=self._tiers())
        if items and self.fleet is None and not self.session.settings.skipped_by:
            other = of_other_kinds(items, self.session.facts.check_kinds(waiting=False))
            if other:  # another engine's checks (or no CDI request to check a spec for)
                dropped += other
                items[:] = [item for item in items if item not in other]
        if self.session.settings.skipped_by:  # the study skips the whole pre-flight
            dropped, items[:] = dropped + items, []
        if self.fleet is not None:  # (collected here only when no host could be reached)
            dropped, items[:] = dropped + items, []
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        kept = [item.stash[ITEM_KEY] for item in items]
        self._validate_skip(kept)
        for cid, _base, tier in kept:
            self.session.expect(cid, tier)
        output = getattr(config, "workeroutput", None)
        if output is not None:  # what the controller holds the session to
            output[WORKER_EXPECTED] = self.session.expected()

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        """Checks another plugin deselected (-k, -m, --deselect, --lf): expected, not run."""
        from .collect import check_id, marker_info

        if self._ours:
            return
        tiers = self._tiers()
        if not self.session.settings.skipped_by:  # (another engine's checks are not expected)
            from .collect import of_other_kinds

            other = of_other_kinds(items, self.session.facts.check_kinds(waiting=False))
            items = [item for item in items if item not in other]
        for item in items:
            info = marker_info(item)
            if info is not None and (tiers is None or info[1] in tiers):
                reason = _deselected_by(self.config, item)
                self.session.expect(check_id(item, info[0]), info[1], not_run=reason)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:  # checks it may hold are unknown: the collector stands for them
            where = report.nodeid or "."
            self.session.expect(where, 0, not_run=f"not collected: collection error in {where}")

    def _unique_ids(self, items: list[pytest.Item]) -> None:
        """No two checks share an id, and no other check takes a built-in check's id."""
        from .collect import check_id, checks_dir, marker_info
        from .domain.check_ids import BUILTIN_IDS

        checks = [(item, info) for item in items if (info := marker_info(item)) is not None]
        ours = {info[0]: item for item, info in checks if item.path.parent == checks_dir()}
        seen: dict[str, pytest.Item] = {}
        for item, (base, _tier) in checks:
            taken = base.partition("[")[0]
            if taken in BUILTIN_IDS and item.path.parent != checks_dir():
                owner = ours.get(taken)
                self._usage_error(
                    f"check {item.nodeid} has the id {base!r} of the built-in check "
                    f"{owner.nodeid if owner else taken}: give it an id of its own "
                    "(@pytest.mark.preflight(id=...))"
                )
            cid = check_id(item, base)
            if cid in seen:
                self._usage_error(
                    f"two checks have the id {cid!r}: {seen[cid].nodeid} and {item.nodeid}; "
                    "give each an id of its own (@pytest.mark.preflight(id=...))"
                )
            seen[cid] = item

    def _usage_error(self, message: str) -> NoReturn:
        """A usage error (exit status 4), also when raised on an xdist worker."""
        output = getattr(self.config, "workeroutput", None)
        if output is not None:  # the controller raises it again (XdistHooks)
            output[WORKER_USAGE_ERROR] = message
        self.config.stash[USAGE_ERROR_KEY] = message  # (what llem says of it)
        raise pytest.UsageError(message)

    def _tiers(self) -> frozenset[int] | None:
        """The tiers this session runs (None: all); only the measurement tier for a study
        whose experiments all run locally."""
        from .domain.check_ids import MEASUREMENT_TIER

        return frozenset({MEASUREMENT_TIER}) if self.session.settings.measurement_only else None

    def _validate_skip(self, ids: list[tuple[str, str, int]]) -> None:
        from .session import BUILTIN_IDS

        known = {"all", *BUILTIN_IDS} | {cid for cid, _, _ in ids} | {b for _, b, _ in ids}
        unknown = sorted(self.session.settings.skip - known)
        if unknown:
            named = self.session.settings.skip_origin or "--llem-skip"
            self._usage_error(
                f"{named}: unknown check id {', '.join(map(repr, unknown))}; valid ids: "
                + ", ".join(sorted(known))
            )

    # --- running ----------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        from .checking import NotRun
        from .collect import ITEM_KEY
        from .domain.check_ids import skipped_as
        from .session import skip_named

        cid, base, tier = item.stash[ITEM_KEY]
        settings = self.session.settings
        named = skipped_as(settings.skip, cid) or (base if base in settings.skip else None)
        if named is not None:
            pytest.skip(f"skipped by {skip_named(settings, named)}")
        blocking = self.session.hard_failures_before(tier)
        if blocking:
            raise NotRun(f"not run: {', '.join(blocking)} failed")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        from .collect import ITEM_KEY, ORDER_KEY
        from .session import result_of_phase

        report = yield
        cid, _base, tier = item.stash[ITEM_KEY]
        report.llem_id = cid  # type: ignore[attr-defined]
        report.llem_tier = tier  # type: ignore[attr-defined]
        report.llem_order = item.stash[ORDER_KEY]  # type: ignore[attr-defined]
        result = result_of_phase(item, call, report, cid, tier)
        if result is not None:
            report.llem = result.to_dict()  # type: ignore[attr-defined]  # crosses to xdist
            if result.finding:
                item.user_properties.append(("llem_cause", result.finding.cause))
            item.user_properties.append(("llem_outcome", result.outcome))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from .domain.report import CheckResult

        cid = getattr(report, "llem_id", None)
        if cid is None:
            return
        order = getattr(report, "llem_order", 0)
        self._items[report.nodeid] = (cid, getattr(report, "llem_tier", 0), order)
        session = self.session_of(getattr(report, "node", None))
        session.add_duration(cid, report.duration)
        data = getattr(report, "llem", None)
        if data is not None:
            session.record(CheckResult.from_dict(data), order)

    def session_of(self, node: Any) -> Session:
        """The session of the host an xdist node runs on (a fleet has one per host)."""
        if self.fleet is not None:
            return self.fleet.session_of(node) or self.session
        return self.session

    def crashed(self, nodeid: str, node: Any) -> None:
        """An xdist worker died while running item ``nodeid``: the check crashed (it fails
        with cause `check_error`); what that worker had still to run did not run."""
        from .domain.report import CheckResult, Finding

        worker = getattr(getattr(node, "gateway", None), "id", None) or "a worker"
        cid, tier, order = self._items.get(nodeid, (nodeid, 0, len(self._items)))
        session = self.session_of(node)
        finding = Finding.of(
            "check_error",
            f"the check ended its pytest-xdist worker {worker} (it exited or was killed)",
            fix="Make the check return or raise: it must not end its process",
            details={"worker": worker, "node_id": nodeid},
        )
        finding.id, finding.tier = cid, tier
        session.record(CheckResult(cid, tier, "failed", finding=finding), order)
        session.stopped = session.stopped or f"not run: pytest-xdist worker {worker} crashed"

    # --- the end ----------------------------------------------------------------------------

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        exc = excinfo.value
        if isinstance(exc, pytest.Session.Interrupted):  # pytest stopped (collection errors)
            self.session.stopped = self.session.stopped or f"not run: {exc}"
        elif isinstance(exc, pytest.exit.Exception):
            self.session.stopped = self.session.stopped or f"not run: pytest.exit(): {exc.msg}"
        elif self.session.interrupted_by is None:
            self.session.interrupted_by = self.signals.signal_of(exc)
        self.session.facts.close()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """The verdict (DESIGN §10) decides the exit status: 0 passed or skipped, 1 failed or
        incomplete (130 / 143 interrupted). A session that ended in a usage or internal error
        has no verdict: it writes no JSON report that could be read as one."""
        self.session.facts.close()
        if _xdist_worker(self.config):
            return
        code = session.exitstatus
        if code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR):
            return
        stop = session.shouldstop or session.shouldfail
        if stop and not self.session.stopped:
            self.session.stopped = f"not run: the session stopped early ({stop})"
        report = self.verdict = self.report()
        if self.session.interrupted_by is not None:
            session.exitstatus = 128 + self.session.interrupted_by  # 130 Ctrl-C, 143 SIGTERM
        elif code in (
            pytest.ExitCode.OK,
            pytest.ExitCode.TESTS_FAILED,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        ):
            ok = pytest.ExitCode.OK
            session.exitstatus = ok if report.ok else pytest.ExitCode.TESTS_FAILED
        self._junit_verdict(report)
        target = self.json_target
        if target is not None:
            from .host.jsonfile import dumps, write_report

            try:
                write_report(target, dumps(report.to_json()))
            except OSError as exc:
                self.config.stash[JSON_ERROR_KEY] = f"{target.given}: {exc.strerror or exc}"
                if session.exitstatus == 0:
                    session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def _junit_verdict(self, report: Report | FleetReport) -> None:
        """`--junitxml`: the file pytest wrote gets the verdict and a failing case per check
        that did not run (pytest has no report of them)."""
        xmlpath = getattr(self.config.option, "xmlpath", None)
        if not xmlpath:
            return
        from .domain.junit import with_missing

        where = self.config.invocation_params.dir  # (what pytest's own path is relative to)
        path = where / Path(os.path.expandvars(xmlpath)).expanduser()
        try:
            text = with_missing(path.read_text("utf-8"), report.status, report.missing)
            path.write_text(text, "utf-8")
        except (OSError, ValueError) as exc:
            self.config.stash[JUNIT_ERROR_KEY] = f"{path}: {getattr(exc, 'strerror', None) or exc}"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from .domain.report import Report

        report = self.verdict
        if report is None:  # a worker, or no verdict (a usage error)
            return
        text = report.render()
        if not text and isinstance(report, Report):  # (a fleet's ends with its summary line)
            text = f"Docker pre-flight passed ({len(report.checks)} checks)"
        terminalreporter.section("llem pre-flight")
        for line in text.split("\n"):
            terminalreporter.line(line)
        for key, what in ((JSON_ERROR_KEY, "JSON"), (JUNIT_ERROR_KEY, "JUnit")):
            error = self.config.stash.get(key, None)
            if error:
                terminalreporter.line(f"llem: cannot write the {what} report: {error}", red=True)

    def report(self) -> Report | FleetReport:
        """The session's report; a fleet's has one per host."""
        if self.fleet is not None:
            return self.fleet.report(
                interrupted=self.session.interrupted_by is not None, stopped=self.session.stopped
            )
        return self.session.report()


def _json_target(config: pytest.Config, path: str) -> ReportTarget:
    """Where `--llem-json` goes; a usage error for a path no report may go to, for ``-``
    (stdout is pytest's own output) and for the file `--junitxml` names (one would be lost)."""
    from .host.jsonfile import STDOUT, ReportPathError, report_target, same_destination

    if path == STDOUT:
        raise pytest.UsageError(
            "--llem-json -: stdout is pytest's own output; name a file (or run "
            "`llem preflight --json -`, which writes the JSON alone to stdout)"
        )
    try:
        target = report_target(path)
    except ReportPathError as exc:
        raise pytest.UsageError(f"--llem-json: cannot write {path}: {exc}") from None
    xmlpath = getattr(config.option, "xmlpath", None)
    if xmlpath:
        where = config.invocation_params.dir  # (what pytest's own path is relative to)
        junit = where / Path(os.path.expandvars(xmlpath)).expanduser()
        with contextlib.suppress(ReportPathError):  # (pytest says what is wrong with it)
            if same_destination(target, report_target(str(junit))):
                raise pytest.UsageError(
                    f"--llem-json and --junitxml name one file ({path}, {xmlpath}): one "
                    "report would be lost; give each its own path"
                )
    return target


def _fleet(config: pytest.Config, session: Session) -> Fleet | None:
    """With ``--dist each`` on the controller: the fleet, its hosts asked whether they can run
    the pre-flight; only those that can are started."""
    tx = config.getoption("tx", None)
    if hasattr(config, "workerinput") or config.getoption("dist", "no") != "each" or not tx:
        return None
    from .errors import ConfigError
    from .fleet import Fleet, gateways_of

    try:
        gateways = gateways_of(tx)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    fleet = Fleet(gateways, session.settings, session.facts)
    config.stash[FLEET_KEY] = fleet
    fleet.ask_hosts()
    # The hosts that answered are started by the fleet's controller (`XdistHooks`), not by
    # pytest-xdist's own, which is kept out: it starts only with --tx given.
    config.option.tx = []
    return fleet


def settings_to_plain(settings: PreflightSettings) -> dict[str, Any]:
    """The settings as plain lists and values (what crosses to an xdist worker)."""
    from dataclasses import fields

    def plain(value: Any) -> Any:
        if isinstance(value, frozenset):
            return sorted(value)
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    return {f.name: plain(getattr(settings, f.name)) for f in fields(settings)}


def settings_from_plain(given: dict[str, Any]) -> PreflightSettings:
    """`settings_to_plain`'s settings back (the fields this version knows)."""
    from dataclasses import fields

    from .settings import PreflightSettings

    known = {f.name for f in fields(PreflightSettings)}
    # (each field's check turns the plain lists back into what it holds)
    return PreflightSettings(**{k: v for k, v in given.items() if k in known})


# Settings a caller of pytest.main hands the session as an object (llem does).
SETTINGS_KEY = pytest.StashKey["PreflightSettings"]()
JSON_ERROR_KEY = pytest.StashKey[str]()
JUNIT_ERROR_KEY = pytest.StashKey[str]()
USAGE_ERROR_KEY = pytest.StashKey[str]()  # the usage error that ended the session
FLEET_KEY = pytest.StashKey["Fleet"]()
# What the controller hands each xdist worker (`workerinput`), which may be on another host.
WORKER_SETTINGS = "llem_settings"
# What a worker hands back (`workeroutput`): the checks it collected (id -> [tier, why it will
# not run or None]), and a usage error that stopped its collection.
WORKER_EXPECTED = "llem_expected"
WORKER_USAGE_ERROR = "llem_usage_error"


def _no_run_reason(config: pytest.Config) -> str | None:
    """Why no check runs in this session at all (--co, --setup-only, --setup-plan)."""
    option = config.option
    if getattr(option, "collectonly", False):
        return "not run: collect only (--co)"
    if getattr(option, "setupplan", False):
        return "not run: --setup-plan"
    if getattr(option, "setuponly", False):
        return "not run: --setup-only"
    return None


def _deselected_by(config: pytest.Config, item: pytest.Item) -> str:
    """Which of pytest's own selections deselected ``item``, as far as the options tell."""
    prefixes = tuple(config.getoption("deselect", None) or ())
    if prefixes and item.nodeid.startswith(prefixes):
        return "deselected by --deselect"
    given = []
    keyword = config.getoption("keyword", "")
    if keyword:
        given.append(f"-k {keyword!r}")
    markers = config.getoption("markexpr", "")
    if markers:
        given.append(f"-m {markers!r}")
    if config.getoption("lf", False):
        given.append("--lf")
    return "deselected by " + ", ".join(given) if given else "deselected"


def _xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _xdist_controller(config: pytest.Config) -> bool:
    """Whether this process hands the checks to xdist workers (and runs none itself)."""
    if _xdist_worker(config) or not config.pluginmanager.hasplugin("xdist"):
        return False
    option = config.option
    return bool(getattr(option, "numprocesses", None) or getattr(option, "tx", None))


class XdistHooks:
    """Every pre-flight item goes to one worker, in order, so gating holds; with ``--dist
    each`` every worker (host) runs every item, in order, and gates on its own, and a
    controller of ours starts and watches the hosts, so that one that fails fails alone."""

    def __init__(self, preflight: PreflightHooks) -> None:
        self.preflight = preflight

    def pytest_configure_node(self, node: Any) -> None:
        settings = self.preflight.session.settings.replace(json_path=None)
        node.workerinput[WORKER_SETTINGS] = settings_to_plain(settings)

    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        output = getattr(node, "workeroutput", None) or {}
        if output.get(WORKER_USAGE_ERROR):  # the worker stopped at a usage error: so do we
            self.preflight._usage_error(output[WORKER_USAGE_ERROR])
        session = self.preflight.session_of(node)
        for cid, (tier, why) in (output.get(WORKER_EXPECTED) or {}).items():
            session.expect(cid, tier, not_run=why)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """A fleet's hosts are started and watched by a controller of ours (pytest-xdist's
        own stops at the first host that fails to start, and waits for ever on one that
        stops answering); see `fleet_controller`."""
        fleet = self.preflight.fleet
        if fleet is None or session.config.getoption("collectonly", False):
            return  # (as pytest-xdist starts no worker to only collect)
        from .fleet_controller import FleetController

        controller = FleetController(session.config, fleet)
        session.config.pluginmanager.register(controller, "dsession")
        controller.start(session)

    def pytest_handlecrashitem(self, crashitem: str, report: Any, sched: Any) -> None:
        self.preflight.crashed(crashitem, getattr(report, "node", None))

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getoption("dist", "no") == "each":
            return None  # xdist's own: all items to every worker
        from xdist.scheduler import LoadScopeScheduling

        class OneScopeScheduling(LoadScopeScheduling):  # type: ignore[misc]
            """A single scope: tiers run in order on one worker, probes run in parallel there."""

            def _split_scope(self, nodeid: str) -> str:
                return "llem-preflight"

            def remove_node(self, node: Any) -> str | None:
                """A crashed worker's item is reported crashed, and the rest of its work is
                not run again elsewhere: a new worker would run it without the results of
                the earlier tiers (and run the crashing check again first)."""
                workload = self.assigned_work.pop(node)
                pending = [
                    nid for unit in workload.values() for nid, done in unit.items() if not done
                ]
                for other in self.assigned_work:
                    self._reschedule(other)
                return pending[0] if pending else None

        return OneScopeScheduling(config, log)
