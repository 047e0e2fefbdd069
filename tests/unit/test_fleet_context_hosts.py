"""`--host context:NAME` (and ``--tx popen//env:DOCKER_CONTEXT=NAME``) with a context that does
not exist: the host fails alone, naming the context, with a fix that applies (not the default
socket and `docker context use default`, which the worker's DOCKER_CONTEXT would ignore)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llem.domain.records import CommandResult
from pytest_llem.domain.remedies import DOCKER_CONTEXT_URL
from pytest_llem.facts import Facts
from pytest_llem.fleet import Fleet, gateways_of, judge_context, specs_for_hosts
from pytest_llem.settings import PreflightSettings

# What `docker context inspect nope` says: docker 23 and newer, then 19.03 to 20.10.
NOT_FOUND = (
    'context "nope": context not found: open /home/a/.docker/contexts/meta/ca3704aa0b06f5954c79'
    "ee837faa152d84d6b2d42838f0637a15eda8337dbdce/meta.json: no such file or directory"
)
DOES_NOT_EXIST = 'context "nope" does not exist'
[NOPE] = gateways_of(specs_for_hosts(["context:nope"], remote_python="python3", ssh_config=None))


def inspected(code: int | None, err: str = "", **kw: bool) -> CommandResult:
    return CommandResult(
        ("docker", "context", "inspect", "nope"), code, "[]" * (code == 1), err, **kw
    )


@pytest.mark.parametrize("said", [NOT_FOUND, DOES_NOT_EXIST])
def test_a_missing_context_is_named_with_its_fix(said: str) -> None:
    report = judge_context(NOPE, inspected(1, said))
    assert report is not None
    [finding] = report.failures
    assert (finding.id, finding.cause) == ("host-reachable", "host_unreachable")
    assert finding.message == "docker context nope not found"
    assert "`docker context ls`" in finding.fix
    assert "`docker context create nope --docker host=URL`" in finding.fix
    assert "docker context use" not in finding.fix and "docker.sock" not in finding.message
    assert finding.url == DOCKER_CONTEXT_URL
    assert finding.details["context"] == "nope" and finding.details["host"] == "nope"


@pytest.mark.parametrize(
    "result",
    [
        inspected(0),  # it exists: its checks run there
        inspected(None, missing=True),  # no docker CLI: the docker-cli check says so
        inspected(None, timed_out=True),
        inspected(1, "permission denied while reading /home/a/.docker/config.json"),
    ],
    ids=["exists", "no-cli", "no-answer", "other-error"],
)
def test_only_a_missing_context_stops_the_host(result: CommandResult) -> None:
    assert judge_context(NOPE, result) is None


def test_a_popen_gateway_knows_its_context_and_an_ssh_one_does_not() -> None:
    gateways = gateways_of(
        ["popen//id=a//env:DOCKER_CONTEXT=gpu3", "popen//id=b", "ssh=gpu1//env:DOCKER_CONTEXT=x"]
    )
    assert [g.context for g in gateways] == ["gpu3", None, None]


def fake_docker(bin_dir: Path, contexts: list[str]) -> None:
    """A docker CLI whose `context inspect` knows ``contexts`` and nothing else."""
    bin_dir.mkdir()
    known = " ".join(contexts)
    (bin_dir / "docker").write_text(
        "#!/bin/sh\n"
        '[ "$1 $2" = "context inspect" ] || exit 2\n'
        f'for c in {known}; do [ "$c" = "$3" ] && echo "[{{}}]" && exit 0; done\n'
        'echo "[]"; echo "context \\"$3\\": context not found: open meta.json" >&2; exit 1\n'
    )
    (bin_dir / "docker").chmod(0o755)


def test_the_fleet_asks_for_each_context_before_going_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_docker(tmp_path / "bin", ["gpu3"])
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    specs = specs_for_hosts(
        ["context:gpu3", "context:nope"], remote_python="python3", ssh_config=None
    )
    fleet = Fleet(gateways_of(specs), PreflightSettings(), Facts(env={}))
    assert [g.name for g in fleet.ask_hosts(timeout=10)] == ["gpu3"]
    [finding] = fleet.down["nope"].failures
    assert finding.message == "docker context nope not found"


def test_a_docker_host_wins_over_the_context_as_in_the_docker_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(The worker inherits DOCKER_HOST, so its context is not used: nothing to ask.)"""
    fake_docker(tmp_path / "bin", [])
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/other.sock")
    fleet = Fleet(
        gateways_of(["popen//id=x//env:DOCKER_CONTEXT=nope"]), PreflightSettings(), Facts(env={})
    )
    assert [g.name for g in fleet.ask_hosts(timeout=10)] == ["x"]
