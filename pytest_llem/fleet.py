"""Fleet pre-flight: every check on every host of pytest-xdist's ``--dist each`` (DESIGN §9).

A host is a gateway (``--tx``): ``popen`` with a Docker context of its own, or ``ssh``. The
controller names each host (the gateway id, else the ssh host), asks every ssh host first
whether it can run the pre-flight at all, and whether the Docker context of a popen host
exists (`host.gateways`, under a limit): a host that cannot is reported with cause
``host_unreachable`` and left out, and the others go on. The others' workers are started and
watched by `fleet_controller.FleetController`: a host whose worker does not start, crashes or
stops answering is reported the same way (`Fleet.lose`), with what it said.
Every worker gates its own tiers; the controller keeps one `Session` per host and builds a
`FleetReport`.

`llem preflight --host` maps its words to gateway specs here too (`specs_for_hosts`).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .domain.fleet import FleetReport, unreachable
from .domain.report import Report
from .domain.text import ascii_int
from .errors import ConfigError
from .session import Session

if TYPE_CHECKING:
    from .domain.records import CommandResult
    from .facts import Facts
    from .settings import PreflightSettings

CONNECT_TIMEOUT_S = 20.0
EXECNET_PYTHON = "python"  # what execnet runs on an ssh host when the spec names no python
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Gateway:
    """One host of the fleet: its name, and the ``--tx`` spec that reaches it (with ``id=``)."""

    name: str
    spec: str
    ssh: str | None = None
    ssh_config: str | None = None
    python: str | None = None
    context: str | None = None  # a popen gateway's Docker context (env:DOCKER_CONTEXT=NAME)

    @property
    def asked_first(self) -> bool:
        """Whether the host is asked before xdist goes there (ssh, or a Python of its own)."""
        return self.ssh is not None or self.python is not None


MAX_GATEWAYS_PER_SPEC = 1024  # `--tx N*spec`: beyond any fleet, short of a memory error


def gateways_of(tx: Iterable[str]) -> list[Gateway]:
    """The hosts of ``--tx`` specs (``N*spec`` counts N), each with a name of its own."""
    from execnet import XSpec

    texts: list[str] = []
    for text in tx:
        count, star, rest = text.partition("*")
        many = ascii_int(count, max_digits=100) if star else None
        if many is not None and many > MAX_GATEWAYS_PER_SPEC:
            raise ConfigError(
                f"--tx {text[:40]}: {count[:20]} gateways from one spec "
                f"(at most {MAX_GATEWAYS_PER_SPEC})"
            )
        texts += [rest] * many if many is not None else [text]
    gateways: list[Gateway] = []
    taken: set[str] = set()
    unnamed = 0
    for text in texts:
        spec = XSpec(text)
        name: str = spec.id or (_ssh_host(spec.ssh) if spec.ssh else f"gw{unnamed}")
        unnamed += spec.id is None
        base, n = name, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name)
        gateways.append(
            Gateway(
                name=name,
                spec=text if spec.id == name else f"id={name}//{_without_id(text)}",
                ssh=spec.ssh or None,
                ssh_config=spec.ssh_config,
                python=spec.python,
                context=None if spec.ssh else _context_of(spec.env),
            )
        )
    return gateways


def _context_of(env: dict[str, Any]) -> str | None:
    """The Docker context a popen gateway's ``env:DOCKER_CONTEXT=NAME`` names, if any."""
    context = env.get("DOCKER_CONTEXT")
    return context if isinstance(context, str) and context else None


def _without_id(text: str) -> str:
    return "//".join(part for part in text.split("//") if not part.startswith("id="))


def _ssh_host(ssh: str) -> str:
    """The host of an ssh spec's arguments (``-p 2222 alice@gpu1`` → ``gpu1``)."""
    words = ssh.split()
    return words[-1].rpartition("@")[2] if words else "ssh"


# --- `llem preflight --host` ---------------------------------------------------------------


