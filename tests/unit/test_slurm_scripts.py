"""examples/slurm/prolog.sh and healthcheck.sh with stand-ins for llem and Slurm's clients: what
they ask llem, when they drain or resume the node, and that a hanging llem is cut short.
(tests/integration/test_on_slurm.py runs them under a real Slurm.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "slurm"
REASON = "llem: [gpu-idle] 1 compute process(es) on the GPU(s) to measure: GPU 0: PID 7 python3"


def tool(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A bin directory: llem, scontrol, squeue and sinfo stand-ins that log their arguments
    (and llem its GPU variables) to calls.log; the system's tools after them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for name in ("scontrol", "squeue", "sinfo"):
        tool(bin_dir, name, f'echo "{name} $*" >>{log}\n[ -f {tmp_path}/{name}.out ] && '
             f"cat {tmp_path}/{name}.out\nexit 0")  # fmt: skip
    use_llem(tmp_path, "exit 0")
    return tmp_path


def use_llem(root: Path, then: str) -> None:
    log = root / "calls.log"
    tool(root / "bin", "llem", f'echo "llem $* gpus=${{SLURM_JOB_GPUS-unset}}" >>{log}\n{then}')


def run(root: Path, script: str, **env: str) -> tuple[int, list[str], float]:
    path = f"{root / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    start = time.monotonic()
    done = subprocess.run(
        [str(EXAMPLES / script)],
        env={"PATH": path, "SLURMD_NODENAME": "gpu07", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    log = root / "calls.log"
    calls = log.read_text().splitlines() if log.exists() else []
    return done.returncode, calls, time.monotonic() - start


pytestmark = pytest.mark.skipif(shutil.which("timeout") is None, reason="no timeout(1)")


def test_the_prolog_passes_quietly(host: Path) -> None:
    code, calls, _ = run(host, "prolog.sh", SLURM_JOB_GPUS="1")
    assert code == 0
    assert calls == ["llem preflight --reason --timeout 20 --measurement-only gpus=1"]


def test_the_prolog_drains_with_llems_reason_and_fails(host: Path) -> None:
    use_llem(host, f"echo '{REASON}'; exit 1")
    code, calls, _ = run(host, "prolog.sh", SLURM_JOB_GPUS="0")
    assert code == 1
    assert calls[-1] == f"scontrol update nodename=gpu07 state=drain reason={REASON}"


def test_the_prolog_asks_for_the_docker_tiers_and_skips_when_told(host: Path) -> None:
    run(host, "prolog.sh", LLEM_DOCKER="1", LLEM_IMAGE="a/b:1", LLEM_SKIP_CHECKS="mig-mode,x")
    [call] = (host / "calls.log").read_text().splitlines()
    assert call == (
        "llem preflight --reason --timeout 20 --image a/b:1 --skip-check mig-mode,x gpus=unset"
    )


@pytest.mark.parametrize(
    ("then", "reason"),
    [
        ("sleep 30", "llem: [preflight] the GPU check took longer than 1s"),
        ("exit 2", "llem: [preflight] llem could not check the GPUs (exit 2)"),
    ],
)
def test_a_prolog_whose_llem_hangs_or_breaks_still_drains_in_time(
    host: Path, then: str, reason: str
) -> None:
    use_llem(host, then)
    code, calls, took = run(host, "prolog.sh", LLEM_TIMEOUT_S="1")
    assert code == 1 and took < 10
    assert calls[-1] == f"scontrol update nodename=gpu07 state=drain reason={reason}"


def test_the_health_check_judges_every_gpu_and_resumes_a_node_llem_drained(host: Path) -> None:
    (host / "sinfo.out").write_text(f"drained|{REASON}\n")
    code, calls, _ = run(host, "healthcheck.sh", SLURM_JOB_GPUS="0")
    assert code == 0
    assert calls[:2] == [
        "squeue -h -w gpu07 -t RUNNING,COMPLETING -o %i",
        "llem preflight --reason --timeout 20 --measurement-only gpus=unset",
    ]
    assert calls[-1] == "scontrol update nodename=gpu07 state=resume"


def test_the_health_check_leaves_alone_a_node_drained_for_another_reason(host: Path) -> None:
    (host / "sinfo.out").write_text("drained|disk full\n")
    code, calls, _ = run(host, "healthcheck.sh")
    assert code == 0 and not any(c.startswith("scontrol") for c in calls)


def test_while_jobs_run_the_health_check_leaves_gpu_idle_out_and_resumes_nothing(
    host: Path,
) -> None:
    (host / "squeue.out").write_text("12\n")
    (host / "sinfo.out").write_text(f"drained|{REASON}\n")
    code, calls, _ = run(host, "healthcheck.sh")
    assert code == 0
    assert "--skip-check gpu-idle" in calls[1]
    assert not any(c.startswith(("scontrol", "sinfo")) for c in calls)


def test_the_health_check_drains_on_a_failure(host: Path) -> None:
    use_llem(host, f"echo '{REASON}'; exit 1")
    code, calls, took = run(host, "healthcheck.sh")
    assert code == 1 and took < 45
    assert calls[-1] == f"scontrol update nodename=gpu07 state=drain reason={REASON}"
