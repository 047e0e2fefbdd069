"""pytest-llem's pytest hooks: the table of contents of the plugin's behaviour.

Without ``--llem-preflight`` only the options and the marker are registered. With it,
`PreflightHooks` runs the session: collect the checks (`collect`), order and gate them, turn
each phase into one `CheckResult` (`session`), and report. `XdistHooks` keeps every check on
one worker, in order, so gating holds under ``-n``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .settings import setting_fields

if TYPE_CHECKING:
    from .context import CheckContext
    from .domain.fleet import FleetReport
    from .domain.report import Report
    from .fleet import Fleet
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
        from .host.jsonfile import unwritable_reason
        from .progress import Progress
        from .session import FACTS_KEY, SESSION_KEY, Session
        from .signals import sigterm_interrupts

        self.config = config
        settings = settings_of(config)
        worker = getattr(config, "workerinput", None)
        if settings.json_path and worker is None:
            problem = unwritable_reason(Path(settings.json_path))
            if problem:
                raise pytest.UsageError(
                    f"--llem-json: cannot write {settings.json_path}: {problem}"
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
        # A pre-flight reports every failure of a tier together: -x / --maxfail would hide some.
        config.option.maxfail = 0
        self.fleet = _fleet(config, self.session)
        # The controller of -n N or of a fleet runs no check: it starts no host work.
        if self.fleet is None and not _xdist_controller(config):
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
        from .collect import ITEM_KEY, order_checks

        yield  # after every other reordering plugin: keep the checks, in a stable order
        dropped = order_checks(items, tiers=self._tiers())
        if self.session.settings.skipped_by:  # the study skips the whole pre-flight
            dropped, items[:] = dropped + items, []
        if self.fleet is not None:  # (collected here only when no host could be reached)
            dropped, items[:] = dropped + items, []
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        self._validate_skip([item.stash[ITEM_KEY] for item in items])

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
            raise pytest.UsageError(
                f"--llem-skip: unknown check id {', '.join(map(repr, unknown))}; valid ids: "
                + ", ".join(sorted(known))
            )

    # --- running ----------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        from .checking import NotRun
        from .collect import ITEM_KEY

        cid, base, tier = item.stash[ITEM_KEY]
        skipped_by = sorted({"all", cid, base} & self.session.settings.skip)
        if skipped_by:
            pytest.skip(f"skipped by --llem-skip {skipped_by[0]}")
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
        session = self.session
        if self.fleet is not None:  # the session of the host the report came from
            session = self.fleet.session_of(getattr(report, "node", None)) or session
        session.add_duration(cid, report.duration)
        data = getattr(report, "llem", None)
        if data is not None:
            session.record(CheckResult.from_dict(data), getattr(report, "llem_order", 0))

    # --- the end ----------------------------------------------------------------------------

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        if self.session.interrupted_by is None:
            self.session.interrupted_by = self.signals.signal_of(excinfo.value)
        self.session.facts.close()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.session.facts.close()
        if self.session.interrupted_by is not None:
            session.exitstatus = 128 + self.session.interrupted_by  # 130 Ctrl-C, 143 SIGTERM
        elif self._host_out_of_reach(session.exitstatus):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        elif self.session.settings.skipped_by and session.exitstatus == (
            pytest.ExitCode.NO_TESTS_COLLECTED
        ):  # the study skips the pre-flight: what llem does with it too
            session.exitstatus = pytest.ExitCode.OK
        path = self.session.settings.json_path
        if path and not hasattr(self.config, "workerinput"):
            from .host.jsonfile import write_json

            try:
                write_json(Path(path), self.report().to_json(), follow=True)
            except OSError as exc:
                self.config.stash[JSON_ERROR_KEY] = f"{path}: {exc.strerror or exc}"
                if session.exitstatus == 0:
                    session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput"):
            return
        report = self.report()
        text = report.render()
        if not text:  # (a fleet's always ends with its summary line)
            text = f"Docker pre-flight passed ({len(self.session.report().checks)} checks)"
        terminalreporter.section("llem pre-flight")
        for line in text.split("\n"):
            terminalreporter.line(line)
        error = self.config.stash.get(JSON_ERROR_KEY, None)
        if error:
            terminalreporter.line(f"llem: cannot write the JSON report: {error}", red=True)

    def _host_out_of_reach(self, exitstatus: int) -> bool:
        """A fleet whose checks passed (or none ran: no host reached) but a host was lost."""
        ok = exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        return self.fleet is not None and ok and self.report().status == "failed"

    def report(self) -> Report | FleetReport:
        """The session's report; a fleet's has one per host."""
        if self.fleet is not None:
            return self.fleet.report(interrupted=self.session.interrupted_by is not None)
        return self.session.report()


def _fleet(config: pytest.Config, session: Session) -> Fleet | None:
    """With ``--dist each`` on the controller: the fleet, its hosts asked whether they can run
    the pre-flight; only those that can are left to xdist."""
    tx = config.getoption("tx", None)
    if hasattr(config, "workerinput") or config.getoption("dist", "no") != "each" or not tx:
        return None
    from .fleet import Fleet, gateways_of

    fleet = Fleet(gateways_of(tx), session.settings, session.facts)
    config.stash[FLEET_KEY] = fleet
    config.option.tx = [gateway.spec for gateway in fleet.ask_hosts()]
    if config.getoption("maxworkerrestart", None) is None:
        config.option.maxworkerrestart = "0"  # a lost host is reported, not reconnected
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
    values = {k: v for k, v in given.items() if k in known}
    if "requests" in values:
        values["requests"] = tuple(tuple(pair) for pair in values["requests"])
    return PreflightSettings(**values)


# Settings a caller of pytest.main hands the session as an object (llem does).
SETTINGS_KEY = pytest.StashKey["PreflightSettings"]()
JSON_ERROR_KEY = pytest.StashKey[str]()
FLEET_KEY = pytest.StashKey["Fleet"]()
# What the controller hands each xdist worker (`workerinput`), which may be on another host.
WORKER_SETTINGS = "llem_settings"


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
    each`` every worker (host) runs every item, in order, and gates on its own."""

    def __init__(self, preflight: PreflightHooks) -> None:
        self.preflight = preflight

    def pytest_configure_node(self, node: Any) -> None:
        settings = self.preflight.session.settings.replace(json_path=None)
        node.workerinput[WORKER_SETTINGS] = settings_to_plain(settings)

    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        if self.preflight.fleet is not None:
            self.preflight.fleet.node_down(node, error)

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getoption("dist", "no") == "each":
            return None  # xdist's own: all items to every worker
        from xdist.scheduler import LoadScopeScheduling

        class OneScopeScheduling(LoadScopeScheduling):  # type: ignore[misc]
            """A single scope: tiers run in order on one worker, probes run in parallel there."""

            def _split_scope(self, nodeid: str) -> str:
                return "llem-preflight"

        return OneScopeScheduling(config, log)
