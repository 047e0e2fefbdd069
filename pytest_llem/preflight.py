"""run_docker_preflight(): the checks through pytest.main, isolated from the caller's project."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .domain.report import Report
from .errors import DockerPreFlightError, PreFlightError

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
    )
    for arg in ("-p", f"no:{name}")
]


class _ReportSink:
    """Receives the report at the end of the in-process session."""

    def __init__(self) -> None:
        self.report: Report | None = None

    def pytest_sessionfinish(self, session: Any) -> None:
        from .runtime import PREFLIGHT_KEY

        preflight = session.config.stash.get(PREFLIGHT_KEY, None)
        if preflight is not None:
            self.report = preflight.outcomes.report()


@contextmanager
def _isolated_environ() -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in _ISOLATED_ENV}
    try:
        for key, value in _ISOLATED_ENV.items():
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


def preflight_args(
    images: Sequence[str] | None = None,
    config: str | Path | None = None,
    *,
    timeout_s: float | None = None,
    pull_timeout_s: float | None = None,
    cache_s: float | None = None,
    no_cache: bool = False,
    json_path: str | Path | None = None,
) -> list[str]:
    """pytest arguments of an isolated pre-flight: no user ini, conftest, cache or plugins."""
    package_dir = str(Path(__file__).resolve().parent)
    from .runtime import checks_dir

    args = [
        "--llem-preflight",
        "-p",
        "pytest_llem.plugin",
        "-c",
        os.devnull,
        f"--rootdir={package_dir}",
        f"--confcutdir={package_dir}",
        *_UNNEEDED_PLUGINS,
    ]
    for image in images or ():
        args += ["--llem-image", image]
    if config is not None:
        args += ["--llem-config", str(config)]
    if timeout_s is not None:
        args += ["--llem-timeout", str(timeout_s)]
    if pull_timeout_s is not None:
        args += ["--llem-pull-timeout", str(pull_timeout_s)]
    if cache_s is not None:
        args += ["--llem-cache-s", str(cache_s)]
    if no_cache:
        args.append("--llem-no-cache")
    if json_path is not None:
        args += ["--llem-json", str(json_path)]
    # A path argument: without one pytest would look for conftest.py in the current directory.
    args.append(str(checks_dir()))
    return args


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
) -> Report:
    """Run the Docker pre-flight through ``pytest.main`` and return its report.

    Raises `DockerPreFlightError` (its text is the numbered report) when a check failed, and
    `PreFlightError` when pytest itself could not run the checks. With ``skip`` nothing runs.
    """
    if skip:
        return Report()
    from .domain.imageref import invalid_image_message
    from .facts import PreparedFacts, new_facts, take_early
    from .settings import Settings

    # Start the host queries and, where the facts allow, the GPU probes now: they run while
    # pytest loads. The session adopts these facts when its settings are the same.
    prepared: list[PreparedFacts] = []
    if config is None and not any(invalid_image_message("image", i) for i in images or ()):
        settings = Settings.of(
            images or (),
            timeout_s=timeout_s,
            pull_timeout_s=pull_timeout_s,
            cache_s=cache_s,
            no_cache=no_cache,
        )
        facts = take_early(settings) or new_facts(settings)
        facts.start_probes_early()
        prepared.append(PreparedFacts(facts))
    import pytest

    sink = _ReportSink()
    args = preflight_args(
        images,
        config,
        timeout_s=timeout_s,
        pull_timeout_s=pull_timeout_s,
        cache_s=cache_s,
        no_cache=no_cache,
        json_path=json_path,
    )
    try:
        with _isolated_environ():
            code = pytest.main(args, plugins=[sink, *prepared])
    finally:
        for handoff in prepared:  # already closed by the session, unless it never adopted them
            handoff.facts.close()
    if code in (pytest.ExitCode.INTERRUPTED, 130, 143):
        raise KeyboardInterrupt
    report = sink.report
    if report is None or code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise PreFlightError(f"the Docker pre-flight could not run (pytest exit status {code})")
    if code == pytest.ExitCode.TESTS_FAILED or report.failures:
        raise DockerPreFlightError(report)
    return report


def study_preflight(
    images: Sequence[str],
    *,
    timeout_s: float,
    pull_timeout_s: float,
    cache_s: float,
    skip_warning: str | None = None,
) -> Report | None:
    """The pre-flight step of `llem run`: the skip line when skipped (None), else the report.

    The host queries are prefetched first: they run while pytest is imported and configured.
    Raises `DockerPreFlightError` when the host is unfit.
    """
    if skip_warning is not None:
        print(skip_warning, file=sys.stderr)
        return None
    from .defaults import HOST_COMMAND_TIMEOUT_S
    from .host import prefetch

    prefetch.start_preflight(images, HOST_COMMAND_TIMEOUT_S)
    return run_docker_preflight(
        images=images, timeout_s=timeout_s, pull_timeout_s=pull_timeout_s, cache_s=cache_s
    )
