"""Slurm's pure parts: the allocation a job runs in, the drain reason, the job clients' output
and states, the sbatch line, `execution.slurm`, and how the allocation becomes the default GPUs
of the pre-flight and of each launch."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_llem.domain.allocation import Allocation, allocation_of, parse_gpu_ids, visible_in_job
from pytest_llem.domain.report import CheckResult, Finding, Report
from pytest_llem.domain.slurm import (
    REASON_MAX_BYTES,
    TIME_LIMIT,
    JobState,
    cut_bytes,
    drain_reason,
    merged,
    parse_sacct,
    parse_sbatch,
    parse_scontrol_jobs,
    parse_squeue,
    phase_of,
    reason_of,
    sbatch_argv,
)
from pytest_llem.errors import ConfigError
from pytest_llem.plugin import settings_from_plain, settings_to_plain
from pytest_llem.run.config import StudyConfig
from pytest_llem.run.manifest import ExperimentRecord
from pytest_llem.run.runner_kinds import KINDS, gpu_environment
from pytest_llem.run.runners import preflight_settings, resolve_runners
from pytest_llem.run.slurm_jobs import Job, Submission, _without_record, job_env
from pytest_llem.settings import PreflightSettings, SettingError

IN_STEP = {  # what `srun --gres=gpu:2` gave a step, where devices are constrained by a cgroup
    "SLURM_JOB_ID": "42",
    "SLURM_STEP_ID": "0",
    "SLURMD_NODENAME": "gpu07",
    "SLURM_STEP_GPUS": "2,3",
    "CUDA_VISIBLE_DEVICES": "0,1",
}
LOCAL_ENGINE = {"DOCKER_HOST": "unix:///var/run/docker.sock", "XDG_CONFIG_HOME": "/nonexistent"}


# -- the allocation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("0", (0,)), ("0,2,3", (0, 2, 3)), (" 1, 0 ", (1, 0)), ("", ()), ("0-3", None),
     ("GPU-8f6b2c3a", None), ("1,,2", None), ("٣", None)],
)  # fmt: skip
def test_gpu_ids_are_indices_joined_by_commas(text: str, parsed: tuple[int, ...] | None) -> None:
    assert parse_gpu_ids(text) == parsed


def test_outside_a_job_there_is_no_allocation() -> None:
    assert allocation_of({"SLURM_STEP_GPUS": "1", "CUDA_VISIBLE_DEVICES": "1"}) is None


def test_a_step_takes_its_own_gpus_in_host_indices_not_the_renumbered_ones() -> None:
    found = allocation_of({**IN_STEP, "SLURM_JOB_GPUS": "1,2,3"})
    assert found is not None
    assert (found.job_id, found.gpus, found.source) == ("42", (2, 3), "SLURM_STEP_GPUS")
    assert (found.step_id, found.node, found.visible) == ("0", "gpu07", "0,1")
    assert "numbers the SLURM_STEP_GPUS GPUs from 0" in found.note
    assert found.describe() == "Slurm job 42 (step 0) on gpu07: GPU 2,3 (SLURM_STEP_GPUS)"


def test_a_prolog_reads_the_jobs_gpus_and_finds_them_in_cuda_visible_devices() -> None:
    prolog = {"SLURM_JOB_ID": "7", "SLURM_JOB_GPUS": "1", "CUDA_VISIBLE_DEVICES": "1"}
    found = allocation_of(prolog)
    assert found is not None and (found.gpus, found.source, found.note) == (
        (1,),
        "SLURM_JOB_GPUS",
        "",
    )


def test_an_empty_step_variable_falls_back_to_the_jobs() -> None:
    """(As seen here: SLURM_JOB_GPUS empty in a step, and an empty step list elsewhere.)"""
    found = allocation_of({"SLURM_JOB_ID": "7", "SLURM_STEP_GPUS": "", "SLURM_JOB_GPUS": "0,1"})
    assert found is not None and found.gpus == (0, 1) and found.source == "SLURM_JOB_GPUS"


@pytest.mark.parametrize(
    ("visible", "note"),
    [
        ("GPU-a,GPU-b", "names the SLURM_STEP_GPUS GPUs by UUID"),
        ("3", "CUDA_VISIBLE_DEVICES=3 does not match SLURM_STEP_GPUS=2,3"),
        ("", "CUDA_VISIBLE_DEVICES=(empty) does not match"),
        ("2,3", ""),
    ],
)
def test_cuda_visible_devices_is_only_compared(visible: str, note: str) -> None:
    found = allocation_of({**IN_STEP, "CUDA_VISIBLE_DEVICES": visible})
    assert found is not None and found.gpus == (2, 3)  # whatever it says
    assert (note in found.note) if note else found.note == ""


def test_a_job_without_gpus_is_named_but_narrows_nothing() -> None:
    found = allocation_of({"SLURM_JOB_ID": "9"})
    assert found is not None and found.gpus == ()
    assert PreflightSettings().with_allocation(found).gpus == ()
    unreadable = allocation_of({"SLURM_JOB_ID": "9", "SLURM_JOB_GPUS": "gpu:a100:2"})
    assert unreadable is not None and unreadable.gpus == () and "all GPUs" in unreadable.note


def test_the_report_block_names_the_job_and_its_gpus() -> None:
    found = allocation_of(IN_STEP)
    assert found is not None
    assert found.summary() == {
        "job_id": "42", "gpus": [2, 3], "source": "SLURM_STEP_GPUS", "step_id": "0",
        "node": "gpu07", "note": found.note, "cuda_visible_devices": "0,1",
    }  # fmt: skip


# -- the allocation as the default of the settings and of each launch -------------------------


def test_the_allocation_is_the_default_and_named_gpus_win() -> None:
    allocation = allocation_of(IN_STEP)
    settings = PreflightSettings().with_allocation(allocation)
    assert (settings.gpus, settings.allocation) == ((2, 3), allocation)
    assert settings.launch_requests == (("nvidia/cuda:12.0.0-base-ubuntu22.04", "device=2,3"),)
    named = PreflightSettings(gpus=(0,)).with_allocation(allocation)
    assert (named.gpus, named.allocation) == ((0,), allocation)  # still named in the report
    assert PreflightSettings().with_allocation(None) == PreflightSettings()


def test_the_allocation_crosses_to_an_xdist_worker() -> None:
    settings = PreflightSettings().with_allocation(allocation_of(IN_STEP))
    plain = json.loads(json.dumps(settings_to_plain(settings)))
    assert settings_from_plain(plain) == settings
    with pytest.raises(SettingError, match="expected a Slurm allocation"):
        PreflightSettings(allocation=["42", [0]])  # type: ignore[arg-type]


def _study(**data: Any) -> StudyConfig:
    return StudyConfig.model_validate(data)


def test_a_docker_experiment_in_a_job_requests_its_allocation_by_host_index() -> None:
    study = _study(
        runners={"vllm": "docker:vllm/vllm-openai:v0.6.3"},
        experiments=[{"model": "m", "backend": "vllm"}, {"model": "n", "backend": "vllm",
                                                          "gpus": [1]}],
    )  # fmt: skip
    env = {**LOCAL_ENGINE, **IN_STEP}
    settings = preflight_settings(study, resolve_runners(study, env), env)
    assert settings.requests == (
        ("vllm/vllm-openai:v0.6.3", "device=2,3"),
        ("vllm/vllm-openai:v0.6.3", "device=1"),  # named GPUs win
    )
    assert settings.gpus == (1, 2, 3)
    launch = KINDS["docker"].launch("001", "vllm/vllm-openai:v0.6.3", None, env)
    assert launch.gpu_args == ["--gpus", '"device=2,3"'] and launch.allocated


def test_a_remote_engine_is_not_given_this_nodes_allocation() -> None:
    env = {**IN_STEP, "DOCKER_HOST": "tcp://gpu-box:2375"}
    launch = KINDS["docker"].launch("001", "a/b:1", None, env)
    assert (launch.request, launch.allocated) == ("all", False)


def test_a_local_process_in_a_job_keeps_slurms_cuda_visible_devices() -> None:
    launch = KINDS["local"].launch("001", None, None, IN_STEP)
    assert (launch.request, launch.allocated) == ("device=2,3", True)
    named = KINDS["local"].launch("001", None, [1], IN_STEP)
    assert (named.request, named.allocated) == ("device=1", False)
    outside = KINDS["local"].launch("001", None, None, {})
    assert (outside.request, outside.allocated) == ("all", False)


def test_a_local_process_gets_the_cuda_visible_devices_that_name_its_gpus_in_the_job() -> None:
    """In a constrained step (GPU 2 and 3 are CUDA's 0 and 1) a study that names GPU 3 gets
    Slurm's entry for it, "1": the host index 3 would name no device there."""

    def visible(devices: list[int] | None, env: dict[str, str]) -> str | None:
        launch = KINDS["local"].launch("001", None, devices, env)
        return gpu_environment(launch, env).get("CUDA_VISIBLE_DEVICES")

    assert visible(None, IN_STEP) == "0,1"  # its allocation: Slurm's own list
    assert visible([3], IN_STEP) == "1"
    assert visible([3, 2], IN_STEP) == "1,0"
    unconstrained = {**IN_STEP, "CUDA_VISIBLE_DEVICES": "2,3"}
    assert visible([3], unconstrained) == "3"
    by_uuid = {**IN_STEP, "CUDA_VISIBLE_DEVICES": "GPU-aa,GPU-bb"}
    assert visible([3], by_uuid) == "GPU-bb"
    # A GPU outside the allocation, or no job: its host index, in PCI bus order.
    assert visible([5], IN_STEP) == "5"
    launch = KINDS["local"].launch("001", None, [1], {})
    assert gpu_environment(launch, {}) == {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "1",
    }  # fmt: skip
    assert "CUDA_VISIBLE_DEVICES" not in gpu_environment(
        KINDS["local"].launch("001", None, None, {}), {}
    )


@pytest.mark.parametrize(
    ("visible", "devices", "expected"),
    [
        ("0,1", (3,), "1"),
        ("0,1", (2, 3), "0,1"),
        ("0", (3,), None),  # a list of another length: it cannot say
        ("0,,1", (3,), None),
        ("0,1", (4,), None),
    ],
)
def test_slurms_entries_for_host_gpus(
    visible: str, devices: tuple[int, ...], expected: str | None
) -> None:
    found = allocation_of(
        {"SLURM_JOB_ID": "7", "SLURM_JOB_GPUS": "2,3", "CUDA_VISIBLE_DEVICES": visible}
    )
    assert visible_in_job(devices, found) == expected
    assert visible_in_job(devices, None) is None


# -- the drain reason -------------------------------------------------------------------------


def test_the_reason_is_one_line_naming_the_check() -> None:
    assert drain_reason("gpu-idle", "GPU 0 busy:\n  PID 7") == "llem: [gpu-idle] GPU 0 busy: PID 7"
    assert drain_reason("gpu-idle", "GPU 0 busy", more=2) == "llem: [gpu-idle] GPU 0 busy (+2 more)"
    assert "\x1b" not in drain_reason("x", "\x1b]0;title\x07")


def test_a_long_reason_is_cut_to_what_slurm_keeps_and_keeps_its_count() -> None:
    reason = drain_reason("gpu-idle", "é" * 400, more=1)
    assert len(reason.encode()) <= REASON_MAX_BYTES == 255
    assert reason.startswith("llem: [gpu-idle] éé") and reason.endswith("... (+1 more)")
    reason.encode("utf-8")  # never cut inside a character
    odd = drain_reason("x" * 300, "message")
    assert len(odd.encode()) <= 255 and odd.endswith("...")


def test_cut_bytes() -> None:
    assert cut_bytes("abc", 3) == "abc"
    assert cut_bytes("abcdef", 5) == "ab..."
    assert cut_bytes("€€€", 7) == "€..."  # 3 bytes each: the second would not fit whole


def _report(*outcomes: tuple[str, str, str]) -> Report:
    checks = [
        CheckResult(cid, 3, outcome, finding=Finding(cid, 3, "gpu_busy", message))  # type: ignore[arg-type]
        if outcome in ("failed", "warning")
        else CheckResult(cid, 3, outcome)  # type: ignore[arg-type]
        for cid, outcome, message in outcomes
    ]
    return Report(checks=checks)


def test_the_reason_of_a_report_is_its_first_failure_and_nothing_when_it_passed() -> None:
    failed = _report(("gpu-idle", "failed", "GPU 0 busy"), ("gpu-health", "failed", "ECC"))
    assert reason_of(failed) == "llem: [gpu-idle] GPU 0 busy (+1 more)"
    assert reason_of(_report(("persistence-mode", "warning", "off"))) == ""
    assert reason_of(Report(skipped_by="--skip-preflight")) == ""
    interrupted = Report(interrupted=True)
    assert reason_of(interrupted) == "llem: [preflight] pre-flight incomplete: nothing was proved"


# -- job states -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "phase"),
    [("PENDING", "queued"), ("REQUEUE_HOLD", "queued"), ("CONFIGURING", "queued"),
     ("RUNNING", "running"), ("COMPLETING", "running"), ("SUSPENDED", "running"),
     ("COMPLETED", "done"), ("FAILED", "done"), ("CANCELLED by 0", "done"),
     ("TIMEOUT", "done"), ("NODE_FAIL", "done"), ("OUT_OF_MEMORY", "done"),
     ("PREEMPTED", "done"), ("SOMETHING_NEW", "running"), ("", "running")],
)  # fmt: skip
def test_job_states_map_to_queued_running_done(state: str, phase: str) -> None:
    assert phase_of(state) == phase


