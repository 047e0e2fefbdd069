"""Baseline for the benchmark: the essential pre-flight commands, one after another, no cache.

What a careful hand-written pre-flight does: docker version, nvidia-smi -q, image inspect,
then a GPU probe container of the image. The command lines are llem's own (the same flags,
`--network none` included), so that the benchmark compares the machinery, not the calls.
Usage: python sequential_preflight.py IMAGE [--default-network]
(--default-network leaves out `--network none`: the bare `docker run` of a hand-written check)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

VERSION = ["docker", "version", "--format", "{{json .}}"]
SMI = ["nvidia-smi", "-q"]


def inspect_argv(image: str) -> list[str]:
    return ["docker", "image", "inspect", "--format", "{{json .}}", "--", image]


def probe_argv(image: str, name: str) -> list[str]:
    return [
        *("docker", "run", "--rm", "--name", name, "--gpus", "all", "--network", "none"),
        *("--pull", "never", "-e", "NVIDIA_DRIVER_CAPABILITIES=compute,utility"),
        *("--entrypoint", "nvidia-smi", "--", image),
        *("--query-gpu=index,name,uuid,driver_version", "--format=csv,noheader"),
    ]


def main(image: str, default_network: bool = False) -> int:
    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    version = run(VERSION)
    if version.returncode != 0:
        return 1
    smi = run(SMI)
    driver = next(
        (
            line.split(":", 1)[1].strip()
            for line in smi.stdout.splitlines()
            if line.strip().startswith("Driver Version")
        ),
        "",
    )
    inspect = run(inspect_argv(image))
    env = json.loads(inspect.stdout or "{}").get("Config", {}).get("Env")
    argv = probe_argv(image, f"bench-probe-{os.getpid()}")
    if default_network:
        at = argv.index("--network")
        del argv[at : at + 2]
    probe = run(argv)
    gpus = [line for line in probe.stdout.splitlines() if line.strip()]
    return 0 if probe.returncode == 0 and gpus and driver and env is not None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], "--default-network" in sys.argv[2:]))
