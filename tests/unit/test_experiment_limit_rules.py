"""An experiment's limits, validated with the study: its time limit, text that can reach a
command line or a file name, names that must fit the run directory and the container; and
the host side: a local experiment stopped at its limit, and what it leaves running killed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_llem.cli import main
from pytest_llem.errors import ConfigError
from pytest_llem.host import workloads
from pytest_llem.host.study_file import command_dir
from pytest_llem.run import names
from pytest_llem.run.config import StudyConfig, load_study, single_experiment

EXPERIMENT = "experiments: [{model: m, backend: pytorch, command: [python, b.py]}]\n"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


def study_error(capsys: pytest.CaptureFixture[str], text: str) -> str:
    """`llem run --dry-run` of ``text``: exit 2 and one line; that line."""
    Path("study.yaml").write_text(text, encoding="utf-8")
    assert main(["run", "study.yaml", "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err.strip().removeprefix("llem: error: ")


# -- execution.experiment_timeout_s ------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [("2", 2.0), ("0.5", 0.5), ("null", None)])
def test_the_time_limit_is_a_positive_number(value: str, seconds: float | None) -> None:
    Path("s.yaml").write_text(f"execution: {{experiment_timeout_s: {value}}}\n{EXPERIMENT}")
    assert load_study("s.yaml").execution.experiment_timeout_s == seconds
    Path("s.yaml").write_text(EXPERIMENT)
    assert load_study("s.yaml").execution.experiment_timeout_s is None  # default: no limit


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0", "should be greater than 0, got 0"),
        ("-3", "should be greater than 0, got -3"),
        (".inf", "should be a finite number, got inf"),
        ("true", "expected a number, got a boolean"),
        ("'10'", "expected a number, got a string"),
    ],
)
def test_a_bad_time_limit_is_one_line(
    capsys: pytest.CaptureFixture[str], value: str, problem: str
) -> None:
    text = f"execution: {{experiment_timeout_s: {value}}}\n{EXPERIMENT}"
    assert study_error(capsys, text) == f"study.yaml: execution.experiment_timeout_s: {problem}"


# -- text that reaches argv, the environment, file names ---------------------------------------


@pytest.mark.parametrize(
    ("experiment", "where", "problem"),
    [
        ('command: [python, "a\\0b"]', "experiments.0.command.1", "contains a NUL byte"),
        ('command: [python, "\\udcff"]', "experiments.0.command.1", "contains bytes that are not"),
        ('model: "m\\0"', "experiments.0.model", "contains a NUL byte"),
        ('model: "\\udcff"', "experiments.0.model", "contains bytes that are not valid UTF-8"),
        ('params: {a: {b: ["x", "\\0"]}}', "experiments.0.params.a.b.1", "contains a NUL byte"),
        ('params: {"\\udcff": 1}', "experiments.0.params", "key '\\udcff' contains bytes"),
        ('image: "a/b:1\\0"', "experiments.0.image", ""),
    ],
)
def test_nul_and_undecodable_bytes_are_refused_where_they_are(
    capsys: pytest.CaptureFixture[str], experiment: str, where: str, problem: str
) -> None:
    if "model:" in experiment:
        text = f"experiments: [{{{experiment}, backend: pytorch, command: [python]}}]\n"
    else:
        text = f"experiments: [{{model: m, backend: pytorch, {experiment}}}]\n"
    message = study_error(capsys, text)
    assert message.startswith(f"study.yaml: {where}: {problem}"), message


def test_nul_in_the_study_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert study_error(capsys, f'name: "a\\0"\n{EXPERIMENT}') == (
        "study.yaml: name: contains a NUL byte"
    )


def test_the_command_line_experiment_names_the_flag() -> None:
    study = StudyConfig()
    with pytest.raises(ConfigError, match=r"^--model: contains bytes that are not valid UTF-8$"):
        single_experiment(study, "m\udcff", "pytorch")
    with pytest.raises(ConfigError, match=r"^the command after '--': contains bytes that are"):
        single_experiment(study, "m", "pytorch", ["python", "\udcff"])
    assert single_experiment(study, "m", "pytorch", ["python"]).experiments[0].model == "m"


# -- names: the run directory and the container ------------------------------------------------


def test_the_longest_study_name_fits_a_run_directory(tmp_path: Path) -> None:
    longest = "s" * names.STUDY_NAME_MAX
    Path("s.yaml").write_text(f"name: {longest}\n{EXPERIMENT}")
    assert load_study("s.yaml").name == longest
    run_dir = tmp_path / names.run_dir_name(longest, "20260101T000000Z")
    (run_dir.parent / f"{run_dir.name}-99999").mkdir()  # the last `make_run_dir` would try
    assert names.study_name_problem(longest + "s") is not None


def test_a_study_name_is_judged_as_the_directory_spells_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Characters a directory name leaves out do not count: 300 × "ü" is the directory "x"."""
    Path("s.yaml").write_text(f"name: {'ü' * 300}\n{EXPERIMENT}", encoding="utf-8")
    assert load_study("s.yaml").name == "ü" * 300
    message = study_error(capsys, f"name: {'a' * 240}\n{EXPERIMENT}")
    assert message == (
        "study.yaml: name: too long to name a run directory (240 characters after unsafe ones "
        f"are replaced; at most {names.STUDY_NAME_MAX})"
    )