def test_what_the_clients_print_is_read() -> None:
    assert parse_sbatch("12\n") == "12" and parse_sbatch("13;cluster\n") == "13"
    assert parse_sbatch("sbatch: error: Batch job submission failed\n") is None
    squeue = parse_squeue("5|PENDING|Resources|\n6|RUNNING|None|gpu07\nnoise\n")
    assert squeue == {
        "5": JobState("5", "PENDING", "Resources", ""),
        "6": JobState("6", "RUNNING", "", "gpu07"),
    }
    line = (
        "JobId=7 JobName=llem-x UserId=u(1) JobState=CANCELLED Reason=None Restarts=1 "
        "ExitCode=0:15 WorkDir=/home/a b/c NodeList=gpu07 BatchHost=gpu07 StdOut=/x y"
    )
    [(job_id, state)] = parse_scontrol_jobs(line + "\n").items()
    assert (job_id, state) == ("7", JobState("7", "CANCELLED", "", "gpu07", "0:15", 1))
    sacct = parse_sacct("8|CANCELLED by 0|gpu07|0:15\n9|TIMEOUT|None assigned|0:0\n")
    assert sacct["8"].state == "CANCELLED" and sacct["9"].node == ""
    assert merged(squeue, {"6": JobState("6", "COMPLETED")})["6"].state == "RUNNING"


