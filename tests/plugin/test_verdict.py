"""The verdict tells the truth (DESIGN §10): `passed` only when every required check ran and
none failed; `incomplete` when one did not run; `skipped` when the person skipped them all; a
usage error when two checks share an id. Each scenario here once said `passed`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llem.domain.check_ids import BUILTIN_IDS, BY_ID
from pytest_llem.settings import PreflightSettings

# The built-in checks of a default (Docker) session: not Podman's, nor the CDI spec's.
DEFAULT_IDS = tuple(
    cid for cid in BUILTIN_IDS if BY_ID[cid].runners & PreflightSettings().runner_kinds
)
BUILTINS = ",".join(DEFAULT_IDS)
ALL = len(DEFAULT_IDS)  # the built-in checks of a default session (one image)
pytestmark = pytest.mark.usefixtures("bare_host")

IMAGE = "nvidia/cuda:12.0.0-base-ubuntu22.04"
TIER1_FAILING = ("docker-cli", "nvidia-toolkit")  # on a host without docker and its toolkit
INCOMPLETE = r"Docker pre-flight incomplete: \d+ required check\(s\) did not run"


def run(pytester: pytest.Pytester, *args: str, subprocess: bool = False) -> pytest.RunResult:
    json_path = pytester.path / "r.json"
    json_path.unlink(missing_ok=True)
    full = ["--llem-preflight", *args, "--llem-json", str(json_path)]
    if subprocess:
        return pytester.runpytest_subprocess(*full)
    return pytester.runpytest(*full)


def verdict(pytester: pytest.Pytester) -> dict[str, object]:
    data = json.loads((pytester.path / "r.json").read_text())
    assert isinstance(data, dict)
    return data


def missing(data: dict[str, object]) -> dict[str, str]:
    found = data["missing"]
    assert isinstance(found, list)
    return {m["id"]: m["reason"] for m in found}


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        ("--co", "not run: collect only (--co)"),
        ("--collect-only", "not run: collect only (--co)"),
        ("--setup-only", "not run: --setup-only"),
        ("--setup-plan", "not run: --setup-plan"),
    ],
)
def test_a_session_that_runs_no_check_is_incomplete(
    pytester: pytest.Pytester, option: str, reason: str
) -> None:
    result = run(pytester, option)
    assert result.ret == 1  # a CI gate must not pass
    lines = result.stdout.lines
    start = lines.index(f"Docker pre-flight incomplete: {ALL} required check(s) did not run")
    assert lines[start + 1] == f"  - [docker-cli] {reason}"
    assert "pre-flight passed" not in result.stdout.str()
    data = verdict(pytester)
    assert data["status"] == "incomplete" and data["checks"] == []
    assert set(missing(data).values()) == {reason}
    assert len(missing(data)) == ALL


def test_checks_deselected_by_k_make_it_incomplete(pytester: pytest.Pytester) -> None:
    """-k keeps only the measurement tier (which warns on this host): the failing tier 1
    did not run, so nothing proves the host fit."""
    result = run(pytester, "-k", "gpu_idle or persistence or mig or clock or energy")
    assert result.ret == 1
    result.stdout.re_match_lines([INCOMPLETE, r"  - \[docker-cli\] deselected by -k '.*'"])
    data = verdict(pytester)
    assert data["status"] == "incomplete" and data["failures"] == []
    assert missing(data)["nvidia-toolkit"].startswith("deselected by -k 'gpu_idle or")
    kept = {"gpu-idle", "persistence-mode", "mig-mode", "clock-events", "energy-counter"}
    assert set(missing(data)) == {*DEFAULT_IDS} - kept - {"cuda-compat", "gpu-in-container"} | {
        f"cuda-compat[{IMAGE}]",
        f"gpu-in-container[{IMAGE}]",
    }


def test_checks_deselected_by_deselect_make_it_incomplete(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        "--deselect", "host_checks.py::check_docker_cli",
        "--deselect", "host_checks.py::check_nvidia_toolkit",
        "--llem-skip", "docker-daemon,cuda-compat,gpu-in-container",
    )  # fmt: skip
    assert result.ret == 1
    data = verdict(pytester)
    assert data["status"] == "incomplete" and data["failures"] == []
    assert missing(data) == {cid: "deselected by --deselect" for cid in TIER1_FAILING}


def test_checks_left_out_by_lf_make_it_incomplete(pytester: pytest.Pytester) -> None:
    """--lf collects only the files of the last failures: a check that failed last time
    passes now, and the others did not run."""
    pytester.makepyfile(
        test_mine="""
        import os
        import pytest

        @pytest.mark.preflight(tier=1, id="a-ok")
        def test_ok():
            pass

        @pytest.mark.preflight(tier=1, id="b-flaky")
        def test_flaky():
            assert not os.path.exists("fail"), "failing this time"
        """
    )
    docker = "--llem-skip=docker-cli,nvidia-toolkit,docker-daemon,cuda-compat,gpu-in-container"
    (pytester.path / "fail").write_text("")
    first = run(pytester, ".", docker)
    assert first.ret == 1 and verdict(pytester)["status"] == "failed"
    (pytester.path / "fail").unlink()
    again = run(pytester, ".", docker, "--lf")
    assert again.ret == 1
    data = verdict(pytester)
    assert data["status"] == "incomplete"
    assert [c["id"] for c in data["checks"]] == ["b-flaky"]  # type: ignore[union-attr]
    assert missing(data)["host-driver"] == "not collected (--lf: only what failed last time)"
    assert "gpu-idle" in missing(data)


def test_a_user_check_cannot_take_a_built_in_id(pytester: pytest.Pytester) -> None:
    """Once, it overwrote the built-in's failure with its own pass."""
    pytester.makepyfile(
        test_mine="""
        import pytest

        @pytest.mark.preflight(tier=1, id="nvidia-toolkit")
        def test_mine():
            pass
        """
    )
    result = run(pytester, ".")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: check test_mine.py::test_mine has the id 'nvidia-toolkit' of the built-in "
            "check host_checks.py::check_nvidia_toolkit: give it an id of its own*"
        ]
    )
    assert not (pytester.path / "r.json").exists()
    assert "pre-flight" not in result.stdout.str()


