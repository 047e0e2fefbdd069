"""Fleets without a fleet: host names, `--host` words, answers of hosts, the fleet report."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_llem.domain.fleet import FleetReport, unreachable
from pytest_llem.domain.records import CommandResult
from pytest_llem.domain.report import CheckResult, Finding, Missing, Report
from pytest_llem.errors import ConfigError
from pytest_llem.facts import Facts
from pytest_llem.fleet import (
    Fleet,
    Gateway,
    gateways_of,
    judge_answer,
    last_line,
    read_hosts_file,
    silence,
    specs_for_hosts,
    start_failure,
)
from pytest_llem.settings import PreflightSettings

# -- names -----------------------------------------------------------------------------------


def test_hosts_are_named_by_id_else_ssh_host_else_gateway_number() -> None:
    gateways = gateways_of(
        [
            "popen//id=gpuA//env:DOCKER_CONTEXT=a",
            "ssh=-p 2222 alice@gpu1//python=python3",
            "popen",
            "2*popen//env:X=1",
            "ssh=bob@gpu1",
        ]
    )
    assert [g.name for g in gateways] == ["gpuA", "gpu1", "gw1", "gw2", "gw3", "gpu1-2"]
    # Every spec now names its host: the name xdist gives the worker is the host's.
    assert gateways[0].spec == "popen//id=gpuA//env:DOCKER_CONTEXT=a"
    assert gateways[1].spec == "id=gpu1//ssh=-p 2222 alice@gpu1//python=python3"
    assert gateways[3].spec == "id=gw2//popen//env:X=1"
    assert [g.asked_first for g in gateways] == [False, True, False, False, False, True]


def test_a_popen_gateway_with_its_own_python_is_asked_first() -> None:
    [gateway] = gateways_of(["popen//python=/opt/py/bin/python"])
    assert gateway.asked_first and gateway.ssh is None


# -- `llem preflight --host` -----------------------------------------------------------------


def test_host_words_become_gateway_specs() -> None:
    specs = specs_for_hosts(
        ["ssh://alice@gpu1", "gpu2", "bob@10.0.0.3", "ssh://gpu4:2222", "context:gpu3"],
        remote_python="/opt/llem/bin/python",
        ssh_config="/home/a/.ssh/fleet",
    )
    tail = "python=/opt/llem/bin/python//ssh_config=/home/a/.ssh/fleet"
    env = "env:PYTEST_DISABLE_PLUGIN_AUTOLOAD=1//env:PYTEST_ADDOPTS="
    assert specs == [
        f"ssh=alice@gpu1//id=gpu1//{tail}//{env}",
        f"ssh=gpu2//id=gpu2//{tail}//{env}",
        f"ssh=bob@10.0.0.3//id=10.0.0.3//{tail}//{env}",
        f"ssh=-p 2222 gpu4//id=gpu4:2222//{tail}//{env}",
        "popen//id=gpu3//env:DOCKER_CONTEXT=gpu3",
    ]
    assert [g.name for g in gateways_of(specs)] == ["gpu1", "gpu2", "10.0.0.3", "gpu4:2222", "gpu3"]


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("tcp://gpu1:2376", "--host tcp://gpu1:2376: only ssh:// hosts and context:NAME"),
        ("ssh://gpu1/path", "--host ssh://gpu1/path: expected [ssh://][USER@]HOST[:PORT]"),
        ("ssh://gpu1:port", "--host ssh://gpu1:port: expected"),
        ("ssh://a:secret@gpu1", "--host ssh://a:secret@gpu1: expected"),
        ("gpu 1", "--host gpu 1: expected"),
        ("-oProxyCommand=x", "--host -oProxyCommand=x: expected"),
        ("context:", "--host context:: not a Docker context name"),
        ("context:a//b", "--host context:a//b: not a Docker context name"),
        ("", "--host : expected"),
    ],
)
def test_bad_host_words_are_refused(word: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        specs_for_hosts([word], remote_python="python3", ssh_config=None)
    assert str(info.value).startswith(message)


def test_a_remote_python_that_would_break_the_spec_is_refused() -> None:
    for python in ("", "py//thon", "it's"):
        with pytest.raises(ConfigError, match="--remote-python"):
            specs_for_hosts(["gpu1"], remote_python=python, ssh_config=None)


def test_hosts_file() -> None:
    text = "# the rack\ngpu1\n\n  ssh://alice@gpu2  # the new one\ncontext:local\n"
    assert read_hosts_file(text, "hosts") == ["gpu1", "ssh://alice@gpu2", "context:local"]
    with pytest.raises(ConfigError, match=r"^hosts:2: one host per line, got 'gpu1 gpu2'$"):
        read_hosts_file("ok\ngpu1 gpu2\n", "hosts")


# -- a host's answer -------------------------------------------------------------------------

SSH = Gateway("gpu1", "id=gpu1//ssh=gpu1", ssh="alice@gpu1", python="python3")


def answer(code: int | None, out: str = "", err: str = "", **kw: bool) -> CommandResult:
    return CommandResult(("ssh",), code, out, err, **kw)


def finding_of(report: Report | None) -> Finding:
    assert report is not None
    [finding] = report.failures
    assert (finding.id, finding.tier, finding.cause) == ("host-reachable", 0, "host_unreachable")
    return finding


def test_a_host_that_answers_is_fine() -> None:
    assert judge_answer(SSH, "python3", answer(0, "0.1.0\n"), 20) is None


def test_ssh_failure() -> None:
    err = "ssh: connect to host gpu1 port 22: Connection refused\n"
    finding = finding_of(judge_answer(SSH, "python3", answer(255, err=err), 20))
    assert finding.message == (
        "cannot reach gpu1 over ssh: ssh: connect to host gpu1 port 22: Connection refused"
    )
    assert finding.url.startswith("https://") and finding.details["via"] == "ssh alice@gpu1"


def test_no_answer() -> None:
    finding = finding_of(judge_answer(SSH, "python3", answer(None, timed_out=True), 20))
    assert finding.message == "gpu1 did not answer within 20 s (ssh alice@gpu1)"


def test_no_python_there() -> None:
    err = "bash: line 1: python3: command not found"
    finding = finding_of(judge_answer(SSH, "python3", answer(127, err=err), 20))
    assert finding.message == "python3 not found on gpu1"
    assert "--remote-python PATH" in finding.fix


SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("source", "how"),
    [
        ({"url": "https://github.com/o/pytest-llem", "vcs_info": {"vcs": "git", "commit_id": SHA}},
         f"python3 -m pip install git+https://github.com/o/pytest-llem@{SHA}"),
        ({"url": "file:///src/pytest-llem", "dir_info": {"editable": True}},
         "copy /src/pytest-llem there, then python3 -m pip install ./pytest-llem"),
        ({"url": "file:///w/my%20llem", "dir_info": {}},
         "copy '/w/my llem' there, then python3 -m pip install './my llem'"),
        # From an index, a branch (no full commit), or unknown: the two pinned forms.
        ({"url": "https://github.com/o/pytest-llem",
          "vcs_info": {"vcs": "git", "commit_id": "main"}},
         "python3 -m pip install ./pytest-llem in a copy of its checkout, or python3 -m pip "
         "install 'git+https://…/pytest-llem@<40-hex commit>'"),
        ({}, "python3 -m pip install ./pytest-llem in a copy of its checkout, or "),
    ],
)  # fmt: skip
def test_no_pytest_llem_there(
    monkeypatch: pytest.MonkeyPatch, source: dict[str, object], how: str
) -> None:
    """The fix installs the pytest-llem this machine runs, from a path or a pinned git URL:
    never `pip install pytest-llem`, a name that is not published (anyone could register it)."""
    monkeypatch.setattr("pytest_llem.fleet.installed_from", lambda: source)
    out = "No module named 'pytest_llem'\n"
    finding = finding_of(judge_answer(SSH, "python3", answer(3, out), 20))
    assert finding.message == (
        "pytest-llem is not installed for python3 on gpu1 (No module named 'pytest_llem')"
    )
    assert finding.fix.startswith(
        "Install there the pytest-llem this machine runs, from a path or a pinned git URL, "
        f"never by the bare name (it is not published): {how}"
    )
    assert "install pytest-llem" not in finding.fix


def test_the_install_hint_names_where_this_pytest_llem_came_from() -> None:
    """What pip recorded of this installation (here: a checkout, editable) is what is named."""
    from pytest_llem.fleet import install_hint

    hint = install_hint("python3")
    assert "install pytest-llem" not in hint
    assert hint.startswith(("copy ", "python3 -m pip install 'git+", "python3 -m pip install ./"))


def test_no_ssh_client_here() -> None:
    missing = answer(127, err="ssh: No such file or directory", missing=True)
    finding = finding_of(judge_answer(SSH, "python3", missing, 20))
    assert finding.message == (
        "cannot reach gpu1: the ssh client cannot be run here (ssh: No such file or directory)"
    )


# -- the fleet report ------------------------------------------------------------------------


def passed(n: int = 2) -> Report:
    return Report(checks=[CheckResult(f"c{i}", 1, "passed") for i in range(n)])


def failed() -> Report:
    finding = Finding("gpu-in-container[i]", 2, "no_devices", "no GPU", "fix it", "https://x")
    return Report(checks=[CheckResult("gpu-in-container[i]", 2, "failed", finding=finding)])


def test_fleet_text() -> None:
    fleet = FleetReport(
        [("gpu1", passed()), ("gpu3", failed()), ("gpu4", unreachable("cannot reach gpu4"))]
    )
    assert fleet.render().splitlines() == [
        "Host gpu1: Docker pre-flight passed (2 checks)",
        "Host gpu3:",
        "Docker pre-flight failed: 1 issue(s) found",
        "  1. [gpu-in-container[i]] no GPU",
        "     Fix: fix it — https://x",
        "Host gpu4:",
        "Docker pre-flight failed: 1 issue(s) found",
        "  1. [host-reachable] cannot reach gpu4",
        "     Fix: Check that `ssh HOST` logs in without a prompt and that pytest-llem is "
        "installed for the Python named on that host (llem preflight --remote-python PATH) — "
        "https://pytest-xdist.readthedocs.io/en/stable/remote.html",
        "Docker pre-flight: 1 of 3 hosts ready; failed: gpu3, gpu4",
    ]
    assert FleetReport([("a", passed()), ("b", passed())]).summary() == (
        "Docker pre-flight: 2 of 2 hosts ready"
    )


def test_fleet_json() -> None:
    data = FleetReport([("gpu1", passed()), ("gpu3", failed())]).to_json()
    assert data["status"] == "failed"
    assert [(h["host"], h["status"]) for h in data["hosts"]] == [
        ("gpu1", "passed"),
        ("gpu3", "failed"),
    ]
    assert set(data["hosts"][0]) == {
        "host",
        "status",
        "failures",
        "warnings",
        "checks",
        "missing",
        "host_facts",
    }
    assert [(f["number"], f["host"], f["cause"]) for f in data["failures"]] == [
        (1, "gpu3", "no_devices")
    ]
    assert len(data["checks"]) == 3 and data["checks"][0]["host"] == "gpu1"


@pytest.mark.parametrize(
    ("statuses", "worst"),
    [
        (["passed", "passed"], "passed"),
        (["passed", "warning"], "passed"),  # warnings never fail a host
        (["warning", "failed", "passed"], "failed"),
        (["incomplete", "passed"], "incomplete"),
        (["failed", "incomplete"], "failed"),
        (["skipped", "passed"], "passed"),
        (["skipped", "skipped"], "skipped"),
        (["skipped", "incomplete"], "incomplete"),
        ([], "failed"),
    ],
)
def test_fleet_status_is_the_worst(statuses: list[str], worst: str) -> None:
    def of(status: str) -> Report:
        if status == "failed":
            return failed()
        if status == "warning":
            finding = Finding("w", 1, "no_devices", "m", severity="warning")
            return Report(checks=[CheckResult("w", 1, "warning", finding=finding)])
        if status == "incomplete":
            return Report(missing=[Missing("docker-cli", 1, "deselected by -k 'x'")])
        if status == "skipped":
            return Report(skipped_by="--llem-skip all")
        return passed()

    assert FleetReport([(str(i), of(s)) for i, s in enumerate(statuses)]).status == worst


def test_a_host_that_reported_nothing_or_was_lost_failed(tmp_path: Path) -> None:
    gateways = gateways_of(["popen//id=a", "popen//id=b", "popen//id=c"])
    fleet = Fleet(gateways, PreflightSettings(), Facts(env={}))
    node = {name: SimpleNamespace(gateway=SimpleNamespace(id=name)) for name in "abc"}
    for name in "ab":
        session = fleet.session_of(node[name])
        assert session is not None
        for order, cid in enumerate(PreflightSettings().required_ids()):
            session.record(CheckResult(cid, 1, "passed"), order)
    fleet.lose("b", "the connection to b was lost: EOFError", said=["Killed"], stage="running")
    fleet.lose("b", "a second reason")  # (the first one stands)
    report = fleet.report()
    assert [(n, r.status) for n, r in report.hosts] == [
        ("a", "passed"),
        ("b", "failed"),
        ("c", "failed"),
    ]
    lost = report.hosts[1][1].failures[0]
    assert lost.message == "the connection to b was lost: EOFError"
    assert lost.details == {
        "host": "b", "via": "a local process", "stage": "running", "output": "Killed"
    }  # fmt: skip
    assert [c.id for c in report.hosts[1][1].checks][:2] == ["host-reachable", "docker-cli"]
    assert report.hosts[1][1].missing == []  # host-reachable stands for all its checks
    assert report.hosts[2][1].failures[0].message == "no check result came back from c"
    stopped = fleet.report(interrupted=True)
    assert stopped.status == "failed"  # b and c failed; a proved nothing:
    assert (stopped.hosts[0][0], stopped.hosts[0][1].status) == ("a", "incomplete")


# -- a host that fails after its first contact -----------------------------------------------


def test_a_worker_that_did_not_start_is_named_with_its_last_words() -> None:
    said = ["Traceback (most recent call last):", "MemoryError"]
    assert start_failure(SSH, "it ended before its worker started", 1, said) == (
        "the pre-flight could not start on gpu1 (python3, exit status 1): MemoryError"
    )
    assert start_failure(SSH, "ssh failed", 255, ["Connection closed by 10.0.0.1"]) == (
        "cannot reach gpu1 over ssh: Connection closed by 10.0.0.1"
    )
    [local] = gateways_of(["popen//id=gpu2//python=/opt/py/bin/python"])
    assert start_failure(local, "expected 1 bytes, got 0", None, []) == (
        "the pre-flight could not start on gpu2 (/opt/py/bin/python): expected 1 bytes, got 0"
    )


def test_a_silent_host_is_named_with_the_limit_and_how_to_change_it() -> None:
    message, fix = silence("gpu1", 690.0)
    assert message == "gpu1 did not answer within 690 s"
    assert "--host-timeout SECONDS" in fix and "--llem-host-timeout SECONDS" in fix


def test_the_last_line_of_an_error() -> None:
    assert last_line("Traceback:\n  File x\nOSError: gone\n\n") == "OSError: gone"
    assert last_line(None) == "None"
    assert last_line("  ") == "no reason given"


@pytest.mark.parametrize(("host_timeout", "asked_within"), [(None, 20.0), (3.0, 3.0)])
def test_the_first_contact_is_bounded_by_the_host_timeout_too(
    monkeypatch: pytest.MonkeyPatch, host_timeout: float | None, asked_within: float
) -> None:
    from pytest_llem import fleet as module

    limits: list[float] = []

    def ask(gateway: Gateway, timeout: float) -> Report | None:
        limits.append(timeout)
        return unreachable("no") if gateway.name == "b" else None

    monkeypatch.setattr(module, "_ask", ask)
    gateways = gateways_of(["popen//id=a//python=python3", "popen//id=b//python=python3"])
    fleet = Fleet(gateways, PreflightSettings(host_timeout_s=host_timeout), Facts(env={}))
    assert [g.name for g in fleet.ask_hosts()] == ["a"]
    assert limits == [asked_within] * 2
    assert [g.name for g in fleet.to_start()] == ["a"]