def test_a_job_that_left_no_record_is_explained_by_its_state() -> None:
    submission = Submission(study={}, study_path=None, runners={"pytorch": "local"})
    job = Job("001", "12")

    def record(state: JobState | None, interrupted: bool = False) -> ExperimentRecord:
        return _without_record(submission, job, "m", "pytorch", state, interrupted)

    timeout = record(JobState("12", "TIMEOUT", node="gpu07", exit_code="0:15"))
    assert (timeout.status, timeout.cause) == ("failed", "unknown")
    assert timeout.message is not None
    assert "reached its time limit (exit code 0:15) on gpu07" in timeout.message
    assert record(JobState("12", "CANCELLED")).status == "interrupted"
    assert record(None, interrupted=True).status == "interrupted"
    assert "no longer knows job 12" in (record(None).message or "")


# -- submission -------------------------------------------------------------------------------


def test_the_sbatch_line() -> None:
    argv = sbatch_argv(
        name="llem-s-1-001", output="/r/slurm/001.out", script="/r/slurm/job.sh", args=["001"],
        partition="gpu", gpus=2, time_limit="1:00:00", extra_args=["--account=lab"],
    )  # fmt: skip
    assert argv == [
        "sbatch", "--parsable", "--job-name=llem-s-1-001", "--output=/r/slurm/001.out",
        "--gres=gpu:2", "--partition=gpu", "--time=1:00:00", "--account=lab",
        "/r/slurm/job.sh", "001",
    ]  # fmt: skip
    bare = sbatch_argv(name="n", output="o", script="s", gpus=0)
    assert bare == ["sbatch", "--parsable", "--job-name=n", "--output=o", "s"]