def test_two_checks_cannot_share_an_id(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_one="""
        import pytest

        @pytest.mark.preflight(tier=1, id="gpu-memory")
        def test_one():
            pass
        """,
        test_two="""
        import pytest

        @pytest.mark.preflight(tier=2, id="gpu-memory")
        def test_two():
            pytest.fail("never run")
        """,
    )
    result = run(pytester, ".", "-k", "one")  # (a deselected check takes its id all the same)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "ERROR: two checks have the id 'gpu-memory': test_one.py::test_one and "
        "test_two.py::test_two" in result.stderr.str()
    )
    assert not (pytester.path / "r.json").exists()


def test_a_duplicate_id_is_a_usage_error_under_xdist_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_mine="""
        import pytest

        @pytest.mark.preflight(tier=3, id="docker-cli")
        def test_mine():
            pass
        """
    )
    result = run(pytester, ".", "-n", "2", subprocess=True)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "has the id 'docker-cli' of the built-in check" in result.stderr.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert not (pytester.path / "r.json").exists()


@pytest.mark.parametrize(
    "ending", ["os._exit(3)", "os.kill(os.getpid(), signal.SIGKILL)"], ids=["exit", "kill"]
)
def test_a_check_that_kills_its_worker_fails_and_the_rest_did_not_run(
    pytester: pytest.Pytester, ending: str
) -> None:
    pytester.makepyfile(
        test_mine=f"""
        import os
        import signal
        import pytest

        @pytest.mark.preflight(tier=1, id="a-crasher")
        def test_crash():
            {ending}
        """
    )
    result = run(pytester, ".", "-n", "2", subprocess=True)
    assert result.ret == 1
    result.stdout.re_match_lines(
        [
            r"Docker pre-flight failed: 1 issue\(s\) found",
            r"  1\. \[a-crasher\] the check ended its pytest-xdist worker gw\d \(it exited or was",
            r".*Fix: ",
            rf"Docker pre-flight incomplete: {ALL} required check\(s\) did not run",
            r"  - \[docker-cli\] not run: pytest-xdist worker gw\d crashed",
        ]
    )
    data = verdict(pytester)
    assert data["status"] == "failed"
    [failure] = data["failures"]  # type: ignore[misc]
    assert (failure["id"], failure["cause"]) == ("a-crasher", "check_error")
    # The crashing check is not run again on a new worker (it would crash that one too).
    assert result.parseoutcomes() == {"failed": 1}


def test_the_rest_of_a_crashed_workers_work_is_not_run_elsewhere(
    pytester: pytest.Pytester,
) -> None:
    """A check later in the run crashes: what ran before it is kept, the rest did not run."""
    pytester.makepyfile(
        test_mine="""
        import os
        import pytest

        @pytest.mark.preflight(tier=1, id="a-ok")
        def test_ok():
            pass

        @pytest.mark.preflight(tier=1, id="b-crasher")
        def test_crash():
            os._exit(3)

        @pytest.mark.preflight(tier=2, id="c-later")
        def test_later():
            pass
        """
    )
    result = run(pytester, ".", "-n", "2", "--llem-skip", BUILTINS, subprocess=True)
    assert result.ret == 1
    data = verdict(pytester)
    outcomes = {c["id"]: c["outcome"] for c in data["checks"]}  # type: ignore[union-attr]
    assert (outcomes["a-ok"], outcomes["b-crasher"]) == ("passed", "failed")
    assert "c-later" not in outcomes
    [failure] = data["failures"]  # type: ignore[misc]
    worker = failure["details"]["worker"]  # whichever worker got the checks
    assert missing(data) == {"c-later": f"not run: pytest-xdist worker {worker} crashed"}


