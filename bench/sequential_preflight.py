"""Baseline for the benchmark: the essential pre-flight commands, one after another, no cache.

What a careful hand-written pre-flight does: docker version, nvidia-smi -q, image inspect,
then a GPU probe container of the image. Usage: python sequential_preflight.py IMAGE
"""

from __future__ import annotations

import json
import subprocess
import sys


def main(image: str) -> int:
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    version = run("docker", "version", "--format", "{{json .}}")
    if version.returncode != 0:
        return 1
    smi = run("nvidia-smi", "-q")
    driver = next(
        (
            line.split(":", 1)[1].strip()
            for line in smi.stdout.splitlines()
            if line.strip().startswith("Driver Version")
        ),
        "",
    )
    inspect = run("docker", "image", "inspect", "--format", "{{json .Config.Env}}", image)
    env = json.loads(inspect.stdout or "[]")
    probe = run(
        "docker",
        "run",
        "--rm",
        "--gpus",
        "all",
        "--entrypoint",
        "nvidia-smi",
        image,
        "--query-gpu=index,name,uuid,driver_version",
        "--format=csv,noheader",
    )
    gpus = [line for line in probe.stdout.splitlines() if line.strip()]
    return 0 if probe.returncode == 0 and gpus and driver and env is not None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