def specs_for_hosts(
    hosts: Sequence[str], *, remote_python: str, ssh_config: str | None
) -> list[str]:
    """``--tx`` specs for `llem preflight --host` words (ConfigError naming a bad one).

    ``context:NAME`` checks that Docker context's daemon from this machine (in a process whose
    DOCKER_HOST is unset: see `preflight.run_fleet_preflight`); ``ssh://[USER@]HOST[:PORT]``
    or ``[USER@]HOST`` runs the checks on that host over ssh with ``remote_python``.
    """
    if not remote_python.strip() or "//" in remote_python or "'" in remote_python:
        raise ConfigError(f"--remote-python: not a command: {remote_python!r}")
    if ssh_config is not None and ("//" in ssh_config or not ssh_config):
        raise ConfigError(f"--ssh-config: not a usable path: {ssh_config!r}")
    specs = []
    for word in hosts:
        if word.startswith("context:"):
            context = word[len("context:") :]
            if not _NAME.fullmatch(context):
                raise ConfigError(f"--host {word}: not a Docker context name")
            specs.append(f"popen//id={context}//env:DOCKER_CONTEXT={context}")
            continue
        user, host, port = _ssh_target(word)
        name = host if port is None else f"{host}:{port}"
        ssh = ("" if port is None else f"-p {port} ") + (f"{user}@{host}" if user else host)
        parts = [f"ssh={ssh}", f"id={name}", f"python={remote_python}"]
        if ssh_config is not None:
            parts.append(f"ssh_config={ssh_config}")
        # The remote worker loads exactly the plugins named on the command line, as llem's does.
        parts += ["env:PYTEST_DISABLE_PLUGIN_AUTOLOAD=1", "env:PYTEST_ADDOPTS="]
        specs.append("//".join(parts))
    return specs


def _ssh_target(word: str) -> tuple[str | None, str, int | None]:
    """(user, host, port) of ``ssh://[USER@]HOST[:PORT]`` or ``[USER@]HOST``."""
    problem = f"--host {word}: expected [ssh://][USER@]HOST[:PORT] or context:NAME"
    if word.startswith("ssh://"):
        try:
            url = urlsplit(word)
            port = url.port
        except ValueError:
            raise ConfigError(problem) from None
        if url.path not in ("", "/") or url.query or url.fragment or url.password:
            raise ConfigError(problem)
        user, host = url.username, url.hostname or ""
    elif "://" in word:
        raise ConfigError(f"--host {word}: only ssh:// hosts and context:NAME are supported")
    else:
        user, _, host = word.rpartition("@") if "@" in word else (None, "", word)
        port = None
    if not _NAME.fullmatch(host) or (user is not None and not _USER.fullmatch(user)):
        raise ConfigError(problem)
    return user or None, host, port


def read_hosts_file(text: str, origin: str) -> list[str]:
    """The host words of a hosts file: one per line; blank lines and ``#`` comments ignored."""
    hosts = []
    for number, line in enumerate(text.splitlines(), 1):
        word = line.split("#", 1)[0].strip()
        if not word:
            continue
        if len(word.split()) > 1:
            raise ConfigError(f"{origin}:{number}: one host per line, got {word!r}")
        hosts.append(word)
    return hosts


# --- the controller's state ----------------------------------------------------------------


