"""The plugin's behaviour, through pytester: collection, ordering, gating, report, JSON."""

from __future__ import annotations

import json
import os

import pytest

BUILTINS = (
    "docker-cli,docker-daemon,nvidia-toolkit,host-driver,cuda-compat,gpu-in-container,"
    "gpu-idle,persistence-mode,mig-mode,clock-events,energy-counter,power-limit,gpu-health"
)

MEASUREMENT = (
    "clock-events",
    "energy-counter",
    "gpu-health",
    "gpu-idle",
    "mig-mode",
    "persistence-mode",
    "power-limit",
)

pytestmark = pytest.mark.usefixtures("bare_host")

USER_CHECKS = """
import pytest
import pytest_llem.checking as llem

@pytest.mark.preflight(tier=1, id="zz-user-ok")
def test_ok():
    pass

@pytest.mark.preflight(tier=2, id="gpu-memory")
def test_memory():
    llem.fail("only 8 GiB free on GPU 0", cause="check_error", fix="free GPU memory",
              details={"free_gib": 8})

@pytest.mark.preflight(tier=1, id="model-cache")
def test_cache():
    llem.warn("model cache not mounted", cause="check_error", fix="mount it")

def test_not_a_check():
    raise RuntimeError("a user's ordinary test must never run in pre-flight mode")
"""


def test_missing_docker_and_toolkit_are_numbered_and_tier2_not_run(
    pytester: pytest.Pytester,
) -> None:
    result = pytester.runpytest("--llem-preflight", "--llem-json", "r.json")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "Docker pre-flight failed: 2 issue(s) found",
            "  1. [docker-cli] Docker not found on PATH",
            "     Fix: Install Docker Engine — https://docs.docker.com/engine/install/",
            "  2. [nvidia-toolkit] NVIDIA Container Toolkit not found",
            "     Fix: Install the NVIDIA Container Toolkit — https://docs.nvidia.com/datacenter/"
            "cloud-native/container-toolkit/install-guide.html",
            "Warnings:",
            "  - [host-driver] nvidia-smi not found on this host: "
            "the host driver version is unknown",
        ]
    )
    data = json.loads((pytester.path / "r.json").read_text())
    assert data["schema"] == 1 and data["status"] == "failed"
    assert [(f["number"], f["id"], f["cause"]) for f in data["failures"]] == [
        (1, "docker-cli", "docker_cli_missing"),
        (2, "nvidia-toolkit", "toolkit_missing"),
    ]
    outcomes = {c["id"]: c["outcome"] for c in data["checks"]}
    assert outcomes == {
        "docker-cli": "failed",
        "docker-daemon": "not-run",
        "host-driver": "warning",
        "nvidia-toolkit": "failed",
        "cuda-compat[nvidia/cuda:12.0.0-base-ubuntu22.04]": "not-run",
        "gpu-in-container[nvidia/cuda:12.0.0-base-ubuntu22.04]": "not-run",
        **{cid: "not-run" for cid in MEASUREMENT},
    }
    assert data["warnings"][0]["cause"] == "host_driver_unavailable"


def test_user_checks_are_ordered_gated_and_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine=USER_CHECKS)
    result = pytester.runpytest(
        "--llem-preflight", "--llem-skip", BUILTINS, ".", "--llem-json", "r.json", "-v"
    )
    assert result.ret == 1
    data = json.loads((pytester.path / "r.json").read_text())
    ids = [c["id"] for c in data["checks"] if c["outcome"] != "skipped"]
    assert ids == ["model-cache", "zz-user-ok", "gpu-memory"]  # by tier, then id
    assert data["failures"] == [
        {
            "number": 1,
            "id": "gpu-memory",
            "tier": 2,
            "cause": "check_error",
            "message": "only 8 GiB free on GPU 0",
            "fix": "free GPU memory",
            "url": "",
            "details": {"free_gib": 8},
        }
    ]
    assert [w["id"] for w in data["warnings"]] == ["model-cache"]
    assert "test_not_a_check" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        ["  1. [gpu-memory] only 8 GiB free on GPU 0", "     Fix: free GPU memory"]
    )


