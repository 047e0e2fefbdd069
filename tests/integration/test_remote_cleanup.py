"""What a remote dispatch (tcp:// to a test-bed engine) leaves behind: no anonymous volume, no
flood of files in RUN_DIR, no container left silently, no log written through a link."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from testbed import HOSTILE_PATH, Engine, HostTools, ProductRunner, build_hostile_image

HOSTILE = "llem-test/hostile:1"
VOLUMED = "llem-test/volumed:1"  # the hostile image, declaring `VOLUME /data`
LITTERER = "llem-test/litterer:1"
FILES = 1500  # the litterer's files: past the copy-back's cap of 1000
# Writes FILES empty files into its run directory, then its result (last, after all of them).
LITTER_SCRIPT = f"""#!/bin/sh
base=${{LLEM_CONFIG_PATH%_config.json}}
cd /run/llem || exit 2
i=0
while [ $i -lt {FILES} ]; do : > "f$i"; i=$((i+1)); done
printf '{{"ok": true}}\\n' > "${{base}}_result.json"
"""
# A `docker` that fails `docker rm` as a busy engine does, and is the real CLI otherwise.
FAILING_RM = """#!/bin/sh
if [ "$1" = rm ]; then
  echo 'Error response from daemon: container is busy: device or resource busy' >&2
  exit 1
fi
exec {cli} "$@"
"""
# A local experiment that plants a link where the next experiment's log will be.
PLANTS_A_LINK = """\
import json, os, sys
config = json.load(open(os.environ["LLEM_CONFIG_PATH"]))
os.symlink(sys.argv[1], os.path.join(os.path.dirname(config["result_path"]), "002.log"))
json.dump({"ok": True}, open(config["result_path"], "w"))
"""


@pytest.fixture(scope="module")
def images(gpu_engine: Engine) -> None:
    build_hostile_image(gpu_engine, HOSTILE)
    gpu_engine.build_image(
        LITTERER, cmd=["/usr/local/bin/litter"], files={"/usr/local/bin/litter": LITTER_SCRIPT}
    )
    gpu_engine.docker("create", "--name", "llem-test-volumed", HOSTILE)
    try:
        gpu_engine.docker("commit", "--change", 'VOLUME ["/data"]', "llem-test-volumed", VOLUMED)
    finally:
        gpu_engine.docker("rm", "-f", "llem-test-volumed")


def manifest_of(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    return data


def remote_run(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, *experiments: str
) -> tuple[int, str, dict[str, Any]]:
    lines = "".join(f"  - {e}\n" for e in experiments)
    (host_tools.work / "study.yaml").write_text(
        f"name: far\nrunners: {{vllm: 'docker:{HOSTILE}', pytorch: local}}\nexperiments:\n{lines}"
    )
    env = host_tools.env(docker_host=gpu_engine.enable_tcp())
    result = run_product(
        ["llem", "run", "study.yaml", "--output", "out", "--skip-preflight"], env=env
    )
    return result.returncode, result.stderr, manifest_of(host_tools.work / "out")


def experiment(image: str, *args: str) -> str:
    command = [HOSTILE_PATH, *args] if image in (HOSTILE, VOLUMED) else None
    return json.dumps({"model": "m", "backend": "vllm", "image": image, "command": command})


def volumes(engine: Engine) -> set[str]:
    return set(engine.docker("volume", "ls", "-q").stdout.split())


def test_an_image_volume_is_removed_with_its_container(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    before = volumes(gpu_engine)
    code, err, manifest = remote_run(
        run_product, host_tools, gpu_engine, experiment(VOLUMED, "result")
    )
    assert code == 0, err
    [record] = manifest["experiments"]
    assert (record["status"], record["cleanup"]) == ("ok", None)
    assert gpu_engine.containers() == []
    assert volumes(gpu_engine) == before


def test_copy_back_is_capped_in_files_as_well_as_in_size(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    code, err, manifest = remote_run(run_product, host_tools, gpu_engine, experiment(LITTERER))
    run_dir = host_tools.work / "out"
    copied = {p.name for p in run_dir.iterdir()} - {"001.log", "001_config.json", "manifest.json"}
    # 1000 names, and its result even when it lies past them in the copy.
    assert "001_result.json" in copied
    assert len(copied) in (1000, 1001), len(copied)
    assert code == 0, err
    assert manifest["experiments"][0]["result"] == {"ok": True}
    log = (run_dir / "001.log").read_text().splitlines()
    dropped = FILES + 1 - len(copied)
    assert log == [
        f"llem: copying back the run directory: more than 1000 files: {dropped} not copied"
    ]


def test_a_container_left_behind_is_reported_and_fails_the_run(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    cli = os.path.realpath(host_tools.bin / "docker")
    host_tools.install("docker", FAILING_RM.format(cli=cli))
    try:
        code, err, manifest = remote_run(
            run_product, host_tools, gpu_engine, experiment(HOSTILE, "result")
        )
        [left] = gpu_engine.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    finally:
        for ident in gpu_engine.containers():
            gpu_engine.docker("rm", "-f", "-v", ident)
    [record] = manifest["experiments"]
    assert record["status"] == "ok"  # the experiment itself did its work
    assert record["cleanup"] == (
        f"`docker rm --force --volumes {left}` failed: "
        "Error response from daemon: container is busy: device or resource busy"
    )
    assert code == 1, err
    assert "1 of 1 experiment(s) ok; 1 container(s) may be left behind (see cleanup)" in err
    assert f"its container may be left behind: `docker rm --force --volumes {left}`" in err


def test_the_log_of_a_container_that_could_not_be_created_is_never_a_links_target(
    run_product: ProductRunner, host_tools: HostTools, gpu_engine: Engine, images: None
) -> None:
    victim = host_tools.root / "victim.txt"
    victim.write_text("keep me\n")
    (host_tools.work / "plant.py").write_text(PLANTS_A_LINK)
    planter = json.dumps(
        {"model": "p", "backend": "pytorch", "command": [sys.executable, "plant.py", str(victim)]}
    )
    code, err, manifest = remote_run(
        run_product, host_tools, gpu_engine, planter, experiment("llem-test/absent:1")
    )
    assert victim.read_text() == "keep me\n"
    assert code == 1, err
    first, second = manifest["experiments"]
    assert first["status"] == "ok", first
    assert second["cause"] in ("registry_unreachable", "image_not_found"), second
    log = host_tools.work / "out" / "002.log"
    assert not log.is_symlink() and "llem-test/absent" in log.read_text()
