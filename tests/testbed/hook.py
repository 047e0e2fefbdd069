"""Fake `nvidia-container-runtime-hook`, run by the test bed's dockerd for `--gpus` containers.

The engine runs it as `nvidia-container-runtime-hook prestart` with the OCI state on stdin and the
daemon's environment; `LLEM_TESTBED_SCENARIO` names the scenario file (a `GpuScenario` as JSON).
In mode "ok" it applies NVIDIA's requirement check to the container's `NVIDIA_REQUIRE_*`, then
writes a fake `/usr/bin/nvidia-smi` into the container's root filesystem.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TypedDict

if __package__:
    from .scenario import GpuScenario, SmiFailure, nvidia_smi_script, visible_gpus
else:  # run by the engine as a script
    from scenario import GpuScenario, SmiFailure, nvidia_smi_script, visible_gpus  # type: ignore[no-redef,import-not-found]

SCENARIO_ENV = "LLEM_TESTBED_SCENARIO"
HOOK_LOG_ENV = "LLEM_TESTBED_HOOK_LOG"
DELAY_ENV = "LLEM_TESTBED_HOOK_DELAY_S"

REQUIREMENT_ERROR = (
    "nvidia-container-cli: requirement error: unsatisfied condition: {}, "
    "please update your driver to a newer version, or use an earlier cuda container"
)


class HookCall(TypedDict):
    """One invocation of the hook, as logged to LLEM_TESTBED_HOOK_LOG."""

    time: float
    id: str
    mode: str
    env: dict[str, str]


_CONDITION = re.compile(r"^(?P<key>[a-z]+)(?P<op>>=|<=|!=|=|<|>)(?P<value>\S+)$")


def compare_versions(left: str, right: str) -> int:
    """-1, 0 or 1; numeric dotted parts compared one by one, a missing part counting as 0."""

    def parts(version: str) -> list[int]:
        return [int(m.group()) if (m := re.match(r"\d+", p)) else 0 for p in version.split(".")]

    a, b = parts(left), parts(right)
    width = max(len(a), len(b))
    a, b = a + [0] * (width - len(a)), b + [0] * (width - len(b))
    return (a > b) - (a < b)


def _holds(condition: str, scenario: GpuScenario) -> bool:
    match = _CONDITION.match(condition)
    if match is None:
        return False
    key, op, wanted = match["key"], match["op"], match["value"]
    if key == "brand":
        same = scenario.brand.lower() == wanted.lower()
        return same if op == "=" else (not same if op == "!=" else False)
    facts = {
        "cuda": scenario.cuda_version,
        "driver": scenario.driver_version,
        "arch": scenario.arch,
    }
    if key not in facts:
        return False
    order = compare_versions(facts[key], wanted)
    return {
        "=": order == 0,
        "!=": order != 0,
        "<": order < 0,
        "<=": order <= 0,
        ">": order > 0,
        ">=": order >= 0,
    }[op]


def _first_unsatisfied(expression: str, scenario: GpuScenario) -> str | None:
    """Spaces separate alternatives (OR), commas conditions (AND); the first failure is named."""
    first: str | None = None
    for alternative in expression.split():
        failed = next((c for c in alternative.split(",") if c and not _holds(c, scenario)), None)
        if failed is None:
            return None
        first = first or failed
    return first


def unsatisfied_requirement(env: Mapping[str, str], scenario: GpuScenario) -> str | None:
    """The condition of the container's requirements that the host fails, or None."""
    if env.get("NVIDIA_DISABLE_REQUIRE", "").lower() in ("1", "t", "true"):
        return None
    requirements = [
        value for key, value in sorted(env.items()) if key.startswith("NVIDIA_REQUIRE_")
    ]
    cuda = env.get("CUDA_VERSION", "")
    if cuda and "NVIDIA_REQUIRE_CUDA" not in env:  # a legacy image: its CUDA_VERSION is the minimum
        requirements.append("cuda>=" + ".".join(cuda.split(".")[:2]))
    for expression in requirements:
        failed = _first_unsatisfied(expression, scenario)
        if failed is not None:
            return failed
    return None


def _write_smi(root: Path, script: str) -> None:
    target = root / "usr" / "bin" / "nvidia-smi"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not os.path.realpath(target).startswith(os.path.realpath(root) + os.sep):
        raise RuntimeError(f"{target} leads out of the container's root filesystem")
    target.write_text(script)
    target.chmod(0o755)


def _log(record: HookCall) -> None:
    path = os.environ.get(HOOK_LOG_ENV)
    if path:
        with open(path, "a") as log:
            log.write(json.dumps(record) + "\n")


def main(argv: list[str]) -> int:
    if argv[1:2] != ["prestart"]:
        return 0
    state = json.load(sys.stdin)
    bundle = Path(state["bundle"])
    config = json.loads((bundle / "config.json").read_text())
    env = dict(item.split("=", 1) for item in config["process"].get("env", []) if "=" in item)
    root = bundle / config["root"]["path"]  # absolute as dockerd writes it, else bundle-relative
    path = os.environ.get(SCENARIO_ENV)
    scenario = (
        GpuScenario.from_json(Path(path).read_text())
        if path and Path(path).exists()
        else GpuScenario()
    )
    hook = scenario.hook
    _log(HookCall(time=time.time(), id=state.get("id", ""), mode=hook.mode, env=env))

    delay = hook.delay_s if hook.delay_s is not None else float(os.environ.get(DELAY_ENV) or 0)
    time.sleep(delay)
    if hook.mode == "fail":
        sys.stderr.write(hook.message)
        return hook.exit_code
    if hook.mode == "garbage":  # bytes 0xf8-0xff occur nowhere in UTF-8
        sys.stderr.buffer.write(bytes(random.choices(range(0xF8, 0x100), k=hook.garbage_bytes)))
        return 1
    if hook.mode == "sleep":
        time.sleep(hook.sleep_s)

    failed = unsatisfied_requirement(env, scenario)
    if failed is not None:
        sys.stderr.write(REQUIREMENT_ERROR.format(failed))
        return 1
    try:
        gpus = visible_gpus(env.get("NVIDIA_VISIBLE_DEVICES"), scenario.gpus)
    except KeyError as unknown:
        sys.stderr.write(f"nvidia-container-cli: device error: {unknown.args[0]}: unknown device")
        return 1
    if scenario.container_smi != "missing":
        failure: SmiFailure | None = (
            "nvml_unknown" if scenario.container_smi == "nvml_unknown" else None
        )
        _write_smi(root, nvidia_smi_script(scenario, gpus=gpus, failure=failure))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
