"""Hostile containers, hostile input, names that collide: `llem run` against real engines.

The hostile image plants links, FIFOs and directories in RUN_DIR the way a root container can.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from testbed import (
    HOSTILE_PATH,
    Engine,
    HostTools,
    ProductRunner,
    build_hostile_image,
    build_workload_image,
    run,
)

WORKLOAD = "llem-test/workload:1"
HOSTILE = "llem-test/hostile:1"
HANG_LIMIT_S = 90  # far beyond what these runs take; a run still going then is hung


@pytest.fixture(scope="module")
def images(gpu_engine: Engine) -> None:
    build_workload_image(gpu_engine, WORKLOAD)
    build_hostile_image(gpu_engine, HOSTILE)


def hostile(*actions: str) -> str:
    """An experiment of the hostile image doing ``actions``."""
    return json.dumps(
        {"model": "m", "backend": "vllm", "image": HOSTILE, "command": [HOSTILE_PATH, *actions]}
    )


def study(*experiments: str, name: str = "harden") -> str:
    lines = "".join(f"  - {e}\n" for e in experiments)
    return (
        f"name: {json.dumps(name)}\nrunners: {{vllm: 'docker:{WORKLOAD}'}}\nexperiments:\n{lines}"
    )


def llem_run(
    run_product: ProductRunner, host_tools: HostTools, body: str, *args: str
) -> subprocess.CompletedProcess[str]:
    (host_tools.work / "study.yaml").write_text(body, encoding="utf-8")
    return run_product(
        ["llem", "run", "study.yaml", "--skip-preflight", *args], timeout=HANG_LIMIT_S
    )


def manifest_of(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    return data


def host_file(host_tools: HostTools, name: str, content: str) -> Path:
    """A host file outside RUN_DIR that a planted link points at."""
    path = host_tools.root / name
    path.write_text(content)
    return path


PLAIN = "{model: m, backend: vllm}"


# -- item 1: files in RUN_DIR ------------------------------------------------------------------


def test_links_planted_as_the_next_config_and_log_are_not_followed(
    run_product: ProductRunner, host_tools: HostTools, images: None
) -> None:
    config_victim = host_file(host_tools, "config-victim.txt", "host config, keep me\n")
    log_victim = host_file(host_tools, "log-victim.txt", "host log, keep me\n")
    result = llem_run(
        run_product, host_tools,
        study(
            hostile("link", "002_config.json", str(config_victim),
                    "link", "002.log", str(log_victim), "result"),
            PLAIN,
        ),
        "--output", "out",
    )  # fmt: skip
    assert config_victim.read_text() == "host config, keep me\n"
    assert log_victim.read_text() == "host log, keep me\n"
    assert result.returncode == 0, result.stderr
    out = host_tools.work / "out"
    first, second = manifest_of(out)["experiments"]
    assert (first["status"], second["status"]) == ("ok", "ok")
    assert second["result"]["config"]["id"] == "002"  # the workload read its own, new config
    assert not (out / "002_config.json").is_symlink() and not (out / "002.log").is_symlink()
    assert "llem-workload: done" in (out / "002.log").read_text()


def test_fifos_planted_in_the_run_directory_do_not_hang_llem(
    run_product: ProductRunner, host_tools: HostTools, images: None
) -> None:
    result = llem_run(
        run_product, host_tools,
        study(
            hostile("fifo", "002_config.json", "fifo", "002.log", "fifo", "001_result.json"),
            PLAIN,
        ),
        "--output", "out",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    first, second = manifest_of(host_tools.work / "out")["experiments"]
    assert (first["status"], first["cause"]) == ("failed", "unsafe_run_file")
    assert first["message"] == (
        "001_result.json in the run directory is a FIFO: refused, not followed"
    )
    assert first["fix"] and first["url"]
    assert second["status"] == "ok", second
    assert "[unsafe_run_file] 001_result.json in the run directory is a FIFO" in result.stderr


def test_a_result_linked_to_a_host_file_leaks_nothing(
    run_product: ProductRunner, host_tools: HostTools, images: None
) -> None:
    secret = host_file(host_tools, "secret.json", '{"api_key": "SECRET-7f3a9c"}\n')
    manifest_victim = host_file(host_tools, "manifest-victim.txt", "keep me\n")
    result = llem_run(
        run_product, host_tools,
        study(
            hostile("link", "001_result.json", str(secret),
                    "link", "manifest.json", str(manifest_victim)),
            PLAIN,
        ),
        "--output", "out",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    out = host_tools.work / "out"
    text = (out / "manifest.json").read_text()
    assert "SECRET" not in text and "SECRET" not in result.stderr
    assert not (out / "manifest.json").is_symlink()
    assert manifest_victim.read_text() == "keep me\n"
    first, second = json.loads(text)["experiments"]
    assert (first["status"], first["cause"], first["result"]) == (
        "failed", "unsafe_run_file", None,
    )  # fmt: skip
    assert first["message"] == (
        "001_result.json in the run directory is a symbolic link: refused, not followed"
    )
    assert second["status"] == "ok"


def test_oversized_results_and_planted_directories_are_failures_of_one_experiment(
    run_product: ProductRunner, host_tools: HostTools, images: None
) -> None:
    result = llem_run(
        run_product, host_tools,
        study(hostile("big", "001_result.json", "5000000", "dir", "002_result.json"), PLAIN, PLAIN),
        "--output", "out",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    out = host_tools.work / "out"
    assert (out / "manifest.json").stat().st_size < 10_000
    first, second, third = manifest_of(out)["experiments"]
    assert (first["cause"], first["message"]) == (
        "unsafe_run_file",
        "001_result.json is larger than 4 MiB: refused, not read",
    )
    assert (second["cause"], second["message"]) == (
        "unsafe_run_file",
        "002_result.json in the run directory is a directory: refused, not followed",
    )
    assert third["status"] == "ok"


# -- item 3: one id, one experiment -----------------------------------------------------------


def test_same_effective_id_is_a_config_error_naming_both(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    since = time.time()
    result = llem_run(
        run_product, host_tools,
        study("{model: first, backend: vllm, id: '002'}", "{model: second, backend: vllm}"),
        "--output", "out",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "llem: error: study.yaml: duplicate experiment id '002': experiments.0 (first, id: 002) "
        "and experiments.1 (second, numbered 002 by its position)\n"
    )
    assert not (host_tools.work / "out").exists()
    assert gpu_engine.created_since(since) == []


# -- item 11: what reaches the terminal ----------------------------------------------------------

ESCAPES = "\x1b]0;pwned\x07\x1b[2J"


def test_a_containers_escapes_are_shown_escaped_and_kept_raw_in_json(
    run_product: ProductRunner, host_tools: HostTools, images: None
) -> None:
    result = llem_run(
        run_product, host_tools,
        study(
            hostile("say", f"cleared{ESCAPES}", "error", "bad\\u001b]0;pwned\\u0007", "exit", "3"),
            hostile("say", f"last line{ESCAPES}", "exit", "4"),
        ),
        "--output", "out",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "[unknown] 001_error.json: bad\\x1b]0;pwned\\x07 (log: 001.log)" in result.stderr
    assert "exit status 4: last line\\x1b]0;pwned\\x07\\x1b[2J (log: 002.log)" in result.stderr
    first, second = manifest_of(host_tools.work / "out")["experiments"]
    assert first["message"] == "001_error.json: bad\x1b]0;pwned\x07"
    assert second["message"] == f"exit status 4: last line{ESCAPES}"


def test_a_host_tools_escapes_are_shown_escaped_in_the_checklist_and_report(
    host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    host_tools.install(
        "nvidia-smi", "#!/bin/sh\nprintf 'weird\\033]0;pwned\\007\\033[2J failure\\n' >&2\nexit 9\n"
    )
    result = run(
        [sys.executable, "-m", "pytest_llem", "preflight", "-v", "--image", WORKLOAD,
         "--no-cache", "--json", "r.json"],
        host_tools.env(gpu_engine), timeout=HANG_LIMIT_S, cwd=host_tools.work,
    )  # fmt: skip
    shown = result.stdout + result.stderr
    assert "\x1b" not in shown and "\x07" not in shown, shown
    escaped = "weird\\x1b]0;pwned\\x07\\x1b[2J failure"
    assert "! host-driver (see Warnings) (" in result.stdout, shown  # (said once, below)
    assert result.stdout.count(f"  - [host-driver] nvidia-smi failed: {escaped}") == 1, shown
    [warning] = json.loads((host_tools.work / "r.json").read_text())["warnings"]
    assert warning["message"] == f"nvidia-smi failed: weird{ESCAPES} failure"


def test_a_docker_errors_escapes_are_shown_escaped_by_pytest_and_llem_run(
    run_product: ProductRunner, host_tools: HostTools, images: None
) -> None:
    """A failed check whose message carries a tool's text: pytest's own output, the numbered
    report and `llem run`'s report show it escaped; the JSON report keeps it raw."""
    host_tools.install(
        "docker", "#!/bin/sh\nprintf 'odd failure\\033]0;pwned\\007\\033[2J\\n' >&2\nexit 1\n"
    )
    result = run_product(
        ["pytest", "--llem-preflight", "-p", "no:cacheprovider", "--llem-no-cache",
         "--llem-image", WORKLOAD, "--llem-json", "r.json", "-rf"],
    )  # fmt: skip
    shown = result.stdout + result.stderr
    assert result.returncode == 1, shown
    assert "\x1b" not in shown and "\x07" not in shown, shown
    assert shown.count("odd failure\\x1b]0;pwned\\x07\\x1b[2J") >= 2, shown  # item, report
    report = json.loads((host_tools.work / "r.json").read_text())
    assert any(ESCAPES in f["message"] for f in report["failures"]), report["failures"]
    (host_tools.work / "study.yaml").write_text(study(PLAIN))
    ran = run_product(["llem", "run", "study.yaml"], timeout=HANG_LIMIT_S)
    assert ran.returncode == 1, ran.stderr
    assert "\x1b" not in ran.stderr, ran.stderr
    assert "odd failure\\x1b]0;pwned\\x07\\x1b[2J" in ran.stderr, ran.stderr


