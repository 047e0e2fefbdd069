"""GPUs that change while an experiment runs: the host's fake `nvidia-smi` reads its scenario
from a file at every call, and an experiment's own command may rewrite that file.

`HostTools.go_live()` installs that `nvidia-smi` (a Python script) and returns a `LiveGpus` on
the file. Every call of it is logged (one line each, beside the file), so that an experiment
can wait for llem's next samples instead of sleeping. A process holds a context on GPU N when
its environment has `LLEM_TESTBED_GPU=N` (a CUDA context, simulated): the fake lists it as a
compute process of that GPU, under its pid and name, for as long as it runs. The answer is in
the layout of the real driver 580 capture, like the fake of `scenario.nvidia_smi_script`.

Standard library only and free of package-relative imports: the fake runs it as a script, and
an experiment's script imports it by path (`experiment_script`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

if __package__:
    from .scenario import GpuProcess, GpuScenario, nvidia_smi_script, query_text
else:  # imported by the fake nvidia-smi or an experiment, as a plain module
    from scenario import (  # type: ignore[no-redef,import-not-found]
        GpuProcess,
        GpuScenario,
        nvidia_smi_script,
        query_text,
    )

TESTBED = Path(__file__).resolve().parent
# In a process's environment: it holds a context on that GPU. The fake looks for it in every
# process of this machine, so each xdist worker has a name of its own: the tests of one worker
# never see another's marked processes as foreign.
GPU_ENV = "LLEM_TESTBED_GPU" + "".join(
    f"_{worker.upper()}" for worker in [os.environ.get("PYTEST_XDIST_WORKER", "")] if worker
)
CONTEXT_MIB = 512  # the memory a marked process is shown to use


class LiveGpus:
    """The scenario file that the live `nvidia-smi` reads, and its log of calls."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.calls = self.path.with_suffix(".calls")

    def read(self) -> GpuScenario:
        return GpuScenario.from_json(self.path.read_text())

    def write(self, scenario: GpuScenario) -> None:
        """Replace the file at once: a reader never sees half of it."""
        part = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        part.write_text(scenario.to_json())
        os.replace(part, self.path)

    def change(self, index: int, **changes: object) -> GpuScenario:
        """GPU ``index`` with ``changes`` (fields of `Gpu`); the scenario's own fields by
        ``index=-1`` (e.g. ``driver_version``)."""
        scenario = self.read()
        if index < 0:
            changed = dataclasses.replace(scenario, **changes)  # type: ignore[arg-type]
        else:
            gpus = list(scenario.gpus)
            gpus[index] = dataclasses.replace(gpus[index], **changes)  # type: ignore[arg-type]
            changed = dataclasses.replace(scenario, gpus=tuple(gpus))
        self.write(changed)
        return changed

    def add_process(self, index: int, process: GpuProcess) -> None:
        gpu = self.read().gpus[index]
        self.change(index, processes=(*gpu.processes, process))

    def remove_process(self, index: int, pid: int) -> None:
        gpu = self.read().gpus[index]
        self.change(index, processes=tuple(p for p in gpu.processes if p.pid != pid))

    def queries(self) -> list[float]:
        """When each `nvidia-smi -q` was called (time.time())."""
        try:
            lines = self.calls.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [float(line.split()[0]) for line in lines if line.split()[1:] == ["-q"]]

    def wait_queries(self, count: int = 1, timeout: float = 30.0) -> None:
        """Until ``count`` more `nvidia-smi -q` have been answered; TimeoutError otherwise."""
        goal = len(self.queries()) + count
        deadline = time.monotonic() + timeout
        while len(self.queries()) < goal:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} nvidia-smi -q in {timeout} s")
            time.sleep(0.02)


def live_smi_script(gpus: LiveGpus) -> str:
    """The fake `nvidia-smi` that answers from ``gpus``' file at every call."""
    return (
        f"#!{sys.executable} -SE\n"
        "import sys\n"
        f"sys.path.insert(0, {str(TESTBED)!r})\n"
        "import live\n"
        f"live.answer({str(gpus.path)!r}, sys.argv[1:], {GPU_ENV!r})\n"
    )


def marked_processes(name: str = GPU_ENV) -> dict[int, list[GpuProcess]]:
    """GPU index -> the live processes whose environment names it (variable ``name``)."""
    found: dict[int, list[GpuProcess]] = {}
    marker = f"{name}=".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
            with open(f"/proc/{entry}/comm", "rb") as handle:
                name = handle.read().decode(errors="replace").strip()
        except OSError:
            continue
        for item in environ:
            if item.startswith(marker) and item[len(marker) :].isdigit():
                gpu = int(item[len(marker) :])
                found.setdefault(gpu, []).append(GpuProcess(int(entry), name, CONTEXT_MIB))
    return found


def answer(path: str, args: list[str], marker: str = GPU_ENV) -> None:
    """Answer as `nvidia-smi ARGS` from the scenario file at ``path``, and log the call."""
    gpus = LiveGpus(path)
    scenario = gpus.read()
    marked = marked_processes(marker)
    scenario = dataclasses.replace(
        scenario,
        gpus=tuple(
            dataclasses.replace(gpu, processes=(*gpu.processes, *marked.get(i, ())))
            for i, gpu in enumerate(scenario.gpus)
        ),
    )
    if args in (["-q"], ["--query"]):
        sys.stdout.write(query_text(scenario))
        sys.stdout.flush()
        with open(gpus.calls, "a") as log:
            log.write(f"{time.time()} -q\n")
        return
    with open(gpus.calls, "a") as log:
        log.write(f"{time.time()} {json.dumps(args)}\n")
    # The other modes: the shell-script fake, fed on its standard input (as an argument, the
    # script of many GPUs would pass the kernel's limit of one argument, 128 kB).
    script = nvidia_smi_script(scenario).encode()
    sys.exit(subprocess.run(["/bin/sh", "-s", "--", *args], input=script, check=False).returncode)


def experiment_script(gpus: LiveGpus, steps: str) -> str:
    """A local experiment (a Python script) that runs ``steps`` with ``gpus`` (a `LiveGpus`),
    ``GpuProcess`` and ``marked_processes`` at hand, then writes its result beside its config:
    ``energy_j``, its pid, and what ``steps`` put in the dict ``result``."""
    return (
        "import json, os, sys, time\n"
        f"sys.path.insert(0, {str(TESTBED)!r})\n"
        "from live import LiveGpus\n"
        "import live\n"
        f"def marked_processes(): return live.marked_processes({GPU_ENV!r})\n"
        "from scenario import GpuProcess\n"
        f"gpus = LiveGpus({str(gpus.path)!r})\n"
        "result = {}\n"
        f"{steps}\n"
        'config = json.load(open(os.environ["LLEM_CONFIG_PATH"]))\n'
        "result.update(energy_j=1.0, pid=os.getpid())\n"
        'json.dump(result, open(config["result_path"], "w"))\n'
    )