def test_tier1_failure_stops_later_tiers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_mine="""
        import pytest
        import pytest_llem.checking as llem

        @pytest.mark.preflight(tier=1, id="a-broken")
        def test_broken():
            llem.fail("broken", cause="check_error")

        @pytest.mark.preflight(tier=1, id="b-also-broken")
        def test_also():
            assert 1 == 2, "numbers differ"

        @pytest.mark.preflight(tier=2, id="later")
        def test_later():
            raise RuntimeError("must not run")
    """
    )
    result = pytester.runpytest(
        "--llem-preflight", "--llem-skip", BUILTINS, ".", "-x", "--llem-json", "r.json"
    )
    assert result.ret == 1
    data = json.loads((pytester.path / "r.json").read_text())
    # -x is neutralised: both tier-1 failures are reported together.
    assert [(f["id"], f["cause"]) for f in data["failures"]] == [
        ("a-broken", "check_error"),
        ("b-also-broken", "check_error"),
    ]
    assert "numbers differ" in data["failures"][1]["message"]
    later = next(c for c in data["checks"] if c["id"] == "later")
    assert later["outcome"] == "not-run" and "a-broken" in later["reason"]


def test_warnings_only_pass_with_exit_zero(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_mine="""
        import pytest
        import pytest_llem.checking as llem

        @pytest.mark.preflight(tier=1, id="soft")
        def test_soft():
            llem.warn("just so you know", fix="nothing to do")
    """
    )
    result = pytester.runpytest("--llem-preflight", "--llem-skip", BUILTINS, ".")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "Docker pre-flight passed with 1 warning(s)",
            "Warnings:",
            "  - [soft] just so you know",
            "    Fix: nothing to do",
        ]
    )