def test_the_longest_names_fit_files_and_containers() -> None:
    exp_id = "e" * names.EXPERIMENT_ID_MAX
    assert re.fullmatch(names.EXPERIMENT_ID_PATTERN, exp_id)
    assert not re.fullmatch(names.EXPERIMENT_ID_PATTERN, exp_id + "e")
    assert len(f"{exp_id}_config.json".encode()) <= names.NAME_MAX
    container = names.container_name("s" * names.STUDY_NAME_MAX, exp_id, "0123abcd")
    assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", container)  # Docker's rule
    assert len(container) <= 128


# -- where a study's local commands run --------------------------------------------------------


def test_a_study_file_runs_its_commands_in_its_directory(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "s.yaml").write_text(EXPERIMENT)
    assert command_dir(Path("sub/s.yaml")) == tmp_path / "sub"
    assert load_study("sub/s.yaml").workdir == tmp_path / "sub"


def test_a_piped_study_runs_its_commands_here(tmp_path: Path) -> None:
    reader, writer = os.pipe()
    os.close(writer)
    try:
        for alias in (f"/dev/fd/{reader}", f"/proc/self/fd/{reader}"):
            assert command_dir(Path(alias)) is None
    finally:
        os.close(reader)
    (tmp_path / "s.yaml").write_text(EXPERIMENT)
    with open(tmp_path / "s.yaml", "rb") as handle:  # a regular file, but through /dev/fd
        assert command_dir(Path(f"/dev/fd/{handle.fileno()}")) is None
    assert StudyConfig().workdir == tmp_path


# -- the host side ------------------------------------------------------------------------------


def test_a_local_command_past_its_limit_is_stopped(tmp_path: Path) -> None:
    start = time.monotonic()
    result = workloads.run_local(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        cwd=tmp_path, env=os.environ, log_path=tmp_path / "x.log", timeout_s=0.5,
    )  # fmt: skip
    assert result.timed_out and result.returncode == -15
    assert time.monotonic() - start < 10


def test_what_a_local_command_leaves_running_is_killed(tmp_path: Path) -> None:
    """Its children in another process group of its session too; not what left the session."""
    script = (
        "import os, subprocess, sys\n"
        "sleep = [sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']\n"
        "a = subprocess.Popen(sleep)\n"
        "b = subprocess.Popen(sleep, process_group=0)\n"
        "c = subprocess.Popen(sleep, start_new_session=True)\n"
        "print(a.pid, b.pid, c.pid)\n"
    )
    result = workloads.run_local(
        [sys.executable, "-c", script], cwd=tmp_path, env=os.environ, log_path=tmp_path / "x.log"
    )
    a, b, c = (int(pid) for pid in result.output_tail.split())
    try:
        assert result.returncode == 0 and not result.timed_out
        assert [left.pid for left in result.leftovers] == sorted([a, b])
        assert all("time.sleep(60)" in left.command for left in result.leftovers)
        for pid in (a, b):
            assert _gone(pid)
        assert not _gone(c)  # it made a session of its own: out of reach, as documented
    finally:
        os.kill(c, 9)


def test_a_command_that_leaves_nothing_has_no_leftovers(tmp_path: Path) -> None:
    result = workloads.run_local(
        [sys.executable, "-c", "pass"], cwd=tmp_path, env=os.environ, log_path=tmp_path / "x.log"
    )
    assert (result.returncode, result.leftovers, result.timed_out) == (0, (), False)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_the_sweep_needs_no_children_of_its_own() -> None:
    """`end_session` of a session with no process is quick and names nothing."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    proc.wait()
    start = time.monotonic()
    assert workloads.end_session(proc.pid) == []
    assert time.monotonic() - start < 1