class Fleet:
    """The controller's view of a fleet pre-flight: one `Session` per host."""

    def __init__(
        self, gateways: Sequence[Gateway], settings: PreflightSettings, facts: Facts
    ) -> None:
        self.gateways = list(gateways)
        self.settings = settings
        self.sessions = {g.name: Session(settings, facts) for g in self.gateways}
        self.down: dict[str, Report] = {}  # hosts that could not be reached, or were lost

    def ask_hosts(self, timeout: float | None = None) -> list[Gateway]:
        """Ask every host that needs it whether it can run the pre-flight, all at once, each
        within ``timeout`` (default: `CONNECT_TIMEOUT_S`, or the host timeout if shorter);
        the hosts to go to (the others are `down`)."""
        if timeout is None:
            timeout = min(CONNECT_TIMEOUT_S, self.host_timeout)
        asked = [g for g in self.gateways if g.asked_first or g.context is not None]
        if asked:
            from .host.proc import result_of

            with ThreadPoolExecutor(max_workers=min(16, len(asked))) as pool:
                futures = [(g, pool.submit(_ask, g, timeout)) for g in asked]
                for gateway, future in futures:
                    problem = result_of(future)
                    if problem is not None:
                        self.down[gateway.name] = problem
        return [g for g in self.gateways if g.name not in self.down]

    @property
    def host_timeout(self) -> float:
        """How long one host may go without answering (``--llem-host-timeout``)."""
        return self.settings.host_timeout

    def to_start(self) -> list[Gateway]:
        """The hosts whose workers are to be started: those not already down."""
        return [g for g in self.gateways if g.name not in self.down]

    def session_of(self, node: Any) -> Session | None:
        """The session of the host an xdist report came from (None: not a fleet host)."""
        gateway = getattr(node, "gateway", None)
        return self.sessions.get(getattr(gateway, "id", None) or "")

    def lose(
        self,
        name: str,
        message: str,
        *,
        said: Sequence[str] = (),
        fix: str = "",
        stage: str = "",
    ) -> None:
        """Record that host ``name`` failed after its first contact (its worker did not start,
        crashed or stopped answering): cause ``host_unreachable``, with the last lines it
        ``said``; what it reported before stays. The first reason given stands."""
        if name in self.down or name not in self.sessions:
            return
        gateway = next(g for g in self.gateways if g.name == name)
        details: dict[str, Any] = {"host": name, "via": _via(gateway)}
        if stage:
            details["stage"] = stage
        if said:
            details["output"] = "\n".join(said)
        self.down[name] = unreachable(message, fix=fix, details=details)

    def report(self, *, interrupted: bool = False, stopped: str | None = None) -> FleetReport:
        """One report per host; ``stopped``: why checks without a result did not run, when
        the controller knows it for every host (--co, an early stop)."""
        hosts = []
        for gateway in self.gateways:
            name = gateway.name
            session = self.sessions[name]
            session.stopped = session.stopped or stopped
            report = session.report()
            report.interrupted = interrupted
            if name in self.down:  # its host_unreachable failure stands for all its checks
                report.checks[:0] = self.down[name].checks
                report.missing = []
            elif not report.checks and not interrupted:
                report = unreachable(
                    f"no check result came back from {name}", details={"host": name}
                )
            hosts.append((name, report))
        return FleetReport(hosts)


def _ask(gateway: Gateway, timeout: float) -> Report | None:
    from .host import gateways

    # A DOCKER_HOST (which the worker inherits) wins over its context, as in the docker CLI.
    if gateway.context is not None and not os.environ.get("DOCKER_HOST"):
        problem = judge_context(gateway, gateways.probe_context(gateway.context, timeout=timeout))
        if problem is not None:
            return problem
    if not gateway.asked_first:
        return None
    if gateway.ssh is not None:
        python = gateway.python or EXECNET_PYTHON
        result = gateways.probe_ssh(
            gateway.ssh, python, ssh_config=gateway.ssh_config, timeout=timeout
        )
    else:
        python = gateway.python or ""
        result = gateways.probe_local(shlex.split(python), timeout=timeout)
    return judge_answer(gateway, python, result, timeout)


def judge_context(gateway: Gateway, result: CommandResult) -> Report | None:
    """The report of a popen gateway whose Docker context does not exist (`docker context
    inspect` says so), else None: whatever else is wrong there, its checks say."""
    said = [line.strip() for line in result.output.splitlines() if line.strip()]
    text = " ".join(said).lower()
    missing = "context" in text and ("not found" in text or "does not exist" in text)
    if result.ok or result.missing or result.timed_out or not missing:
        return None
    name = gateway.context
    from .domain.remedies import DOCKER_CONTEXT_URL

    return unreachable(
        f"docker context {name} not found",
        fix=f"List the contexts with `docker context ls` and name one of them, or create this "
        f"one: `docker context create {name} --docker host=URL`",
        details={"host": gateway.name, "context": name, "output": "\n".join(said[-5:])},
        url=DOCKER_CONTEXT_URL,
    )