def test_skip_all_and_unknown_ids(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llem-preflight", "--llem-skip", "all", "--llem-json", "r.json")
    assert result.ret == 0
    data = json.loads((pytester.path / "r.json").read_text())
    assert {c["outcome"] for c in data["checks"]} == {"skipped"}
    bad = pytester.runpytest("--llem-preflight", "--llem-skip", "docker-clii")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown check id 'docker-clii'; valid ids: " in bad.stderr.str()


def test_skip_by_full_image_id(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(
        "--llem-preflight",
        "--llem-image",
        "a/b:1",
        "--llem-image",
        "c/d:2",
        "--llem-skip",
        "docker-cli,docker-daemon,nvidia-toolkit,host-driver",
        "--llem-skip",
        "gpu-in-container[c/d:2]",
        "--llem-json",
        "r.json",
    )
    data = json.loads((pytester.path / "r.json").read_text())
    outcomes = {c["id"]: c["outcome"] for c in data["checks"]}
    assert outcomes["gpu-in-container[c/d:2]"] == "skipped"
    assert outcomes["gpu-in-container[a/b:1]"] != "skipped"
    assert result.ret in (0, 1)


def test_invalid_image_is_a_usage_error(pytester: pytest.Pytester) -> None:
    marker = pytester.path / "pwned"
    result = pytester.runpytest("--llem-preflight", "--llem-image", f"$(touch {marker})")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--llem-image: invalid image reference" in result.stderr.str()
    assert not marker.exists()


def test_inert_without_the_flag(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        def test_one():
            assert True
    """
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=1)
    assert "pre-flight" not in result.stdout.str()
    assert "docker-cli" not in result.stdout.str()


def test_user_tests_are_not_imported_without_paths(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_boom="raise SystemExit('user test module imported')")
    result = pytester.runpytest("--llem-preflight", "--llem-skip", "all")
    assert result.ret == 0


def test_junit_xml_carries_causes(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llem-preflight", "--junitxml", "j.xml")
    assert result.ret == 1
    xml = (pytester.path / "j.xml").read_text()
    assert 'name="llem_cause" value="docker_cli_missing"' in xml
    assert "Docker not found on PATH" in xml


def _outcomes(path: str) -> dict[str, object]:
    with open(path) as handle:
        data = json.load(handle)
    for check in data["checks"]:
        check.pop("duration_s")
    return {k: data[k] for k in ("status", "failures", "warnings", "checks")}


@pytest.mark.parametrize("workers", ["2", "4"])
def test_xdist_gives_the_same_findings(pytester: pytest.Pytester, workers: str) -> None:
    pytester.makepyfile(test_mine=USER_CHECKS.replace("def test_not_a_check", "def _unused"))
    common = ["--llem-preflight", ".", "--llem-image", "a/b:1"]
    plain = pytester.runpytest_subprocess(*common, "--llem-json", "plain.json")
    dist = pytester.runpytest_subprocess(*common, "-n", workers, "--llem-json", "dist.json")
    assert plain.ret == dist.ret == 1
    assert _outcomes(str(pytester.path / "plain.json")) == _outcomes(
        str(pytester.path / "dist.json")
    )
    dist.stdout.fnmatch_lines(["Docker pre-flight failed: 2 issue(s) found"])


def test_works_without_xdist(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llem-preflight", "-p", "no:xdist", "--llem-skip", "all")
    assert result.ret == 0


def test_works_where_xdist_is_not_installed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An `xdist` that cannot be imported stands for an environment without pytest-xdist."""
    blocked = pytester.mkdir("blocked")
    (blocked / "xdist").mkdir()
    (blocked / "xdist" / "__init__.py").write_text("raise ImportError('no pytest-xdist here')\n")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(blocked), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    args = ["-p", "pytest_llem.plugin", "-p", "no:cacheprovider"]
    no_n = pytester.runpytest_subprocess(*args, "-n", "2")
    assert no_n.ret == pytest.ExitCode.USAGE_ERROR  # -n is unknown: xdist is really absent
    result = pytester.runpytest_subprocess(
        *args, "--llem-preflight", "--llem-skip", "all", "--llem-json", "r.json"
    )
    assert result.ret == 0, result.stdout.str()
    data = json.loads((pytester.path / "r.json").read_text())
    assert data["status"] == "skipped" and data["checks"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--llem-timeout=-5"], "--llem-timeout: should be greater than 0, got -5"),
        (["--llem-timeout=nan"], "--llem-timeout: should be a finite number, got nan"),
        (["--llem-timeout=0"], "--llem-timeout: should be greater than 0, got 0"),
        (["--llem-timeout=soon"], "--llem-timeout: expected a number of seconds, got 'soon'"),
        (["--llem-pull-timeout=nan"], "--llem-pull-timeout: should be a finite number, got nan"),
        (["--llem-pull-timeout=1e9"], "--llem-pull-timeout: should be less than or equal to"),
        (["--llem-cache-s=inf"], "--llem-cache-s: should be a finite number, got inf"),
        (["--llem-cache-s=-1"], "--llem-cache-s: should be greater than or equal to 0, got -1"),
        (["--llem-probe-image=Not/Valid"], "--llem-probe-image: invalid image reference"),
        (["--llem-gpus=0,x"], "--llem-gpus: expected GPU indices (0, 1, ...), got 'x'"),
        (["--llem-gpus=-1"], "--llem-gpus: expected GPU indices (0, 1, ...), got '-1'"),
    ],
)
def test_every_option_is_validated_before_anything_runs(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    result = pytester.runpytest("--llem-preflight", *args, "--llem-json", "r.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert not (pytester.path / "r.json").exists()


def test_a_json_report_path_that_cannot_be_written_is_refused_first(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "adir").mkdir()
    result = pytester.runpytest("--llem-preflight", "--llem-json", "adir")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--llem-json: cannot write adir: is a directory" in result.stderr.str()
    result = pytester.runpytest("--llem-preflight", "--llem-json", "nowhere/r.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "nowhere is not a directory" in result.stderr.str()


def test_the_json_report_goes_into_a_fifo_in_place(pytester: pytest.Pytester) -> None:
    """A FIFO (or /dev/stdout) receives the report; it is never replaced by a file."""
    import threading

    fifo = pytester.path / "report.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = pytester.runpytest("--llem-preflight", "--llem-json", str(fifo))
    reader.join(timeout=30)
    assert result.ret == 1
    assert fifo.is_fifo()
    assert json.loads(received[0])["status"] == "failed"
    assert not list(pytester.path.glob(".report.fifo.*"))


def test_a_failed_json_write_fails_the_run_and_leaves_no_temporary_file(
    pytester: pytest.Pytester,
) -> None:
    """A FIFO nobody reads: opened without blocking, an error, not a hang."""
    os.mkfifo(pytester.path / "r.fifo")
    result = pytester.runpytest("--llem-preflight", "--llem-skip", "all", "--llem-json", "r.fifo")
    assert result.ret != 0
    assert (
        "llem: cannot write the JSON report: r.fifo: no process reads this FIFO"
        in result.stdout.str()
    )
    assert not list(pytester.path.glob(".r.fifo.*"))


def test_the_json_report_is_written_through_a_link(pytester: pytest.Pytester) -> None:
    target = pytester.path / "reports" / "latest.json"
    target.parent.mkdir()
    target.write_text("")
    (pytester.path / "r.json").symlink_to(target)
    result = pytester.runpytest("--llem-preflight", "--llem-skip", "all", "--llem-json", "r.json")
    assert result.ret == 0
    assert (pytester.path / "r.json").is_symlink()
    assert json.loads(target.read_text())["status"] == "skipped"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--llem-json", "-"], "--llem-json -: stdout is pytest's own output; name a file"),
        (["--llem-json", "r.xml", "--junitxml", "./r.xml"],
         "--llem-json and --junitxml name one file (r.xml, ./r.xml): one report would be lost"),
        (["--llem-json", "/dev/zero"],
         "--llem-json: cannot write /dev/zero: is a character device"),
    ],
)  # fmt: skip
def test_json_report_paths_refused_before_anything_runs(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    result = pytester.runpytest("--llem-preflight", "--llem-skip", "all", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert not (pytester.path / "-").exists() and not (pytester.path / "r.xml").exists()


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"images": ("a/b:1", "c/d:2")},
        {"timeout_s": 2.5, "pull_timeout_s": 7, "cache_s": 0.0, "no_cache": True},
        {"skip": frozenset({"docker-cli", "gpu-in-container[a/b:1]"}), "json_path": "r.json"},
        {"probe_image": "p/q:3", "timeout_s": 1e-3},
    ],
)
def test_settings_survive_the_trip_to_a_worker(settings: dict[str, object]) -> None:
    """What the controller hands an xdist worker (plain values) gives the same settings."""
    from pytest_llem.plugin import settings_from_plain, settings_to_plain
    from pytest_llem.settings import PreflightSettings

    given = PreflightSettings(
        **settings,  # type: ignore[arg-type]
        requests=(("a/b:1", "all"), ("a/b:1", "device=1,3")),
        local_runs=True,
        skipped_by="execution.skip_preflight in s.yaml",
    )
    plain = settings_to_plain(given)
    import json

    assert settings_from_plain(json.loads(json.dumps(plain))) == given


def test_the_settings_llem_hands_over_are_the_sessions(pytester: pytest.Pytester) -> None:
    """llem hands pytest.main its settings as an object: the session uses that very object,
    whatever the command line says."""
    from pytest_llem.plugin import SETTINGS_KEY, settings_of
    from pytest_llem.settings import PreflightSettings

    given = PreflightSettings(images=("a/b:1",), requests=(("a/b:1", "device=0"),))
    config = pytester.parseconfig("--llem-image", "other/image:2")
    config.stash[SETTINGS_KEY] = given
    assert settings_of(config) is given


def test_measurement_only_runs_and_reports_the_measurement_tier_alone(
    pytester: pytest.Pytester,
) -> None:
    """No docker, no nvidia-smi: no Docker check is reported, gpu-idle warns that the GPUs
    cannot be judged (no host-driver check says it here), the others say why they judged
    nothing, and the run passes with that warning."""
    result = pytester.runpytest(
        "--llem-preflight", "--llem-measurement-only", "--llem-gpus", "1,0", "--llem-json", "r.json"
    )
    assert result.ret == 0
    data = json.loads((pytester.path / "r.json").read_text())
    assert [(c["id"], c["tier"], c["outcome"]) for c in data["checks"]] == [
        (cid, 3, "warning" if cid == "gpu-idle" else "skipped") for cid in MEASUREMENT
    ]
    assert all("nvidia-smi not found" in c["reason"] for c in data["checks"] if c["reason"])
    [warning] = data["warnings"]
    assert (warning["id"], warning["cause"]) == ("gpu-idle", "host_driver_unavailable")
    assert warning["message"].startswith("the GPUs to measure cannot be judged: nvidia-smi not")
    assert data["status"] == "passed"  # warnings are listed; they never fail the run
