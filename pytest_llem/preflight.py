"""run_docker_preflight(): the checks through pytest.main, isolated from the caller's project."""

from __future__ import annotations

import io
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pluggy import HookimplMarker

from .errors import ConfigError, DockerPreFlightError, PreFlightError
from .settings import PreflightSettings, SettingError

if TYPE_CHECKING:
    import pytest

    from .domain.fleet import FleetReport
    from .domain.report import Report
    from .facts import Facts

# Environment that would let the caller's settings or plugins into our pytest run.
_ISOLATED_ENV = {
    "PYTEST_ADDOPTS": None,
    "PYTEST_PLUGINS": None,
    "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
}

# Built-in plugins a pre-flight has no use for; unraisableexception alone runs gc.collect()
# several times at the end of every session.
_UNNEEDED_PLUGINS = [
    arg
    for name in (
        "terminal",
        "cacheprovider",
        "unraisableexception",
        "threadexception",
        "doctest",
        "pastebin",
        "legacypath",
        "stepwise",
        "faulthandler",
        "junitxml",
        "logging",
        "warnings",
        "capture",
        "debugging",
        "setuponly",
        "setupplan",
        "tmpdir",
        "monkeypatch",
        "recwarn",
        "unittest",
        "assertion",
        "skipping",  # (the checks skip with pytest.skip(), which needs no plugin; no markers)
        "subtests",
    )
    for arg in ("-p", f"no:{name}")
]


# How long `llem` may let a probe that will surely run start before pytest is imported.
PROBE_HEAD_START_S = 0.5

# pytest's own marker (`pytest.hookimpl`), without importing pytest before the work has begun.
_hookimpl = HookimplMarker("pytest")


class _Handoff:
    """Hands the facts gathered so far to the session, and takes its report back."""

    def __init__(self, facts: Facts, settings: PreflightSettings) -> None:
        self.facts = facts
        self.settings = settings
        self.report: Report | None = None
        self.fleet_report: FleetReport | None = None
        self.usage_error: str | None = None

    @_hookimpl(tryfirst=True)  # before the plugin's own, which takes them
    def pytest_configure(self, config: pytest.Config) -> None:
        from .plugin import SETTINGS_KEY
        from .session import FACTS_KEY

        config.stash[FACTS_KEY] = self.facts
        config.stash[SETTINGS_KEY] = self.settings

    @_hookimpl(trylast=True)  # once the plugin has made its verdict
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from .plugin import USAGE_ERROR_KEY
        from .session import SESSION_KEY

        self.usage_error = session.config.stash.get(USAGE_ERROR_KEY, None)
        state = session.config.stash.get(SESSION_KEY, None)
        if state is not None:
            self.facts = state.facts
            self.report = state.report()
        from .plugin import FLEET_KEY

        fleet = session.config.stash.get(FLEET_KEY, None)
        if fleet is not None and state is not None:
            self.fleet_report = fleet.report(interrupted=state.interrupted_by is not None)


@contextmanager
def _isolated_environ(**more: str | None) -> Iterator[None]:
    changes = {**_ISOLATED_ENV, **more}
    saved = {key: os.environ.get(key) for key in changes}
    try:
        for key, value in changes.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def preflight_args() -> list[str]:
    """pytest arguments of an isolated pre-flight: no user ini, conftest, cache or plugins.
    (The settings are handed to the session as an object.)"""
    from .collect import checks_dir

    package_dir = str(Path(__file__).resolve().parent)
    return [  # (the plugin itself is handed to pytest.main: `-p` would scan every entry point)
        "--llem-preflight",
        "-c",
        os.devnull,
        f"--rootdir={package_dir}",
        f"--confcutdir={package_dir}",
        *_UNNEEDED_PLUGINS,
        # A path argument: without one pytest would look for conftest.py in the current directory.
        str(checks_dir()),
    ]


def fleet_args(hosts: Sequence[str], workdir: Path) -> list[str]:
    """pytest arguments of an isolated pre-flight on every host of ``hosts`` (``--tx``
    specs), run from ``workdir``, an empty private directory.

    Every worker gets these very arguments, also on hosts where this package lives elsewhere
    (and xdist refuses an existing path outside its rsync roots for those): no path at all,
    the root directory ``/``, and no conftest.py but ``workdir``'s (none).
    """
    return [
        "--llem-preflight",
        "-p",
        "pytest_llem.plugin",
        "-p",
        "xdist",
        "--dist",
        "each",
        *(arg for spec in hosts for arg in ("--tx", spec)),
        f"--config-file={os.devnull}",
        "--rootdir=/",
        f"--confcutdir={workdir}",
        *_UNNEEDED_PLUGINS,
    ]


