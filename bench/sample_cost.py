"""What one sample of the measurement window costs (no engine, no root needed).

A sample is one `nvidia-smi -q` run at low priority (`host.gpu_sampler.query`) and its parse
(`domain.attestation.Snapshot.parse`). This times both on the test bed's fake `nvidia-smi`:
the shell-script fake (`printf` of the whole report) and the live one that reads its scenario
from a file at every call (a Python script), for hosts of 2 and 8 GPUs. Reported per sample:
wall time, the CPU time of the `nvidia-smi` process, and llem's own CPU time (starting it,
reading its output, parsing). A real driver's `nvidia-smi -q` is another program (it queries
NVML for every field): on a GPU host, ``--real`` times the `nvidia-smi` found on PATH instead.

Usage: python bench/sample_cost.py [--repeat N] [--real]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from testbed import GpuScenario, nvidia_smi_script, server_gpus  # noqa: E402
from testbed.live import LiveGpus, live_smi_script  # noqa: E402

from pytest_llem.domain.attestation import Snapshot  # noqa: E402
from pytest_llem.domain.gpu_state import parse_states  # noqa: E402
from pytest_llem.host.gpu_sampler import query  # noqa: E402


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def sample_costs(env: dict[str, str], repeat: int) -> tuple[list[float], list[float], list[float]]:
    """Milliseconds per sample: (wall, nvidia-smi's CPU, llem's CPU)."""
    wall, child, own = [], [], []
    query(env)  # warm: modules loaded
    for _ in range(repeat):
        parse_states.cache_clear()  # every real report differs (its timestamp): never cached
        c0, s0, t0 = _cpu(resource.RUSAGE_CHILDREN), _cpu(resource.RUSAGE_SELF), time.perf_counter()
        result = query(env)
        snapshot = Snapshot.parse(result.stdout, 0.0)
        t1, c1, s1 = time.perf_counter(), _cpu(resource.RUSAGE_CHILDREN), _cpu(resource.RUSAGE_SELF)
        assert result.ok and snapshot.gpus, result.stderr
        wall.append((t1 - t0) * 1000)
        child.append((c1 - c0) * 1000)
        own.append((s1 - s0) * 1000)
    return wall, child, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--real", action="store_true", help="the nvidia-smi on PATH")
    args = parser.parse_args()
    print(f"per sample, median of {args.repeat} (ms): wall | nvidia-smi CPU | llem CPU")
    if args.real:
        env = dict(os.environ)
        wall, child, own = sample_costs(env, args.repeat)
        gpus = len(Snapshot.parse(query(env).stdout, 0.0).gpus)
        print(
            f"{gpus} GPUs, nvidia-smi on PATH: {statistics.median(wall):6.1f} | "
            f"{statistics.median(child):6.1f} | {statistics.median(own):6.1f}"
        )
        return
    for count in (2, 8):
        scenario = GpuScenario(
            driver_version="580.159.04", cuda_version="13.0", gpus=server_gpus(count)
        )
        with tempfile.TemporaryDirectory() as work:
            bin_dir = Path(work)
            fakes = {"shell fake": nvidia_smi_script(scenario)}
            live = LiveGpus(bin_dir / "gpus.json")
            live.write(scenario)
            fakes["live fake"] = live_smi_script(live)
            for label, script in fakes.items():
                tool = bin_dir / "nvidia-smi"
                tool.write_text(script)
                tool.chmod(0o755)
                wall, child, own = sample_costs({"PATH": str(bin_dir)}, args.repeat)
                size = len(query({"PATH": str(bin_dir)}).stdout) // 1024
                print(
                    f"{count} GPUs, {label:<10} ({size:>3} kB): "
                    f"{statistics.median(wall):6.1f} | {statistics.median(child):6.1f} | "
                    f"{statistics.median(own):6.1f}"
                )


if __name__ == "__main__":
    main()