def test_sbatch_does_not_pass_on_the_allocation_llem_runs_in() -> None:
    env = {**IN_STEP, "SLURM_JOB_GPUS": "2", "PATH": "/bin", "SLURM_CONF": "/etc/slurm.conf"}
    assert job_env(env) == {"PATH": "/bin", "SLURM_CONF": "/etc/slurm.conf"}


@pytest.mark.parametrize(
    "limit", ["30", "5:00", "1:00:00", "2-0", "2-12:00", "1-0:0:1", "UNLIMITED"]
)
def test_time_limits_as_sbatch_takes_them(limit: str) -> None:
    assert TIME_LIMIT.match(limit)


def test_execution_slurm_is_validated() -> None:
    study = _study(
        execution={"slurm": {"partition": "gpu", "gpus_per_experiment": 2, "time_limit": 90,
                             "extra_args": ["--qos=short"]}},
    )  # fmt: skip
    slurm = study.execution.slurm
    assert (slurm.partition, slurm.gpus_per_experiment, slurm.time_limit) == ("gpu", 2, "90")
    assert _study().execution.slurm.gpus_per_experiment == 1
    from pytest_llem.run.config import _validate

    for bad, message in (
        ({"time_limit": "soon"}, "execution.slurm.time_limit: invalid time limit 'soon'"),
        ({"gpus_per_experiment": -1}, "execution.slurm.gpus_per_experiment"),
        ({"partiton": "gpu"}, "unknown key (did you mean 'partition'?)"),
        ({"extra_args": [""]}, "execution.slurm.extra_args.0: must not be empty"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            _validate(StudyConfig, {"execution": {"slurm": bad}}, "study.yaml")


def test_a_submission_round_trips(tmp_path: Path) -> None:
    (tmp_path / "slurm").mkdir()
    study = _study(name="s", experiments=[{"model": "m", "backend": "pytorch",
                                           "command": ["python", "w.py"]}])  # fmt: skip
    submission = Submission(
        study=study.model_dump(mode="json"), study_path="/lab/study.yaml",
        runners={"pytorch": "local"}, skip_checks=["gpu-idle"], run_id="ab12",
        jobs=[Job("001", "12")],
    )  # fmt: skip
    submission.save(tmp_path)
    loaded = Submission.load(tmp_path)
    assert loaded == submission
    assert loaded.study_config().model_dump() == study.model_dump()
    assert loaded.study_config().path == Path("/lab/study.yaml")
    with pytest.raises(ConfigError, match="no Slurm submission"):
        Submission.load(tmp_path / "elsewhere")


def test_slurm_keys_appear_in_the_manifest_only_for_a_slurm_job() -> None:
    plain = ExperimentRecord("001", "pytorch", "m", "local", None, "ok")
    assert not {"slurm_job_id", "node", "preflight"} & set(plain.to_json())
    job = ExperimentRecord("001", "pytorch", "m", "local", None, "ok", slurm_job_id="12",
                           node="gpu07")  # fmt: skip
    assert (job.to_json()["slurm_job_id"], job.to_json()["node"]) == ("12", "gpu07")
    assert "preflight" not in job.to_json()


def test_allocation_is_a_plain_tuple() -> None:
    found = Allocation("1", (0,))
    assert tuple(found) == ("1", (0,), "", "", "", None, "")


# -- the command line -------------------------------------------------------------------------


def _llem(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from pytest_llem.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("SLURM_JOB_ID", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "DOCKER_HOST"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "study.yaml").write_text(
        "name: s\nexecution:\n  slurm: {partition: gpu, time_limit: '10:00'}\n"
        "experiments: [{model: gpt2, backend: pytorch, command: [python, w.py]}]\n"
    )
    return tmp_path


def test_a_slurm_dry_run_shows_the_sbatch_lines_and_runs_no_preflight(
    capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    code, out, err = _llem(capsys, "run", "--slurm", "--dry-run", "study.yaml", "--output", "r")
    assert (code, out) == (0, "")
    [line] = err.splitlines()  # no pre-flight: it runs in each job, on its node
    assert line.startswith("llem: dry run: sbatch --parsable --job-name=llem-s-RUNID-001 ")
    assert f"--output={in_tmp}/r/slurm/001.out --gres=gpu:1 --partition=gpu --time=10:00" in line
    assert line.endswith(f"{in_tmp}/r/slurm/job.sh 001")
    assert not (in_tmp / "r").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--no-wait", "study.yaml"], "--no-wait goes with --slurm"),
        (["run", "--resume", "r", "study.yaml"], "--resume RUN_DIR takes the run as it was"),
        (["run", "--resume", "nowhere"], "no Slurm submission in it"),
        (["run", "--slurm", "--wait", "5", "study.yaml"], "--wait is for this host's"),
        (["run", "--slurm", "--skip-check", "gpu-idel", "study.yaml"], "unknown check id"),
        (["preflight", "--reason", "--host", "gpu1"], "--reason is for this host's"),
    ],
)
def test_slurm_usage_errors(
    capsys: pytest.CaptureFixture[str], in_tmp: Path, args: list[str], message: str
) -> None:
    code, out, err = _llem(capsys, *args)
    assert (code, out) == (2, "")
    assert err.startswith("llem: error: ") and message in err, err


def test_run_slurm_without_sbatch_says_so_and_leaves_no_job(
    capsys: pytest.CaptureFixture[str], in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(in_tmp / "empty"))
    code, _, err = _llem(capsys, "run", "--slurm", "study.yaml", "--output", "r")
    assert code == 1
    assert "cannot submit experiment 001 to Slurm: sbatch not found on PATH" in err
    assert json.loads((in_tmp / "r" / "slurm" / "submission.json").read_text())["jobs"] == []


# -- the job's side ---------------------------------------------------------------------------


def _submitted(tmp_path: Path, command: list[str]) -> Path:
    from pytest_llem.run.config import with_user_defaults

    (tmp_path / "w.py").write_text(
        "import json, os\nconfig = json.load(open(os.environ['LLEM_CONFIG_PATH']))\n"
        "json.dump({'energy_j': 2.0}, open(config['result_path'], 'w'))\n"
    )
    study = with_user_defaults(
        _study(name="s", experiments=[{"model": "m", "backend": "pytorch", "command": command,
                                       "gpus": [5]}]),
        StudyConfig().user, tmp_path / "study.yaml",
    )  # fmt: skip
    run_dir = tmp_path / "run"
    (run_dir / "slurm").mkdir(parents=True)
    Submission(
        study=study.model_dump(mode="json"), study_path=str(tmp_path / "study.yaml"),
        runners={"pytorch": "local"}, cli_skip=True, run_id="ab12",
    ).save(run_dir)  # fmt: skip
    return run_dir


def test_a_job_runs_its_experiment_and_leaves_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from pytest_llem.run.slurm_job import run_job
    from pytest_llem.run.slurm_jobs import read_record

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name, value in {"SLURM_JOB_ID": "12", "SLURMD_NODENAME": "gpu07",
                        "SLURM_JOB_GPUS": "1", "CUDA_VISIBLE_DEVICES": "1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    run_dir = _submitted(tmp_path, [sys.executable, "w.py"])
    assert run_job(run_dir, "001") == 0
    record = read_record(run_dir, "001")
    assert record is not None
    assert (record.status, record.result, record.slurm_job_id, record.node) == (
        "ok", {"energy_j": 2.0}, "12", "gpu07",
    )  # fmt: skip
    assert record.preflight == {"status": "skipped", "skipped_by": "--skip-preflight"}
    config = json.loads((run_dir / "001_config.json").read_text())
    assert config["id"] == "001"
    with pytest.raises(ConfigError, match="no experiment '009'"):
        run_job(run_dir, "009")


def test_a_job_whose_llem_cannot_go_on_says_so_in_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_llem.run import slurm_job
    from pytest_llem.run.slurm_jobs import read_record

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SLURMD_NODENAME", "gpu07")
    run_dir = _submitted(tmp_path, ["python3", "w.py"])

    def broken(*args: Any, **kwargs: Any) -> None:
        from pytest_llem.errors import PreFlightError

        raise PreFlightError("the Docker pre-flight could not run (pytest exit status 3)")

    monkeypatch.setattr("pytest_llem.run.study.run_study_preflight", broken)
    assert slurm_job.run_job(run_dir, "001") == 1
    record = read_record(run_dir, "001")
    assert record is not None and (record.status, record.cause) == ("failed", "unknown")
    assert record.message == (
        "llem failed on gpu07: the Docker pre-flight could not run (pytest exit status 3)"
    )
