"""Benchmark of the pre-flight on the engine test bed (run as root: it starts a private dockerd).

The fake NVIDIA hook takes HOOK_DELAY_S per GPU container (real hosts spend 2-3 s initialising
the GPU without persistence mode; 1 s is the low end). Every case runs once per round, rounds
interleave the cases, and the medians are compared:

  (a) shell      the essential commands back to back from a shell
  (b) python     bench/sequential_preflight.py: the same commands from Python, sequential, no cache
                 (both use llem's own command lines, so the ratios compare the machinery alone;
                 "python, default network" leaves out the probe's `--network none`, for reference)
  (c) cold       `llem run --dry-run study.yaml` with no remembered probe (the study's
                 validated plan is remembered, as for any study run before)
      first run  the same with nothing remembered at all
  (d) warm       the same with the probe remembered by an earlier run
  (e) 1 image / 8 images   `pytest --llem-preflight --llem-no-cache`, one image against eight
  (f) 200 tests  a 200-test suite with the plugin installed but not enabled, against -p no:llem
  (g) engine     the probe's `docker run` from a shell, once and eight at a time: what the engine
                 itself takes for eight (a reference for (e), not a target)
  (h) 8 / 16 GPUs  (e)'s one image on hosts of 8 and 16 H200s (the host's and the container's
                 `nvidia-smi` list them all, `-q` in the layout of the real capture), against
                 the 2 GPUs of (e)

Every case runs in a new virtual environment with this checkout installed (`pip install .`):
what a user's interpreter pays at start-up, no more (no editable-install hook, no other
package's start-up files).

Usage: python bench/preflight_bench.py [--rounds N] [--hook-delay S] [--python PY] [--case NAME ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import sequential_preflight as baseline  # noqa: E402
from testbed import Engine, GpuScenario, HookBehaviour, HostTools, server_gpus  # noqa: E402

IMAGE_ENV = {
    "CUDA_VERSION": "12.4.1",
    "NVIDIA_REQUIRE_CUDA": "cuda>=12.4 brand=tesla,driver>=535,driver<536",
}
TARGETS = {  # ratio -> upper bound (what one launch per experiment had to keep)
    "warm / python": 0.28,
    "cold / python": 1.25,
    "plugin off / no:llem": 1.05,
}
# What llem adds for seven more images beyond the engine's own cost, at most (s): the eight
# images' ratio is bounded by the engine's (a 2-core machine's engine takes 2.4x for eight).
ADDED_FOR_IMAGES_S = 0.3


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(
            f"benchmark command failed ({result.returncode}): {' '.join(cmd)}\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return elapsed


def user_install(venv: Path) -> str:
    """A virtual environment with this checkout installed as a user installs it (no editable
    hook, none of this interpreter's site-packages); its Python."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    install = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)]
    result = subprocess.run(install, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"could not install this checkout:\n{result.stdout}{result.stderr}")
    return python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--hook-delay", type=float, default=1.0)
    parser.add_argument(
        "--settle",
        type=float,
        default=0.5,
        help="pause before each case (s), so none pays for another's cleanup",
    )
    parser.add_argument(
        "--python",
        help="a Python with this checkout's pytest-llem installed (default: a new virtual "
        "environment with it installed as a user would, `pip install .`)",
    )
    parser.add_argument(
        "--case",
        action="append",
        dest="cases",
        metavar="NAME",
        help="only this case (repeatable; a quicker look at one figure: ratios whose cases "
        "did not run are left out)",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="llem-bench-"))
    engine = Engine(gpu=True).start()
    try:
        healthy = GpuScenario(hook=HookBehaviour(delay_s=args.hook_delay))
        engine.set_scenario(healthy)
        images = [f"bench/cuda-{n}:12.4.1" for n in range(8)]
        for image in images:
            engine.build_image(image, IMAGE_ENV)
        tools = HostTools(work / "host")
        env = tools.env(engine)
        # As a user runs it: llem installed from this checkout into a virtual environment of
        # its own, no search path of the test bed's.
        env.pop("PYTHONPATH", None)
        py = args.python or user_install(work / "venv")
        study = work / "study.yaml"
        study.write_text(
            "name: bench\nrunners:\n  vllm: docker:" + images[0] + "\n"
            "experiments:\n  - {model: m, backend: vllm}\n"
        )
        suite = work / "suite"
        suite.mkdir()
        (suite / "test_many.py").write_text(
            "".join(f"def test_{n}():\n    assert {n} == {n}\n\n" for n in range(200))
        )
        shell = " && ".join(  # the baseline's very command lines, from a shell
            shlex.join(argv) + " >/dev/null"
            for argv in (
                baseline.VERSION,
                baseline.SMI,
                baseline.inspect_argv(images[0]),
                baseline.probe_argv(images[0], "bench-shell-probe"),
            )
        )

        runs = itertools.count()

        def probes_at_once(count: int) -> str:  # `docker run`s at a time, from a shell
            round_ = next(runs)
            started = " & ".join(
                shlex.join(baseline.probe_argv(image, f"bench-engine-{round_}-{n}")) + " >/dev/null"
                for n, image in enumerate(images[:count])
            )
            return f"{started} & wait"

        preflight = [
            py,
            "-m",
            "pytest",
            "--llem-preflight",
            "--llem-no-cache",
            "-p",
            "no:cacheprovider",
            "-q",
        ]

        large = {  # hosts of many GPUs: their own host tools, the engine's scenario per run
            count: HostTools(work / f"host-{count}", scenario=GpuScenario(gpus=server_gpus(count)))
            for count in (8, 16)
        }

        def on_gpus(count: int) -> float:
            tools = large[count]
            engine.set_scenario(dataclasses.replace(healthy, gpus=tools.scenario.gpus))
            try:
                env_large = tools.env(engine)
                env_large.pop("PYTHONPATH", None)
                return timed([*preflight, "--llem-image", images[0]], env_large, work)
            finally:
                engine.set_scenario(healthy)

        def dry_run(cache: str) -> float:
            return timed(
                [py, "-m", "pytest_llem", "run", "--dry-run", str(study)],
                {**env, "XDG_CACHE_HOME": str(work / cache)},
                work,
            )

        def cold() -> float:  # no remembered probe (the study was seen before)
            (work / "cold-cache" / "llenergymeasure" / "probes.json").unlink(missing_ok=True)
            return dry_run("cold-cache")

        def first() -> float:  # nothing remembered at all: a new study on a new machine
            shutil.rmtree(work / "first-cache", ignore_errors=True)
            return dry_run("first-cache")

        cases: dict[str, Callable[[], float]] = {
            "shell": lambda: timed(["/bin/sh", "-c", shell], env, work),
            "python": lambda: timed(
                [py, str(ROOT / "bench" / "sequential_preflight.py"), images[0]], env, work
            ),
            "python, default network": lambda: timed(
                [
                    py,
                    str(ROOT / "bench" / "sequential_preflight.py"),
                    images[0],
                    "--default-network",
                ],
                env,
                work,
            ),
            "cold": cold,
            "first run": first,
            "warm": lambda: dry_run("warm-cache"),
            "1 image": lambda: timed([*preflight, "--llem-image", images[0]], env, work),
            "8 images": lambda: timed(
                [*preflight, *(a for i in images for a in ("--llem-image", i))], env, work
            ),
            "1 image, 8 GPUs": lambda: on_gpus(8),
            "1 image, 16 GPUs": lambda: on_gpus(16),
            "engine: 1 probe": lambda: timed(["/bin/sh", "-c", probes_at_once(1)], env, work),
            "engine: 8 probes": lambda: timed(["/bin/sh", "-c", probes_at_once(8)], env, work),
            "200 tests, plugin off": lambda: timed(
                [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)], env, work
            ),
            "200 tests, -p no:llem": lambda: timed(
                [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:llem", str(suite)],
                env,
                work,
            ),
        }
        if args.cases:
            wanted = [name.strip() for name in args.cases]
            unknown = sorted(set(wanted) - set(cases))
            if unknown:
                known = ", ".join(cases)
                raise SystemExit(f"unknown case(s): {', '.join(unknown)}; known: {known}")
            cases = {name: case for name, case in cases.items() if name in wanted}
        cases.get("warm", lambda: 0.0)()  # fill the warm cache once
        cases.get("cold", lambda: 0.0)()  # and the plan a study run before has
        samples: dict[str, list[float]] = {name: [] for name in cases}
        # The suite pair is short and noisy: five alternations of the two per round, so that
        # neither always follows the engine's cases (whose cleanup outlives their commands).
        suite_cases = ("200 tests, plugin off", "200 tests, -p no:llem")
        pair = [name for name in suite_cases if name in cases]

        def sample(name: str) -> None:
            time.sleep(args.settle)  # let the engine finish the last case's cleanup
            samples[name].append(cases[name]())

        for round_ in range(args.rounds):
            for name in cases:
                if name not in pair:
                    sample(name)
            for _ in range(5):
                for name in pair[:: 1 if round_ % 2 else -1]:  # who goes first alternates too
                    sample(name)
        med = {name: statistics.median(values) for name, values in samples.items()}
        print(
            f"pre-flight benchmark: {args.rounds} interleaved rounds, hook delay "
            f"{args.hook_delay:g} s, medians"
        )
        for name, value in med.items():
            spread = f"{min(samples[name]):.3f}-{max(samples[name]):.3f}"
            print(f"  {name:24s} {value:7.3f} s   (range {spread})")
        pairs = {
            "warm / python": ("warm", "python"),
            "cold / python": ("cold", "python"),
            "first run / python": ("first run", "python"),
            "cold / python, def. net": ("cold", "python, default network"),
            "8 images / 1 image": ("8 images", "1 image"),
            "16 GPUs / 2 GPUs": ("1 image, 16 GPUs", "1 image"),
            "engine: 8 probes / 1": ("engine: 8 probes", "engine: 1 probe"),
            "plugin off / no:llem": ("200 tests, plugin off", "200 tests, -p no:llem"),
            "python / shell": ("python", "shell"),
        }
        ratios = {
            name: med[top] / med[bottom]
            for name, (top, bottom) in pairs.items()
            if top in med and bottom in med
        }
        engine_cases = ("8 images", "1 image", "engine: 8 probes", "engine: 1 probe")
        failed = False
        if all(name in med for name in engine_cases):
            # What the pre-flight itself adds for seven more images, beyond the engine's own.
            added = (med["8 images"] - med["1 image"]) - (
                med["engine: 8 probes"] - med["engine: 1 probe"]
            )
            failed = over = added > ADDED_FOR_IMAGES_S
            verdict = f" (target <= {ADDED_FOR_IMAGES_S:g} s)  {'OVER' if over else 'ok'}"
            print(f"  {'7 more images, less the engine':24s} {added:7.3f} s{verdict}")
        print("ratios:")
        for name, ratio in ratios.items():
            bound = TARGETS.get(name)
            verdict = "" if bound is None else ("  ok" if ratio <= bound else "  OVER")
            failed |= bound is not None and ratio > bound
            target = f" (target <= {bound:g})" if bound is not None else ""
            print(f"  {name:24s} {ratio:6.2f}{target}{verdict}")
        return 1 if failed else 0
    finally:
        engine.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
