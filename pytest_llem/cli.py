"""The `llem` command: `llem run` and `llem preflight`.

Exit status: 0 ok (pre-flight warnings allowed); 1 pre-flight or experiment failure;
2 bad usage or bad config (one `llem: error: ...` line, never a traceback), which includes
Docker experiments against a remote daemon (it cannot mount the run directory); 130 / 143
when stopped by Ctrl-C / SIGTERM. Heavy modules are imported inside the commands: `llem --help`
and `llem --version` import neither pydantic nor pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn, TextIO

if TYPE_CHECKING:
    from .domain.report import CheckResult, Report
    from .run.config import StudyConfig
    from .run.plans import Plan

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"llem: error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="llem", description="Pre-flight and run LLM energy experiments.")
    parser.add_argument("--version", action="version", version=f"llem {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="check the host, then run a study's experiments",
        description="Validate a study, run the Docker pre-flight when a runner is Docker, "
        "then run every experiment. A single experiment can be given with --model and "
        "--backend (and its command after '--').",
    )
    run.add_argument("config", nargs="?", metavar="CONFIG", help="the study YAML file")
    run.add_argument("--model", help="run this one model instead of the study's experiments")
    run.add_argument("--backend", help="the backend of --model")
    run.add_argument(
        "--runner", action="append", default=[], metavar="BACKEND=RUNNER",
        help="runner of a backend: local, docker or docker:IMAGE (repeatable; wins over "
        "LLEM_RUNNER_<BACKEND>, the study and the user config)",
    )  # fmt: skip
    run.add_argument(
        "--skip-preflight", action=argparse.BooleanOptionalAction, default=None,
        help="skip (or, with --no-skip-preflight, run) the Docker pre-flight, whatever the "
        "study file says",
    )  # fmt: skip
    run.add_argument("--dry-run", action="store_true", help="validate and pre-flight only")
    run.add_argument("--output", metavar="DIR", help="run directory (default ./llem-runs/...)")
    run.add_argument(
        "--overwrite", action="store_true",
        help="reuse an --output directory that holds an earlier run's manifest",
    )  # fmt: skip

    pre = commands.add_parser(
        "preflight",
        help="check that this host can run GPU containers",
        description="Run the Docker pre-flight checks and show each one.",
    )
    pre.add_argument("config", nargs="?", metavar="CONFIG", help="a study YAML: its images")
    pre.add_argument(
        "--image", action="append", default=[], metavar="IMAGE",
        help="an image to validate (repeatable; default: the study's Docker images, else "
        "the probe image)",
    )  # fmt: skip
    pre.add_argument("--json", metavar="PATH", help="also write the JSON report here")
    pre.add_argument("--timeout", type=float, metavar="SECONDS", help="limit of one probe")
    pre.add_argument("--no-cache", action="store_true", help="ignore cached probe results")
    pre.add_argument("-v", "--verbose", action="store_true", help="details and timings")
    return parser


def run() -> NoReturn:
    """The `llem` program: `main()`, then an exit that skips tearing down the interpreter.

    Everything is flushed, and every command llem started is killed, first; what is skipped
    is the garbage collection of pydantic's and pytest's modules (about 0.1 s per run).
    """
    try:
        status = main()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else EXIT_USAGE
    from .host.proc import kill_all

    kill_all()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a report's "—" must not crash an ASCII terminal
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")
    args_list = list(sys.argv[1:] if argv is None else argv)
    command: list[str] | None = None
    if args_list[:1] == ["run"] and "--" in args_list:
        cut = args_list.index("--")
        args_list, command = args_list[:cut], args_list[cut + 1 :]
    from .head_start import start_host_queries, start_study_work

    start_host_queries(args_list)
    try:
        args = _parser().parse_args(args_list)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    from .errors import ConfigError, LLEMError
    from .facts import close_early
    from .host.workloads import sigterm_interrupts

    with sigterm_interrupts() as signals:
        try:
            key, plan = _remembered(args)
            if not getattr(args, "skip_preflight", None):
                start_study_work(args, plan)
            if args.command == "run":
                return _run(args, command, key, plan)
            return _preflight(args)
        except ConfigError as exc:
            return _error(exc, EXIT_USAGE)
        except (LLEMError, OSError) as exc:
            return _error(exc, EXIT_FAILED)
        except KeyboardInterrupt as exc:
            status = signals.exit_status(exc)
            print(f"llem: stopped by {'SIGTERM' if status == 143 else 'Ctrl-C'}", file=sys.stderr)
            return status
        finally:
            close_early()


def _remembered(args: argparse.Namespace) -> tuple[str | None, Plan | None]:
    """The plan key of `llem run --dry-run STUDY`, and the plan remembered under it."""
    if args.command != "run" or not args.dry_run or args.config is None or args.model:
        return None, None
    from .run.plans import load_plan, plan_key

    key = plan_key(args.config, os.environ, args.runner, args.skip_preflight)
    return key, load_plan(key)


def _error(exc: BaseException, code: int) -> int:
    from .domain.text import printable

    print(f"llem: error: {printable(str(exc))}", file=sys.stderr)
    return code


def _study(config: str | None) -> StudyConfig:
    """The study file, or an empty study with the user's defaults (for --model/--backend)."""
    from .run import config as cfg

    if config is not None:
        return cfg.load_study(config)
    return cfg.with_user_defaults(cfg.StudyConfig(), cfg.load_user_config())


