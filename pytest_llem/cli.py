"""The `llem` command: `llem run` and `llem preflight`.

Exit status: 0 ok (pre-flight passed, warnings allowed, or skipped); 1 pre-flight failed or
incomplete (a required check did not run), or an experiment failed; 2 bad usage or bad config
(one `llem: error: ...` line, never a traceback); 130 / 143 when stopped by Ctrl-C / SIGTERM.
Heavy modules are imported inside the commands: `llem --help` and `llem --version` import
neither pydantic nor pytest.

Before the study is validated, only read-only host queries start (`Facts.start_host`); every
image inspect, pull and container waits for a valid study, a Docker runner and tier 1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

if TYPE_CHECKING:
    import dataclasses

    from .domain.report import Report
    from .facts import Facts
    from .host.jsonfile import ReportTarget
    from .run.config import StudyConfig
    from .run.manifest import Manifest
    from .run.plans import Plan
    from .settings import PreflightSettings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"llem: error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from .settings import option_dest, setting_fields

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
        help="runner of a backend: local, docker, docker:IMAGE, podman or podman:IMAGE "
        "(repeatable; wins over LLEM_RUNNER_<BACKEND>, the study and the user config)",
    )  # fmt: skip
    run.add_argument(
        "--skip-preflight", action=argparse.BooleanOptionalAction, default=None,
        help="skip (or, with --no-skip-preflight, run) the Docker pre-flight, whatever the "
        "study file says",
    )  # fmt: skip
    run.add_argument(
        "--skip-check", action="append", default=[], metavar="ID",
        help="do not run this pre-flight check (repeatable; e.g. gpu-idle); the manifest "
        "records it",
    )  # fmt: skip
    run.add_argument("--dry-run", action="store_true", help="validate and pre-flight only")
    wait = _field("wait_s").metadata
    run.add_argument(wait["cli"], metavar=wait["metavar"], help=wait["help"])
    run.add_argument("--output", metavar="DIR", help="run directory (default ./llem-runs/...)")
    slurm = run.add_argument_group(
        "Slurm",
        "Run each experiment as a Slurm job (execution.slurm in the study: partition, "
        "gpus_per_experiment, time_limit, extra_args): each job pre-flights its node, then runs "
        "its experiment into the run directory, which must be on a filesystem the nodes share.",
    )
    slurm.add_argument(
        "--slurm", action="store_true",
        help="submit the experiments with sbatch, wait for them (Ctrl-C cancels them), then "
        "write the manifest",
    )  # fmt: skip
    slurm.add_argument(
        "--no-wait", action="store_true",
        help="with --slurm: return once the jobs are submitted (--resume collects them)",
    )  # fmt: skip
    slurm.add_argument(
        "--resume", metavar="RUN_DIR",
        help="wait for the jobs of an earlier --slurm --no-wait run, then write its manifest",
    )  # fmt: skip
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
    for f in setting_fields():  # the pre-flight settings that have a flag of their own
        meta = f.metadata
        if meta["cli"] is None:
            continue
        dest = option_dest(meta["option"])
        if meta["kind"] == "flag":
            pre.add_argument(meta["cli"], dest=dest, action="store_true", help=meta["help"])
        else:
            many = meta["kind"] in ("images", "ids", "indices")
            pre.add_argument(
                meta["cli"], dest=dest, action="append" if many else "store",
                default=[] if many else None, metavar=meta["metavar"], help=meta["help"],
            )  # fmt: skip
    pre.add_argument(
        "--junit", metavar="PATH",
        help="write the checks as JUnit XML to PATH (for a CI system's test report)",
    )  # fmt: skip
    pre.add_argument("-v", "--verbose", action="store_true", help="details and timings")
    pre.add_argument(
        "--reason", action="store_true",
        help="print only the drain reason of a failed pre-flight, 'llem: [check-id] message', "
        "cut to what Slurm keeps (nothing when it passed): for a Slurm prolog or health check",
    )  # fmt: skip
    hosts = pre.add_argument_group(
        "many hosts",
        "Check other hosts instead of this one: every check runs on every host (through "
        "pytest-xdist gateways), and each host gets its own report.",
    )
    hosts.add_argument(
        "--host", action="append", default=[], metavar="HOST",
        help="[ssh://][USER@]HOST[:PORT]: run the checks on that host over ssh (pytest-llem "
        "installed there); context:NAME: check that Docker context's daemon from here "
        "(repeatable)",
    )  # fmt: skip
    hosts.add_argument("--hosts-file", metavar="FILE", help="more hosts, one per line (# comments)")
    hosts.add_argument(
        "--remote-python", metavar="PYTHON",
        help="the Python of the ssh hosts that has pytest-llem (default python3)",
    )  # fmt: skip
    hosts.add_argument("--ssh-config", metavar="PATH", help="ssh client config for the ssh hosts")
    return parser


def _field(name: str) -> dataclasses.Field[Any]:
    from .settings import setting_fields

    return next(f for f in setting_fields() if f.name == name)


def run() -> NoReturn:
    """The `llem` program: `main()`, then an exit that skips tearing down the interpreter.

    Everything is flushed, and every command llem started is killed, first; what is skipped
    is the garbage collection of pydantic's and pytest's modules (about 0.1 s per run).
    """
    _tune_interpreter()
    try:
        status = main()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:  # before main() could take over the signals
        print("llem: stopped by Ctrl-C", file=sys.stderr)
        status = 130
    from .host.proc import kill_all

    kill_all()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


def _tune_interpreter() -> None:
    """For the `llem` process alone (never for a caller of `main()`):

    - the threads that wait on the host's commands get the interpreter back within 0.5 ms
      instead of 5 ms, so each step (answer read, next command started) is not held up by
      the imports running in the main thread meanwhile;
    - a collection of cyclic garbage every 100,000 allocations instead of 700: start-up
      builds long-lived module objects by the hundred thousand, and collecting among them
      cost about 5% of a pre-flight's time.
    """
    import gc

    sys.setswitchinterval(0.0005)
    gc.set_threshold(100_000, 50, 100)


def main(argv: Sequence[str] | None = None) -> int:
    from .signals import sigterm_interrupts

    with sigterm_interrupts() as signals:  # before anything starts: every exit path cleans up
        facts: Facts | None = None
        try:
            for stream in (sys.stdout, sys.stderr):  # a report's "—" must not crash ASCII
                if isinstance(stream, io.TextIOWrapper):
                    stream.reconfigure(errors="replace")
            args_list = list(sys.argv[1:] if argv is None else argv)
            command: list[str] | None = None
            if args_list[:1] == ["run"] and "--" in args_list:
                cut = args_list.index("--")
                args_list, command = args_list[:cut], args_list[cut + 1 :]
            facts = _host_queries(args_list)
            try:
                args = _parser().parse_args(args_list)
            except SystemExit as exc:  # --help, --version, usage errors
                return exc.code if isinstance(exc.code, int) else EXIT_USAGE
            return _command(args, command, facts)
        except KeyboardInterrupt as exc:
            status = signals.exit_status(exc)
            print(f"llem: stopped by {'SIGTERM' if status == 143 else 'Ctrl-C'}", file=sys.stderr)
            return status
        finally:
            if facts is not None:
                facts.close()


def _host_queries(args: Sequence[str]) -> Facts | None:
    """The read-only host queries of a pre-flight that will likely run, started now, before
    the arguments are even parsed (a wrong guess only leaves an answer unused)."""
    if args[:1] not in (["run"], ["preflight"]):
        return None
    if any(a in ("-h", "--help", "--skip") or a.startswith(("--skip-p", "--host")) for a in args):
        return None  # (argparse takes "--skip-p" for --skip-preflight; hosts check elsewhere)
    from .facts import Facts

    facts = Facts()
    facts.start_host()  # first: what shows progress is attached once the queries run
    return facts


def _shown(facts: Facts | None) -> Facts:
    """``facts`` (or new ones, nothing started) whose long work shows progress on stderr."""
    from .facts import Facts
    from .progress import Progress

    facts = facts or Facts()
    if facts.progress is None:
        facts.progress = Progress(sys.stderr)
    return facts


def _command(args: argparse.Namespace, command: list[str] | None, facts: Facts | None) -> int:
    from .errors import ConfigError, LLEMError

    try:
        if args.command == "run":
            return _run(args, command, _shown(facts))
        return _preflight(args, _shown(facts))
    except ConfigError as exc:
        return _error(exc, EXIT_USAGE)
    except (LLEMError, OSError) as exc:
        return _error(exc, EXIT_FAILED)


def _error(exc: BaseException | str, code: int) -> int:
    from .domain.text import printable

    print(f"llem: error: {printable(str(exc))}", file=sys.stderr)
    return code


def _study(config: str | None, data: bytes | None = None) -> StudyConfig:
    """The study file, or an empty study with the user's defaults (for --model/--backend)."""
    from .run import config as cfg

    if config is not None:
        return cfg.load_study(config, data=data)
    return cfg.with_user_defaults(cfg.StudyConfig(), cfg.load_user_config())