def settings_for(
    images: Sequence[str] | None = None,
    config: str | Path | None = None,
    **values: Any,
) -> PreflightSettings:
    """The settings of `run_docker_preflight`'s arguments (ConfigError when invalid)."""
    try:
        base = PreflightSettings()
        if config is not None:
            from .run.runners import preflight_settings_from_study

            base = preflight_settings_from_study(config)
        given = {k: v for k, v in values.items() if v is not None and v is not False}
        if images:
            given["images"] = tuple(images)
        return base.replace(**given)
    except SettingError as exc:
        raise ConfigError(str(exc)) from None


def run_docker_preflight(
    skip: bool = False,
    images: Sequence[str] | None = None,
    config: str | Path | None = None,
    *,
    timeout_s: float | None = None,
    pull_timeout_s: float | None = None,
    cache_s: float | None = None,
    no_cache: bool = False,
    json_path: str | Path | None = None,
    settings: PreflightSettings | None = None,
    facts: Facts | None = None,
) -> Report:
    """Run the Docker pre-flight through ``pytest.main`` and return its report.

    The checks and limits come from ``settings``, else from the other arguments (a study
    file's images and ``docker:`` limits under the ones given). ``facts`` are host queries a
    caller started already. Raises `DockerPreFlightError` (its text is the numbered report)
    when a check failed or a required check did not run (the verdict is ``failed`` or
    ``incomplete``), `PreFlightError` when pytest itself could not run the checks, and
    `ConfigError` for invalid arguments. With ``skip`` nothing runs (the verdict is
    ``skipped``).
    """
    from .domain.report import Report

    if skip:
        return Report(skipped_by="skip=True")
    if settings is None:
        settings = settings_for(
            images,
            config,
            timeout_s=timeout_s,
            pull_timeout_s=pull_timeout_s,
            cache_s=cache_s,
            no_cache=no_cache,
            json_path=None if json_path is None else str(json_path),
        )
    if settings.skipped_by:  # (a study's execution.skip_preflight): nothing runs
        return Report(skipped_by=settings.skipped_by)
    if settings.allocation is None:  # inside a Slurm job: its GPUs, unless GPUs were named
        from .domain.allocation import allocation_of

        settings = settings.with_allocation(allocation_of(facts.env if facts else os.environ))
    from .facts import Facts

    facts = (facts or Facts()).adopt(settings)
    facts.start_image_work()  # the settings are valid: what the checks will start starts now
    facts.await_probe_start(PROBE_HEAD_START_S)
    import pytest  # (while that work runs)

    from . import plugin

    handoff = _Handoff(facts, settings)
    said = io.StringIO()  # what pytest itself writes to stderr (its "ERROR: ..." line)
    code: int | None = None
    try:
        with _isolated_environ(), redirect_stderr(said):
            code = pytest.main(preflight_args(), plugins=[plugin, handoff])
    finally:
        handoff.facts.close()
        if handoff.usage_error is None or code != pytest.ExitCode.USAGE_ERROR:
            sys.stderr.write(said.getvalue())
    if code in (pytest.ExitCode.INTERRUPTED, 130, 143):
        raise KeyboardInterrupt
    if handoff.usage_error is not None and code == pytest.ExitCode.USAGE_ERROR:
        raise ConfigError(handoff.usage_error)  # said once, as llem says it (exit 2)
    report = handoff.report
    if report is None or code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise PreFlightError(f"the Docker pre-flight could not run (pytest exit status {code})")
    if code == pytest.ExitCode.TESTS_FAILED or not report.ok:
        raise DockerPreFlightError(report)
    return report


@contextmanager
def _in_empty_directory() -> Iterator[Path]:
    """A new private directory as the current one, for the block (what pytest looks at when
    given no path: nothing)."""
    before = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="llem-") as workdir:
        os.chdir(workdir)
        try:
            yield Path(workdir)
        finally:
            os.chdir(before)


def run_fleet_preflight(hosts: Sequence[str], *, settings: PreflightSettings) -> FleetReport:
    """Every check on every host of ``hosts`` (``--tx`` specs, see `fleet.specs_for_hosts`)
    through ``pytest.main`` with pytest-xdist's ``--dist each``; one report per host.

    A host that cannot be reached fails alone (cause ``host_unreachable``). Raises
    `PreFlightError` when pytest itself could not run, KeyboardInterrupt when interrupted.
    """
    import pytest

    from .facts import Facts

    handoff = _Handoff(Facts(settings), settings)  # (the checks gather facts on the hosts)
    # Local workers inherit this environment: a DOCKER_HOST would win over their context.
    with _isolated_environ(DOCKER_HOST=None), _in_empty_directory() as workdir:
        code = pytest.main(fleet_args(hosts, workdir), plugins=[handoff])
    if code in (pytest.ExitCode.INTERRUPTED, 130, 143):
        raise KeyboardInterrupt
    report = handoff.fleet_report
    if report is None or code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise PreFlightError(f"the fleet pre-flight could not run (pytest exit status {code})")
    return report