def test_every_check_skipped_is_skipped_not_passed(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--llem-skip", "all")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["Docker pre-flight skipped: --llem-skip all"])
    data = verdict(pytester)
    assert (data["status"], data["skipped_by"]) == ("skipped", "--llem-skip all")
    by_id = run(pytester, "--llem-skip", BUILTINS)
    assert by_id.ret == 0
    assert verdict(pytester)["status"] == "skipped"
    by_id.stdout.fnmatch_lines(["Docker pre-flight skipped: --llem-skip clock-events,*"])


def test_a_study_that_skips_the_preflight(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".yaml",
        study="name: s\nexecution: {skip_preflight: true}\n"
        "runners: {vllm: 'docker:v/img:1'}\nexperiments: [{model: m, backend: vllm}]\n",
    )
    result = run(pytester, "--llem-config", "study.yaml")
    assert result.ret == 0  # (every item deselected: pytest alone would say 5)
    result.stdout.fnmatch_lines(
        ["Docker pre-flight skipped: execution.skip_preflight in *study.yaml"]
    )
    assert verdict(pytester)["status"] == "skipped"


def test_a_usage_error_writes_no_report(pytester: pytest.Pytester) -> None:
    """A CI gate reading the file must not find a pass that never happened."""
    result = run(pytester, "--llem-skip", "docker-clii")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert not (pytester.path / "r.json").exists()
    assert "pre-flight passed" not in result.stdout.str()


@pytest.mark.parametrize("option", ["--sw", "--stepwise", "--sw-skip"])
def test_stepwise_cannot_hide_a_later_failure(pytester: pytest.Pytester, option: str) -> None:
    pytester.makepyfile(
        test_mine="""
        import pytest

        @pytest.mark.preflight(tier=1, id="a-broken")
        def test_a():
            assert False, "a is broken"

        @pytest.mark.preflight(tier=1, id="b-broken")
        def test_b():
            assert False, "b is broken"
        """
    )
    for _ in range(2):  # the second time, stepwise would start after its last failure
        result = run(pytester, ".", "--llem-skip", BUILTINS, option)
        assert result.ret == 1
        data = verdict(pytester)
        assert [f["id"] for f in data["failures"]] == ["a-broken", "b-broken"]  # type: ignore[union-attr]
        assert data["status"] == "failed" and data["missing"] == []


def test_an_interrupted_session_is_incomplete(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_mine="""
        import pytest

        @pytest.mark.preflight(tier=1, id="a-stop")
        def test_stop():
            raise KeyboardInterrupt
        """
    )
    result = run(pytester, ".", "--llem-skip", "docker-cli,nvidia-toolkit")
    assert result.ret == 130
    data = verdict(pytester)
    assert data["status"] == "incomplete"
    assert missing(data)["gpu-idle"] == "not run: interrupted (Ctrl-C)"
    assert "pre-flight passed" not in result.stdout.str()


def test_a_collection_error_is_no_interrupt(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine="import pytest\nthis is not python\n")
    result = run(pytester, ".")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # pytest's own status, not 130
    data = verdict(pytester)
    assert data["status"] == "incomplete"
    assert missing(data)["test_mine.py"] == "not collected: collection error in test_mine.py"
    assert missing(data)["docker-cli"] == "not run: 1 error during collection"


def test_junit_xml_does_not_read_as_a_pass_when_checks_did_not_run(
    pytester: pytest.Pytester,
) -> None:
    import xml.etree.ElementTree as ET

    result = run(pytester, "-k", "gpu_idle", "--junitxml", "j.xml")
    assert result.ret == 1
    suite = ET.parse(pytester.path / "j.xml").getroot().find("testsuite")
    assert suite is not None
    assert suite.get("errors") == str(ALL - 1) and suite.get("tests") == str(ALL)
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["llem_status"] == "incomplete"
    errors = {
        case.get("name"): error.get("message")
        for case in suite.iter("testcase")
        if (error := case.find("error")) is not None
    }
    assert errors["docker-cli"] == "[docker-cli] deselected by -k 'gpu_idle'"
    co = run(pytester, "--co", "--junitxml", "j.xml")
    assert co.ret == 1
    suite = ET.parse(pytester.path / "j.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("errors") == str(ALL)


def test_a_passed_session_passes(pytester: pytest.Pytester) -> None:
    """The other side of the invariant: every required check ran, none failed."""
    docker = "docker-cli,nvidia-toolkit,docker-daemon,cuda-compat,gpu-in-container"
    result = run(pytester, "--llem-skip", docker, "--junitxml", "j.xml")
    assert result.ret == 0, result.stdout.str()
    data = verdict(pytester)
    assert data["status"] == "passed" and data["missing"] == [] and data["warnings"]
    result.stdout.fnmatch_lines(["Docker pre-flight passed with * warning(s)"])
    assert (
        '<property name="llem_status" value="passed" />'
        in Path(pytester.path / "j.xml").read_text()
    )
