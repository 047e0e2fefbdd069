"""Parse time of a large host's `nvidia-smi -q` (no engine, no root needed).

The text is the test bed's fake `nvidia-smi -q` of 1, 8 and 16 GPUs: each GPU in the layout
of the real H200 capture (driver 580), about 13.8 kB a GPU. Both parses that the pre-flight
makes of it are timed: `parse_q` (host-driver, cuda-compat, the GPU count of
gpu-in-container) and `parse_states` (the measurement checks; without its cache).

Usage: python bench/parse_bench.py [--repeat N] [--gpus N ...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from testbed import GpuScenario, nvidia_smi_script, server_gpus  # noqa: E402

from pytest_llem.domain.gpu_state import parse_states  # noqa: E402
from pytest_llem.domain.nvidia_smi import parse_q  # noqa: E402


def smi_q(count: int) -> str:
    """What the fake `nvidia-smi -q` of a host of ``count`` GPUs prints."""
    scenario = GpuScenario(
        driver_version="580.159.04", cuda_version="13.0", gpus=server_gpus(count)
    )
    with tempfile.TemporaryDirectory() as work:
        tool = Path(work) / "nvidia-smi"
        tool.write_text(nvidia_smi_script(scenario))
        tool.chmod(0o755)
        return subprocess.run(
            [str(tool), "-q"], capture_output=True, text=True, check=True, timeout=60
        ).stdout


def per_call_ms(parse: Callable[[str], object], text: str, repeat: int) -> list[float]:
    """Milliseconds of each of ``repeat`` batches, per call (a batch lasts about 50 ms)."""
    parse(text)  # warm: regexes compiled, modules loaded
    start = time.perf_counter()
    parse(text)
    number = max(1, int(0.05 / max(time.perf_counter() - start, 1e-6)))
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            parse(text)
        samples.append((time.perf_counter() - start) / number * 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="batches per figure")
    parser.add_argument("--gpus", type=int, action="append", help="GPU counts (default 1 8 16)")
    args = parser.parse_args()
    print(f"nvidia-smi -q parse time (Python {sys.version.split()[0]}), ms per parse: median (min)")
    for count in args.gpus or [1, 8, 16]:
        text = smi_q(count)
        info, states = parse_q(text), parse_states(text)
        if len(info.gpus) != count or len(states) != count:
            raise SystemExit(f"{count} GPUs printed, {len(info.gpus)}/{len(states)} parsed")
        figures = []
        # parse_states keeps its last answers (the checks of one session share one text):
        # the parse itself is timed, not the cache.
        uncached = parse_states.__wrapped__
        for name, parse in (("parse_q", parse_q), ("parse_states", uncached)):
            samples = per_call_ms(parse, text, args.repeat)
            figures.append(f"{name} {statistics.median(samples):6.2f} ({min(samples):.2f})")
        print(f"  {count:2d} GPU(s), {len(text) / 1000:6.1f} kB:  " + "   ".join(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