def _run(
    args: argparse.Namespace, command: list[str] | None, key: str | None, plan: Plan | None
) -> int:
    from .errors import ConfigError, DockerPreFlightError

    if (args.model is None) != (args.backend is None):
        raise ConfigError("--model and --backend go together")
    if args.config is None and args.model is None:
        raise ConfigError("give a study file, or --model and --backend")
    if command is not None and args.model is None:
        raise ConfigError("a command after '--' needs --model and --backend")
    if plan is not None:  # an unchanged study's plan: pydantic is not even imported
        return _dry_run(plan)
    from .run.config import single_experiment
    from .run.runners import parse_runner_option
    from .run.study import run_study

    overrides = dict(parse_runner_option(text) for text in args.runner)
    study = _study(args.config)
    if args.model is not None:
        study = single_experiment(study, args.model, args.backend, command)
    try:
        manifest = run_study(
            study, cli_skip=args.skip_preflight, runner_overrides=overrides,
            output=args.output, dry_run=args.dry_run, overwrite=args.overwrite,
        )  # fmt: skip
    except DockerPreFlightError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    if args.dry_run:
        if key is not None:
            _remember_plan(key, study, overrides, args.skip_preflight)
        return EXIT_OK
    failed, total = len(manifest.failed), len(manifest.experiments)
    print(
        f"llem: {total - failed} of {total} experiment(s) ok; manifest: {manifest.path}",
        file=sys.stderr,
    )
    return EXIT_FAILED if failed else EXIT_OK


def _dry_run(plan: Plan) -> int:
    """`llem run --dry-run` of a study validated before, unchanged since: the pre-flight runs
    (always), then the remembered plan is printed."""
    from .errors import DockerPreFlightError

    if plan.docker:
        from .preflight import study_preflight
        from .run.remote import refuse_remote_daemon

        refuse_remote_daemon()
        try:
            report = study_preflight(
                plan.images, timeout_s=plan.timeout_s, pull_timeout_s=plan.pull_timeout_s,
                cache_s=plan.cache_s, skip_warning=plan.skip_warning,
            )  # fmt: skip
        except DockerPreFlightError as exc:
            print(exc, file=sys.stderr)
            return EXIT_FAILED
        if report is not None and report.warnings:
            print(report.render(), file=sys.stderr)
    for line in plan.lines:
        print(line, file=sys.stderr)
    return EXIT_OK


def _remember_plan(
    key: str, study: StudyConfig, overrides: dict[str, str], cli_skip: bool | None
) -> None:
    from .run.plans import Plan, store_plan
    from .run.runners import preflight_settings, resolve_runners
    from .run.study import plan_lines, skip_source, skip_warning

    runners = resolve_runners(study, os.environ, overrides)
    docker = any(spec.mode == "docker" for spec in runners.values())
    source = skip_source(study, False, cli_skip) if docker else None
    settings = preflight_settings(study, runners) if docker else None
    store_plan(
        key,
        Plan(
            docker=docker,
            images=settings.images if settings else (),
            timeout_s=settings.timeout_s if settings else 0.0,
            pull_timeout_s=settings.pull_timeout_s if settings else 0.0,
            cache_s=settings.cache_s if settings else 0.0,
            skip_warning=skip_warning(source) if source else None,
            lines=tuple(plan_lines(study, runners)),
        ),
    )


def _preflight(args: argparse.Namespace) -> int:
    from .domain.imageref import invalid_image_message
    from .errors import ConfigError, DockerPreFlightError
    from .preflight import run_docker_preflight
    from .run.runners import preflight_settings

    for image in args.image:
        problem = invalid_image_message("--image", image)
        if problem:
            raise ConfigError(problem)
    if args.timeout is not None and not args.timeout > 0:
        raise ConfigError("--timeout: must be a positive number of seconds")
    settings = preflight_settings(_study(args.config))
    try:
        report = run_docker_preflight(
            images=args.image or settings.images,
            timeout_s=settings.timeout_s if args.timeout is None else args.timeout,
            pull_timeout_s=settings.pull_timeout_s,
            cache_s=settings.cache_s,
            no_cache=args.no_cache,
            json_path=args.json,
        )
    except DockerPreFlightError as exc:
        report = exc.report
    _print_checklist(report, verbose=args.verbose, out=sys.stdout)
    return EXIT_FAILED if report.failures else EXIT_OK


def _print_checklist(report: Report, *, verbose: bool, out: TextIO) -> None:
    from .domain.text import printable

    marks = _marks(out)
    for check in report.checks:
        line = f"{marks[check.outcome]} {check.id}"
        note = _note(check)
        if note:
            line += f": {note}"
        if verbose:
            line += f" ({check.duration_s:.2f}s{', cached' if check.cached else ''})"
        out.write(printable(line) + "\n")
        if verbose:
            for key, value in sorted(check.details.items()):
                out.write(printable(f"    {key}: {value}") + "\n")
    # The verdict: the first line of the numbered report, or a pass line when it is empty.
    out.write((report.render() or f"Docker pre-flight passed: {len(report.checks)} checks") + "\n")


def _note(check: CheckResult) -> str:
    if check.finding is not None and check.outcome in ("failed", "warning"):
        return check.finding.message
    return check.reason


def _marks(out: TextIO) -> dict[str, str]:
    fancy = {"passed": "✓", "warning": "!", "failed": "✗", "skipped": "-", "not-run": "-"}
    try:
        "✓✗".encode(out.encoding or "ascii")
    except (LookupError, UnicodeEncodeError):
        return {**fancy, "passed": "+", "failed": "x"}
    return fancy