# -- item 12: names that collide, run directories reused --------------------------------------


def test_concurrent_runs_of_one_study_do_not_clash(
    host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    (host_tools.work / "study.yaml").write_text(study(hostile("sleep", "3", "result")))
    env = host_tools.env(gpu_engine)
    since = time.time()
    argv = [sys.executable, "-m", "pytest_llem", "run", "study.yaml", "--skip-preflight"]
    procs = [
        subprocess.Popen(
            [*argv, "--output", out],
            cwd=host_tools.work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for out in ("a", "b")
    ]
    outcomes = [proc.communicate(timeout=HANG_LIMIT_S) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outcomes
    names = [n for n in created(gpu_engine, since) if n.startswith("llem-harden-")]
    assert len(set(names)) == 2, names


def created(engine: Engine, since: float) -> list[str]:
    """Names of the containers the engine created from ``since`` on."""
    out = engine.docker(
        "events", f"--since={since:.6f}", f"--until={time.time():.6f}",
        "--filter=type=container", "--filter=event=create",
        "--format={{.Actor.Attributes.name}}",
    ).stdout  # fmt: skip
    return out.split()


def test_study_names_differing_in_non_ascii_letters_get_different_containers(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    since = time.time()
    for n, name in enumerate(("étude", "ètude")):
        result = llem_run(run_product, host_tools, study(PLAIN, name=name), "--output", f"o{n}")
        assert result.returncode == 0, result.stderr
    names = [n for n in created(gpu_engine, since) if n.startswith("llem-")]
    assert len(names) == 2, names
    studies = {name.rsplit("-", 2)[0] for name in names}  # without the run id and the id
    assert len(studies) == 2, names


def test_empty_output_is_refused(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    since = time.time()
    result = llem_run(run_product, host_tools, study(PLAIN), "--output", "")
    assert (result.returncode, result.stderr) == (2, "llem: error: --output: must not be empty\n")
    assert not (host_tools.work / "manifest.json").exists()
    assert gpu_engine.created_since(since) == []


def test_an_earlier_run_is_kept_unless_overwrite_is_given(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    body = study(PLAIN)
    assert llem_run(run_product, host_tools, body, "--output", "out").returncode == 0
    manifest = host_tools.work / "out" / "manifest.json"
    before = manifest.read_bytes()
    since = time.time()
    again = llem_run(run_product, host_tools, body, "--output", "out")
    assert again.returncode == 2, again.stderr
    assert again.stderr == (
        f"llem: error: --output {host_tools.work / 'out'}: holds the manifest.json of an "
        "earlier run (give --overwrite to replace it, or another directory)\n"
    )
    assert manifest.read_bytes() == before
    assert gpu_engine.created_since(since) == []
    # (Marked: the manifest holds no clock time, and two runs can round to the same bytes.)
    manifest.write_text('{"study": "an earlier run"}\n')
    replaced = llem_run(run_product, host_tools, body, "--output", "out", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads(manifest.read_text())["study"] == "harden"


# -- item 10: a tool that prints without end ---------------------------------------------------

# Runs a command and prints, last on stderr, the peak RSS (KiB) of the largest process it ran.
PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)
FLOOD_BYTES = 300_000_000


def test_a_flood_of_tool_output_costs_bounded_memory(
    host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    """A host nvidia-smi printing 300 MB: llem's memory stays far below what was printed."""
    host_tools.install(
        "nvidia-smi", f"#!/bin/sh\n/usr/bin/yes 'GPU 0: flood' | /usr/bin/head -c {FLOOD_BYTES}\n"
    )
    result = run(
        [sys.executable, "-c", PEAK_RSS,
         sys.executable, "-m", "pytest_llem", "preflight", "--image", WORKLOAD, "--no-cache"],
        host_tools.env(gpu_engine), timeout=HANG_LIMIT_S * 2, cwd=host_tools.work,
    )  # fmt: skip
    *said, peak_kib = result.stderr.splitlines()
    assert "Traceback" not in result.stdout + "\n".join(said), result.stdout + result.stderr
    assert int(peak_kib) < 200_000, f"peak RSS {peak_kib} KiB for {FLOOD_BYTES} bytes printed"