def _run(args: argparse.Namespace, command: list[str] | None, facts: Facts | None) -> int:
    from pathlib import Path

    from .errors import ConfigError, DockerPreFlightError

    if args.resume is not None:
        return _resume(args, command)
    if args.no_wait and not args.slurm:
        raise ConfigError("--no-wait goes with --slurm")
    if (args.model is None) != (args.backend is None):
        raise ConfigError("--model and --backend go together")
    if args.config is None and args.model is None:
        raise ConfigError("give a study file, or --model and --backend")
    if command is not None and args.model is None:
        raise ConfigError("a command after '--' needs --model and --backend")
    wait_s = _wait_s(args.wait)
    data: bytes | None = None
    key: str | None = None
    if args.config is not None:
        from .host.study_file import read_bytes

        data = read_bytes(Path(args.config))  # read once: what is validated is what was read
        if args.dry_run and args.model is None and not args.slurm:
            from .run.plans import load_plan, plan_key

            key = plan_key(
                args.config, data, os.environ, args.runner, args.skip_preflight,
                skip_checks=args.skip_check,
            )  # fmt: skip
            plan = load_plan(key)
            if plan is not None:  # an unchanged study's plan: pydantic is not even imported
                return _dry_run(plan, facts, args.skip_check, args.config, wait_s)
    from .run.config import single_experiment
    from .run.runners import parse_runner_option
    from .run.study import run_study

    overrides = dict(parse_runner_option(text) for text in args.runner)
    study = _study(args.config, data)
    if args.model is not None:
        study = single_experiment(study, args.model, args.backend, command)
    if args.slurm:
        return _run_slurm(args, study, overrides)
    try:
        manifest = run_study(
            study, cli_skip=args.skip_preflight, runner_overrides=overrides,
            output=args.output, dry_run=args.dry_run, facts=facts, progress=sys.stderr,
            overwrite=args.overwrite, skip_checks=args.skip_check, wait_s=wait_s,
        )  # fmt: skip
    except DockerPreFlightError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    if args.dry_run:
        if key is not None:
            _remember_plan(key, study, overrides, args.skip_preflight, args.skip_check)
        return EXIT_OK
    from .domain.text import printable

    _suspects(manifest)
    failed, total = len(manifest.failed), len(manifest.experiments)
    left = len(manifest.left_behind)  # a container that may still hold a GPU is a failure
    summary = f"llem: {total - failed} of {total} experiment(s) ok; " + (
        f"{left} container(s) may be left behind (see cleanup); " if left else ""
    )
    print(printable(f"{summary}manifest: {manifest.path}"), file=sys.stderr)
    return EXIT_FAILED if failed or left else EXIT_OK


