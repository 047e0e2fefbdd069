"""What a session holds itself to: the checks it was to run, and why one did not (DESIGN §10)."""

from __future__ import annotations

import signal

from pytest_llem.domain.check_ids import BUILTIN_IDS
from pytest_llem.domain.report import CheckResult, Missing
from pytest_llem.facts import Facts
from pytest_llem.session import Session
from pytest_llem.settings import PreflightSettings

IMAGE = "nvidia/cuda:12.0.0-base-ubuntu22.04"
# Every built-in check, in the order they run (docker-cli and docker-daemon first).
REQUIRED = PreflightSettings().required_ids()


def session(**settings: object) -> Session:
    return Session(PreflightSettings(**settings), Facts(env={}))  # type: ignore[arg-type]


def ran(s: Session, *ids: str, outcome: str = "passed") -> None:
    for cid in ids:
        s.record(CheckResult(cid, 1, outcome), len(s.report().checks))  # type: ignore[arg-type]


def test_every_built_in_check_is_required_less_the_ones_skipped() -> None:
    assert REQUIRED[:2] == ["docker-cli", "docker-daemon"]
    assert f"cuda-compat[{IMAGE}]" in REQUIRED and f"gpu-in-container[{IMAGE}]" in REQUIRED
    assert list(session().required()) == REQUIRED
    # every built-in check of a Docker session (Podman's and the CDI spec's are not)
    assert len(BUILTIN_IDS) - len({"podman-cli", "cdi-spec"}) == len(REQUIRED)
    assert "gpu-idle" not in session(skip=frozenset({"gpu-idle"})).required()
    assert session(skip=frozenset({"all"})).required() == {}
    assert session(skipped_by="execution.skip_preflight in s.yaml").required() == {}


def test_a_collected_check_is_required_too_unless_skipped() -> None:
    s = session(skip=frozenset({"zz-skipped"}))
    s.expect("gpu-memory", 2)
    s.expect("zz-skipped", 1)
    assert list(s.required())[-1] == "gpu-memory" and "zz-skipped" not in s.required()
    ran(s, *REQUIRED)
    assert s.report().missing == [Missing("gpu-memory", 2, "not collected")]
    assert s.report().status == "incomplete"
    ran(s, "gpu-memory")
    assert s.report().missing == [] and s.report().status == "passed"


def test_why_a_check_did_not_run() -> None:
    s = session()
    ran(s, *REQUIRED[2:])
    s.expect("docker-cli", 1, not_run="deselected by -k 'not cli'")
    assert [(m.id, m.reason) for m in s.report().missing] == [
        ("docker-cli", "deselected by -k 'not cli'"),
        ("docker-daemon", "not collected"),
    ]
    s.stopped = "not run: pytest-xdist worker gw0 crashed"
    assert s.report().missing[1].reason == "not run: pytest-xdist worker gw0 crashed"
    s.interrupted_by = signal.SIGTERM
    assert s.report().missing[1].reason == "not run: interrupted (SIGTERM)"
    assert s.report().missing[0].reason == "deselected by -k 'not cli'"  # the most precise


def test_skipped_only_when_the_person_skipped_every_check() -> None:
    everything = session(skip=frozenset({"all"}))
    ran(everything, *REQUIRED, outcome="skipped")
    assert everything.report().skipped_by == "--llem-skip all"
    assert everything.report().status == "skipped"
    by_id = session(skip=frozenset(BUILTIN_IDS), skip_origin="--skip-check")
    ran(by_id, *REQUIRED, outcome="skipped")
    assert by_id.report().skipped_by == "--skip-check " + ",".join(sorted(BUILTIN_IDS))
    study = session(skip=frozenset({"all"}), skip_origin="execution.skip_checks in s.yaml")
    assert study.report().skipped_by == "execution.skip_checks in s.yaml (all)"
    # A check of the person's own that ran: not everything was skipped.
    ran(by_id, "gpu-memory")
    assert by_id.report().skipped_by is None and by_id.report().status == "passed"
    # A check skipped by its own verdict (a remote daemon) is not skipped by the person.
    some = session(skip=frozenset({"gpu-idle"}))
    ran(some, *REQUIRED, outcome="skipped")
    assert some.report().status == "passed" and some.report().skipped_by is None
    assert session(skipped_by="s.yaml").report().status == "skipped"
