"""`pytest --llem-preflight --llem-wait SECONDS`, with a fake `docker` whose daemon answers on
the third try: the wait's lines reach stderr past pytest's capture, never stdout."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

TIER2 = "cuda-compat,gpu-in-container"
LATE_DOCKER = """#!/bin/sh
count={count}
if [ "$1" != version ]; then exit 1; fi
n=$(cat "$count" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$count"
if [ "$n" -lt 3 ]; then
  echo '{{"Client":{{"Version":"28.2.2"}}}}'
  echo "Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?" >&2
  exit 1
fi
echo '{{"Client":{{"Version":"28.2.2"}},"Server":{{"Version":"27.3.1"}}}}'
"""


@pytest.fixture
def late_host(bare_host: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """docker (its daemon answers `docker version` the third time) and nvidia-ctk on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    count = tmp_path / "count"
    for name, script in (
        ("docker", LATE_DOCKER.format(count=count)),
        ("nvidia-ctk", "#!/bin/sh\necho 'NVIDIA Container Toolkit CLI version 1.14.3'\n"),
    ):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    return count


def test_a_daemon_that_answers_late_is_waited_for(
    pytester: pytest.Pytester, late_host: Path
) -> None:
    result = pytester.runpytest_subprocess(
        "--llem-preflight", "--llem-wait", "30", "--llem-skip", TIER2, "--llem-json", "r.json"
    )
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert late_host.read_text().strip() == "3"
    waits = [line for line in result.errlines if line.startswith("waiting for ")]
    assert len(waits) == 2
    assert all(
        re.fullmatch(r"waiting for docker-daemon \(unreachable\): \d s of 30 s", w) for w in waits
    )
    assert "waited 2 s for docker-daemon" in result.errlines
    assert "waiting" not in result.stdout.str()
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["host"]["docker_server_version"] == "27.3.1"


LATE_BY_TIME = """#!/bin/sh
first={first}
if [ "$1" != version ]; then exit 1; fi
[ -e "$first" ] || date +%s > "$first"
if [ $(( $(date +%s) - $(cat "$first") )) -lt 3 ]; then
  echo "Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?" >&2
  exit 1
fi
echo '{{"Client":{{"Version":"28.2.2"}},"Server":{{"Version":"27.3.1"}}}}'
"""


def test_under_xdist_only_the_worker_running_the_checks_says_it_waits(
    pytester: pytest.Pytester, late_host: Path
) -> None:
    docker = Path(os.environ["PATH"].split(os.pathsep)[0]) / "docker"
    docker.write_text(LATE_BY_TIME.format(first=late_host.with_name("first")))
    result = pytester.runpytest_subprocess(
        "--llem-preflight",
        "--llem-wait",
        "30",
        "--llem-skip",
        TIER2,
        "-n",
        "2",
        "-p",
        "no:randomly",
    )
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    waits = [line for line in result.errlines if line.startswith("waiting for docker-daemon ")]
    assert waits and all(w.startswith("waiting for docker-daemon (unreachable): ") for w in waits)
    assert len([line for line in result.errlines if line.startswith("waited ")]) == 1
    assert all(w.endswith(" of 30 s") for w in waits)
    seconds = [int(w.split(": ")[1].split()[0]) for w in waits]
    assert seconds == sorted(seconds)  # one wait, counting up: not two processes' lines mixed


def test_without_llem_wait_it_fails_at_once(pytester: pytest.Pytester, late_host: Path) -> None:
    result = pytester.runpytest_subprocess(
        "--llem-preflight", "--llem-skip", TIER2, "--llem-json", "r.json"
    )
    assert result.ret == 1
    assert late_host.read_text().strip() == "1"
    assert not [line for line in result.errlines if "waiting" in line]


def test_a_host_without_docker_is_not_waited_for(
    pytester: pytest.Pytester, bare_host: None
) -> None:
    result = pytester.runpytest_subprocess("--llem-preflight", "--llem-wait", "30")
    assert result.ret == 1
    assert result.duration < 20
    assert not [line for line in result.errlines if "waiting" in line]


def test_llem_wait_is_validated(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llem-preflight", "--llem-wait=-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--llem-wait: should be greater than or equal to 0, got -1" in result.stderr.str()