def _run_slurm(args: argparse.Namespace, study: StudyConfig, overrides: dict[str, str]) -> int:
    """`llem run --slurm`: the experiments as Slurm jobs, each pre-flighting its own node."""
    from .domain.check_ids import BUILTIN_IDS, unknown_check_ids
    from .errors import ConfigError
    from .run.runners import resolve_runners
    from .run.slurm_jobs import run_study_slurm

    unknown = unknown_check_ids(args.skip_check)
    if unknown:
        raise ConfigError(
            f"--skip-check: unknown check id {unknown[0]!r} (valid ids: all, "
            f"{', '.join(BUILTIN_IDS)})"
        )
    if args.wait is not None:
        raise ConfigError("--wait is for this host's pre-flight: not with --slurm")
    manifest = run_study_slurm(
        study, resolve_runners(study, os.environ, overrides), output=args.output,
        overwrite=args.overwrite, cli_skip=args.skip_preflight, skip_checks=args.skip_check,
        dry_run=args.dry_run, no_wait=args.no_wait, progress=sys.stderr,
    )  # fmt: skip
    if manifest is None or args.dry_run:
        return EXIT_OK
    return _summary(manifest)


def _resume(args: argparse.Namespace, command: list[str] | None) -> int:
    """`llem run --resume RUN_DIR`: the results of a `--slurm --no-wait` run."""
    from .errors import ConfigError
    from .run.slurm_jobs import resume

    given = [
        flag
        for flag, value in (
            ("CONFIG", args.config), ("--model", args.model), ("--output", args.output),
            ("--slurm", args.slurm), ("--no-wait", args.no_wait), ("--dry-run", args.dry_run),
            ("a command after '--'", command),
        )
        if value
    ]  # fmt: skip
    if given:
        raise ConfigError(f"--resume RUN_DIR takes the run as it was submitted: not {given[0]}")
    return _summary(resume(args.resume, progress=sys.stderr))