def judge_answer(
    gateway: Gateway, python: str, result: CommandResult, timeout: float
) -> Report | None:
    """None when the host can run the pre-flight, else the report of why it cannot."""
    from .host.gateways import MISSING_PACKAGE

    if result.ok:
        return None
    name = gateway.name
    how = _via(gateway)
    said = [line.strip() for line in result.output.splitlines() if line.strip()]
    last = said[-1] if said else "no output"
    details = {"host": name, "via": how, "python": python, "output": "\n".join(said[-5:])}
    name_python = "name its Python with --remote-python PATH (in a --tx spec: python=PATH)"
    if result.missing:
        what = "the ssh client" if gateway.ssh is not None else python
        return unreachable(
            f"cannot reach {name}: {what} cannot be run here ({last})",
            fix="Install the OpenSSH client (ssh) on this machine"
            if gateway.ssh is not None
            else f"Name an existing Python in the spec's python= (not {python})",
            details=details,
        )
    if result.timed_out:
        return unreachable(f"{name} did not answer within {timeout:g} s ({how})", details=details)
    if gateway.ssh is not None and result.returncode == 255:
        return unreachable(f"cannot reach {name} over ssh: {last}", details=details)
    if result.returncode == 127:
        return unreachable(
            f"{python} not found on {name}", fix=f"Install Python 3 there, or {name_python}",
            details=details,
        )  # fmt: skip
    if result.returncode == MISSING_PACKAGE:
        return unreachable(
            f"pytest-llem is not installed for {python} on {name} ({last})",
            fix=f"Install there the pytest-llem this machine runs, from a path or a pinned git "
            f"URL, never by the bare name (it is not published): {install_hint(python)}; "
            f"or {name_python}",
            details=details,
        )
    return unreachable(
        f"{python} on {name} failed (exit status {result.returncode}): {last}", details=details
    )


def install_hint(python: str) -> str:
    """How to install on another host the pytest-llem this machine runs (what pip recorded of
    where it came from, PEP 610's direct_url.json): the git URL pinned to its commit, or a
    copy of the checkout it was installed from."""
    source = installed_from()
    url = str(source.get("url", ""))
    vcs = source.get("vcs_info")
    pip = f"{python} -m pip install"
    commit = str(vcs.get("commit_id", "")) if isinstance(vcs, dict) else ""
    if isinstance(vcs, dict) and vcs.get("vcs") == "git" and _SHA.fullmatch(commit):
        return f"{pip} {shlex.quote(f'git+{url}@{commit}')}"
    if url.startswith("file://") and ("dir_info" in source or "archive_info" in source):
        from urllib.parse import unquote

        path = unquote(urlsplit(url).path)
        here = os.path.basename(path.rstrip("/")) or "pytest-llem"
        return f"copy {shlex.quote(path)} there, then {pip} {shlex.quote(f'./{here}')}"
    return (
        f"{pip} ./pytest-llem in a copy of its checkout, or {pip} "
        "'git+https://…/pytest-llem@<40-hex commit>'"
    )


def installed_from() -> dict[str, Any]:
    """pip's record of where this pytest-llem came from (``direct_url.json``), or {}."""
    import json
    from importlib import metadata

    for found in metadata.distributions(name="pytest-llem"):  # (an egg-info may come first)
        try:
            data = json.loads(found.read_text("direct_url.json") or "null")
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return {}


_SHA = re.compile(r"[0-9a-f]{40}")


def _via(gateway: Gateway) -> str:
    return f"ssh {gateway.ssh}" if gateway.ssh is not None else "a local process"


# --- what a host that failed after its first contact said ----------------------------------


def start_failure(gateway: Gateway, why: str, returncode: int | None, said: Sequence[str]) -> str:
    """The message of a host whose worker did not start (its process ended, or broke
    execnet's protocol) although the host answered its first contact."""
    name = gateway.name
    last = said[-1] if said else why
    if gateway.ssh is not None and returncode == 255:
        return f"cannot reach {name} over ssh: {last}"
    python = gateway.python or (EXECNET_PYTHON if gateway.ssh is not None else sys.executable)
    status = "" if returncode is None else f", exit status {returncode}"
    return f"the pre-flight could not start on {name} ({python}{status}): {last}"


def silence(name: str, timeout: float) -> tuple[str, str]:
    """The message and fix of a host that did not answer within the host timeout."""
    return (
        f"{name} did not answer within {timeout:g} s",
        f"Check that {name} is up and not overloaded; a host that needs longer without a "
        "word (a slow pull) can be given it: llem preflight --host-timeout SECONDS (pytest: "
        "--llem-host-timeout SECONDS)",
    )


def last_line(text: object, default: str = "no reason given") -> str:
    """The last non-empty line of ``text`` (an error, a traceback)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else default