def _suspects(manifest: Manifest) -> None:
    """A line per experiment whose measurement window is suspect (`run.attest`)."""
    from .domain.text import printable
    from .run.attest import suspect_lines

    for line in suspect_lines(manifest.experiments):
        print(printable(line), file=sys.stderr)


def _summary(manifest: Manifest) -> int:
    """The closing line of a run; its exit status."""
    from .domain.text import printable

    _suspects(manifest)
    failed, total = len(manifest.failed), len(manifest.experiments)
    summary = f"llem: {total - failed} of {total} experiment(s) ok; manifest: {manifest.path}"
    print(printable(summary), file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _wait_s(text: str | None) -> float:
    """`llem run --wait SECONDS`, validated as `llem preflight --wait` is (0 when not given)."""
    from .errors import ConfigError
    from .settings import SettingError, parse_value

    if text is None:
        return 0.0
    try:
        return float(parse_value(_field("wait_s"), text, "--wait"))
    except SettingError as exc:
        raise ConfigError(str(exc)) from None


def _dry_run(
    plan: Plan, facts: Facts | None, cli_skips: list[str], origin: str, wait_s: float = 0.0
) -> int:
    """`llem run --dry-run` of a study validated before, unchanged since: the pre-flight runs
    (always), then the remembered plan is printed."""
    from .errors import DockerPreFlightError
    from .run.notices import check_skip_sources, preflight_notice

    if plan.skipped_by is not None:
        from .domain.report import Report

        report = Report(skipped_by=plan.skipped_by)
    else:
        from .preflight import run_docker_preflight

        try:
            settings = plan.settings.replace(wait_s=wait_s) if wait_s else plan.settings
            report = run_docker_preflight(settings=settings, facts=facts)
        except DockerPreFlightError as exc:
            print(exc, file=sys.stderr)
            return EXIT_FAILED
    notice = preflight_notice(report, check_skip_sources(plan.settings.skip, cli_skips, origin))
    if notice:
        print(notice, file=sys.stderr)
    from .domain.text import printable

    for line in plan.lines:
        print(printable(line), file=sys.stderr)
    return EXIT_OK


def _remember_plan(
    key: str,
    study: StudyConfig,
    overrides: dict[str, str],
    cli_skip: bool | None,
    skip_checks: list[str],
) -> None:
    from .run.plans import Plan, store_plan
    from .run.runners import resolve_runners
    from .run.study import plan_lines, skip_source, study_preflight_settings

    runners = resolve_runners(study, os.environ, overrides)
    store_plan(
        key,
        Plan(
            settings=study_preflight_settings(study, runners, skip_checks),
            skipped_by=skip_source(study, False, cli_skip),
            lines=tuple(plan_lines(study, runners)),
        ),
    )


def _preflight(args: argparse.Namespace, facts: Facts | None) -> int:
    from .errors import ConfigError, DockerPreFlightError
    from .preflight import run_docker_preflight
    from .run.runners import preflight_settings
    from .settings import PreflightSettings, SettingError

    try:
        given = PreflightSettings.from_options(vars(args), named_by="cli")  # before the study
        below = preflight_settings(_study(args.config)) if args.config else PreflightSettings()
        settings = given.from_options(vars(args), below, named_by="cli").replace(json_path=None)
    except SettingError as exc:
        raise ConfigError(str(exc)) from None
    from .domain.check_ids import BUILTIN_IDS, unknown_check_ids

    unknown = unknown_check_ids(given.skip)
    if unknown:  # (what the pytest session would refuse, said as llem says it)
        raise ConfigError(
            f"--skip-check: unknown check id {unknown[0]!r} (valid ids: all, "
            f"{', '.join(BUILTIN_IDS)})"
        )
    json_path, junit_path = given.json_path, args.junit
    if junit_path is not None and (not junit_path or "\0" in junit_path):
        raise ConfigError(f"--junit: expected a path, got {junit_path!r}")
    targets = _report_targets(json_path, junit_path)
    # A report on stdout is all that goes there (`--json - | jq`): the checklist goes to stderr.
    out = sys.stderr if any(t is not None and t.to_stdout for t in targets) else sys.stdout
    hosts = _fleet_hosts(args)
    if hosts is not None:
        if args.reason:
            raise ConfigError("--reason is for this host's pre-flight: not with --host")
        return _fleet_preflight(hosts, settings, targets, verbose=args.verbose, out=out)
    started = time.time()
    try:
        report = run_docker_preflight(settings=settings, facts=facts)
    except DockerPreFlightError as exc:
        report = exc.report
    status = EXIT_OK if report.ok else EXIT_FAILED  # failed or incomplete: the gate stays shut
    if args.reason:  # one line for `scontrol update ... reason=`, and only on a failure
        from .domain.slurm import drain_reason, reason_of

        line = reason_of(report) or (drain_reason("preflight", "did not pass") if status else "")
        if line:
            print(line)
    else:
        _print_checklist(report, verbose=args.verbose, out=out)

    def junit() -> str:
        import socket

        from .domain.junit import junit_xml

        return junit_xml(report, timestamp=started, hostname=socket.gethostname())

    return _write_reports(targets, report.to_json, junit, status)


def _report_targets(
    json_path: str | None, junit_path: str | None
) -> tuple[ReportTarget | None, ReportTarget | None]:
    """Where `--json` and `--junit` go, judged before anything runs (a usage error, exit 2:
    a path no report may go to, or both reports to one place, where one would be lost)."""
    from .errors import ConfigError
    from .host.jsonfile import ReportPathError, report_target, same_destination

    found: list[ReportTarget | None] = []
    for option, path in (("--json", json_path), ("--junit", junit_path)):
        try:
            found.append(None if path is None else report_target(path))
        except ReportPathError as exc:
            raise ConfigError(f"{option}: cannot write {path}: {exc}") from None
    json_target, junit_target = found
    if json_target and junit_target and same_destination(json_target, junit_target):
        named = json_path if json_path == junit_path else f"{json_path} and {junit_path}"
        if json_target.to_stdout:
            raise ConfigError(f"--json and --junit both name stdout ({named}): only one can be -")
        raise ConfigError(
            f"--json and --junit name one file ({named}): one report would be lost; give each "
            "its own path"
        )
    return json_target, junit_target


def _write_reports(
    targets: tuple[ReportTarget | None, ReportTarget | None],
    json_data: Callable[[], dict[str, Any]],
    junit_xml: Callable[[], str],
    status: int,
) -> int:
    """Write the `--json` and `--junit` reports; a failed write is one line and exit 1."""
    from .host.jsonfile import dumps, write_report

    def json_text() -> str:
        return dumps(json_data())

    json_target, junit_target = targets
    for target, what, text in (
        (json_target, "JSON", json_text),
        (junit_target, "JUnit", junit_xml),
    ):
        if target is None:
            continue
        sys.stdout.flush()  # (what llem printed before comes first, wherever the report goes)
        try:
            write_report(target, text())
        except OSError as exc:
            shown = "stdout" if target.given == "-" else target.given
            status = _error(f"cannot write the {what} report to {shown}: {exc.strerror or exc}", 1)
    return status


def _fleet_hosts(args: argparse.Namespace) -> list[str] | None:
    """The ``--tx`` specs of `llem preflight --host`/``--hosts-file``; None without hosts."""
    from pathlib import Path

    from .errors import ConfigError
    from .fleet import read_hosts_file, specs_for_hosts

    words = list(args.host)
    if args.hosts_file is not None:
        path = Path(args.hosts_file)
        try:
            with open(path, "rb") as handle:
                data = handle.read(1024 * 1024 + 1)
        except OSError as exc:
            raise ConfigError(f"--hosts-file {path}: cannot read ({exc.strerror or exc})") from None
        if len(data) > 1024 * 1024:
            raise ConfigError(f"--hosts-file {path}: larger than 1 MiB")
        found = read_hosts_file(data.decode("utf-8", errors="replace"), str(path))
        if not found:
            raise ConfigError(f"--hosts-file {path}: no host in it")
        words += found
    if not words:
        for flag, value in (
            ("--remote-python", args.remote_python),
            ("--ssh-config", args.ssh_config),
            ("--host-timeout", args.llem_host_timeout),
        ):
            if value is not None:
                raise ConfigError(f"{flag} is for the hosts of --host or --hosts-file: none given")
        return None
    ssh_config = args.ssh_config
    if ssh_config is not None:
        if not Path(ssh_config).is_file():
            raise ConfigError(f"--ssh-config {ssh_config}: not a file")
        ssh_config = str(Path(ssh_config).resolve())
    return specs_for_hosts(
        words, remote_python=args.remote_python or "python3", ssh_config=ssh_config
    )


def _fleet_preflight(
    hosts: list[str],
    settings: PreflightSettings,
    targets: tuple[ReportTarget | None, ReportTarget | None],
    *,
    verbose: bool,
    out: TextIO,
) -> int:
    from .domain.text import printable
    from .preflight import run_fleet_preflight

    started = time.time()
    report = run_fleet_preflight(hosts, settings=settings)
    for name, host_report in report.hosts:  # each host once: its checks, then its report
        out.write(printable(f"Host {name}:") + "\n")
        _print_checklist(host_report, verbose=verbose, out=out, indent="  ")
    out.write(report.summary() + "\n")
    status = EXIT_OK if report.ok else EXIT_FAILED

    def junit() -> str:  # one test suite per host
        from .domain.junit import fleet_junit_xml

        return fleet_junit_xml(report, timestamp=started)

    return _write_reports(targets, report.to_json, junit, status)


def _print_checklist(report: Report, *, verbose: bool, out: TextIO, indent: str = "") -> None:
    _print_checks(report, verbose=verbose, out=out, indent=indent)
    # The verdict: the report (failed, incomplete, skipped, or passed with warnings), or a
    # pass line when it is empty.
    out.write((report.render() or f"Docker pre-flight passed: {len(report.checks)} checks") + "\n")


def _print_checks(report: Report, *, verbose: bool, out: TextIO, indent: str = "") -> None:
    """One line per check. A finding is stated once, in the numbered report that follows: a
    failed check's line points at its number (`✗ docker-daemon (see 1.)`), a warned one's at
    the warnings. With ``verbose``, each check's details follow it, and a detail that an
    earlier check showed is named, not shown again (`gpus: as for host-driver`)."""
    from .domain.text import printable

    marks = _marks(out)
    shown: dict[str, list[tuple[object, str]]] = {}  # detail -> each value shown, and by whom
    numbered = 0
    for check in report.checks:
        line = f"{indent}{marks[check.outcome]} {check.id}"
        if check.finding is not None and check.outcome == "failed":
            numbered += 1
            line += f" (see {numbered}.)"
        elif check.finding is not None and check.outcome == "warning":
            line += " (see Warnings)"
        elif check.reason:
            line += f": {check.reason}"
        if verbose:
            line += f" ({check.duration_s:.2f}s{', cached' if check.cached else ''})"
        out.write(printable(line) + "\n")
        if verbose:
            for key, value in sorted(check.details.items()):
                text = _detail(shown.setdefault(key, []), value, check.id)
                out.write(printable(f"{indent}    {key}: {text}") + "\n")


def _detail(earlier: list[tuple[object, str]], value: object, check_id: str) -> object:
    """A detail as `-v` shows it: the value, or which earlier check showed it (the GPU
    listing the checks share is shown once; a later one names it and adds what is new)."""
    for seen, where in earlier:
        if seen == value:
            return f"as for {where}"
    earlier.append((value, check_id))
    for seen, where in earlier[:-1]:
        more = _more_of_the_same_gpus(seen, value)
        if more is not None:
            return f"as for {where}" + (f", and {more}" if more else "")
    return value


def _more_of_the_same_gpus(seen: object, value: object) -> str | None:
    """What the GPU listing ``value`` adds to ``seen``, a listing of the same GPUs (by UUID,
    else index); None when they are not listings of the same GPUs."""
    if not (isinstance(seen, list) and isinstance(value, list) and seen and value):
        return None
    if not all(isinstance(g, dict) for g in [*seen, *value]):
        return None

    def key(gpu: dict[str, Any]) -> tuple[str, object]:
        return ("uuid", gpu["uuid"]) if gpu.get("uuid") else ("index", gpu.get("index"))

    before = {key(g): g for g in seen}
    if len(before) != len(seen):
        return None
    parts = []
    for gpu in value:
        old = before.get(key(gpu))
        if old is None:
            return None
        new = {k: v for k, v in gpu.items() if k not in old or old[k] != v}
        if new:
            fields = ", ".join(f"{k}={v!r}" for k, v in new.items())
            parts.append(f"GPU {old.get('index', '?')}: {fields}")
    return "; ".join(parts)


def _marks(out: TextIO) -> dict[str, str]:
    fancy = {"passed": "✓", "warning": "!", "failed": "✗", "skipped": "-", "not-run": "-"}
    try:
        "✓✗".encode(out.encoding or "ascii")
    except (LookupError, UnicodeEncodeError):
        return {**fancy, "passed": "+", "failed": "x"}
    return fancy
