"""The image's ``NVIDIA_REQUIRE_*`` constraints, judged against the host as the NVIDIA hook does.

Pure functions, no I/O. The semantics are those of the NVIDIA Container Toolkit, which checks
them before a container starts
(https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/docker-specialized.html,
"Constraints"; the hook is https://github.com/NVIDIA/nvidia-container-toolkit and the evaluator
``nvidia-container-cli`` is https://github.com/NVIDIA/libnvidia-container):

- every variable named ``NVIDIA_REQUIRE_*`` is a constraint, and all of them must hold;
- in one value, space-separated alternatives are ORed and comma-separated conditions ANDed;
- conditions are ``KEY OP VALUE`` with keys ``cuda``, ``driver``, ``arch``, ``brand``;
- ``NVIDIA_DISABLE_REQUIRE=true`` turns the check off;
- a "legacy" image, with ``CUDA_VERSION`` but no ``NVIDIA_REQUIRE_CUDA``, is held to
  ``cuda>=MAJOR.MINOR`` of its ``CUDA_VERSION``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from .cuda_table import compare_versions, cuda_for_driver, min_driver_for_cuda

__all__ = ["RequirementVerdict", "evaluate_requirements", "image_cuda_facts"]

REQUIRE_PREFIX = "NVIDIA_REQUIRE_"
REQUIRE_CUDA = "NVIDIA_REQUIRE_CUDA"
DISABLE_REQUIRE = "NVIDIA_DISABLE_REQUIRE"
CUDA_VERSION = "CUDA_VERSION"
# Jetson images carry a mount spec here ("csv-mounts=all"), not a condition; the hook skips it.
_REQUIRE_JETPACK = "NVIDIA_REQUIRE_JETPACK"

_OPERATORS = frozenset({">=", "<=", "==", "!=", "=", "<", ">"})
_CONDITION = re.compile(r"([^<>=!]*)([<>=!]+)(.*)", re.DOTALL)  # key, operator, value
_VERSION_TESTS: dict[str, Callable[[int], bool]] = {
    ">=": lambda c: c >= 0,
    "<=": lambda c: c <= 0,
    "==": lambda c: c == 0,
    "=": lambda c: c == 0,
    "!=": lambda c: c != 0,
    "<": lambda c: c < 0,
    ">": lambda c: c > 0,
}
_FACT_NAMES = {
    "cuda": "CUDA version",
    "driver": "driver version",
    "arch": "GPU architecture",
    "brand": "GPU brand",
}
_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_BRAND = re.compile(r"[A-Za-z0-9_.-]+")
# CUDA_VERSION as the hook reads it: semver-like, possibly "v"-prefixed, with a pre-release/build.
_LEGACY_CUDA = re.compile(r"v?([0-9]+)(?:\.([0-9]+))?(?:\.[0-9]+)?(?:[-+][0-9A-Za-z.+-]+)?")
_TRUE = frozenset({"1", "t", "true"})  # strconv.ParseBool, and any letter case
_FALSE = frozenset({"0", "f", "false"})


@dataclass(frozen=True)
class RequirementVerdict:
    """Whether the host satisfies an image's ``NVIDIA_REQUIRE_*`` constraints.

    - ``satisfied``: the NVIDIA hook would let the container start (as far as these facts go).
    - ``required_cuda``: the CUDA the image asks for (``cuda>=X`` of ``NVIDIA_REQUIRE_CUDA``,
      else ``CUDA_VERSION``'s ``MAJOR.MINOR``), or None.
    - ``failed``: for each unsatisfied variable, its condition as ``nvidia-container-cli`` names
      it (``"cuda>=12.8"``: the first unmet condition of the first alternative).
    - ``min_driver``: the minimum Linux driver for ``required_cuda`` per NVIDIA's table.
    - ``cuda_version``: the CUDA version the driver supports, as given or derived from the driver.
    - ``notes``: how the verdict was reached (unknown facts, exemptions, legacy images, ...).
    - ``errors``: malformed constraints; one that the evaluation reaches fails the requirement.
    - ``constrained``: False when nothing is checked (no constraint, or checks disabled).
    """

    satisfied: bool
    required_cuda: str | None
    failed: tuple[str, ...]
    min_driver: str | None
    cuda_version: str | None
    notes: tuple[str, ...]
    errors: tuple[str, ...]
    constrained: bool


@dataclass(frozen=True)
class _Condition:
    text: str
    key: str = ""
    op: str = ""
    value: str = ""
    error: str = ""  # why it is malformed; "" when valid


class _Constraint(NamedTuple):
    name: str
    alternatives: tuple[tuple[_Condition, ...], ...]


class _Outcome(NamedTuple):
    holds: bool
    unmet: str | None  # the first unmet condition met on the way
    passed_by: str | None  # the alternative that held
    error: _Condition | None  # the malformed condition reached


class _Facts(NamedTuple):
    cuda: str | None
    driver: str | None
    arch: str | None
    brand: str | None


def image_cuda_facts(env: Mapping[str, str]) -> dict[str, str]:
    """The image variables that the NVIDIA hook reads: ``CUDA_VERSION``, ``NVIDIA_REQUIRE_*``
    and ``NVIDIA_DISABLE_REQUIRE``, those present, under their own names (for a check's details).
    """
    return {
        name: env[name]
        for name in sorted(env)
        if name in (CUDA_VERSION, DISABLE_REQUIRE) or name.startswith(REQUIRE_PREFIX)
    }


def evaluate_requirements(
    env: Mapping[str, str],
    *,
    driver_version: str | None,
    cuda_version: str | None = None,
    brand: str | None = None,
    arch: str | None = None,
) -> RequirementVerdict:
    """Judge the image environment ``env`` against the host, as ``nvidia-container-cli`` would.

    ``driver_version`` is the host driver (``"550.54.15"``); ``cuda_version`` the CUDA version it
    supports (``nvidia-smi``'s ``CUDA Version``), derived from the driver with NVIDIA's table when
    None; ``brand`` the ``Product Brand`` (any case); ``arch`` the compute capability (``"8.0"``).
    A condition on a fact that is unknown is unmet, with a note. Never raises: malformed
    constraints are reported in ``errors``.
    """
    notes: list[str] = []
    errors: list[str] = []
    facts = _facts(driver_version, cuda_version, brand, arch, notes)
    required_cuda = _required_cuda(env)
    min_driver = None if required_cuda is None else min_driver_for_cuda(required_cuda)

    def verdict(
        satisfied: bool, failed: Iterable[str] = (), constrained: bool = True
    ) -> RequirementVerdict:
        return RequirementVerdict(
            satisfied=satisfied,
            required_cuda=required_cuda,
            failed=tuple(failed),
            min_driver=min_driver,
            cuda_version=facts.cuda,
            notes=tuple(dict.fromkeys(notes)),
            errors=tuple(errors),
            constrained=constrained,
        )

    disable = env.get(DISABLE_REQUIRE)
    if disable is not None:
        if disable.lower() in _TRUE:
            notes.append(f"{DISABLE_REQUIRE}={disable}: the NVIDIA hook checks no requirement")
            return verdict(True, constrained=False)
        if disable and disable.lower() not in _FALSE:
            notes.append(f"{DISABLE_REQUIRE}={disable!r} is not a boolean: requirements apply")

    constraints = _constraints(env, notes, errors)
    if not constraints and not errors:
        notes.append("the image carries no NVIDIA_REQUIRE_* or CUDA_VERSION: nothing to check")
        return verdict(True, constrained=False)

    satisfied = not errors  # errors so far: a CUDA_VERSION the hook cannot read
    failed: list[str] = []
    for constraint in constraints:
        outcome = _evaluate(constraint, facts, notes)
        for alternative in constraint.alternatives:
            for condition in alternative:
                if condition.error:
                    errors.append(
                        f"{constraint.name}: malformed condition {condition.text!r}"
                        f" ({condition.error})"
                    )
                    if condition is not outcome.error:
                        notes.append(
                            f"{constraint.name}: {condition.text!r} is not reached by the"
                            " evaluation, so it does not decide"
                        )
        if outcome.holds:
            if outcome.unmet is not None:
                notes.append(
                    f"{constraint.name}: {outcome.unmet} is unmet, but the alternative"
                    f" {outcome.passed_by} holds"
                )
            continue
        satisfied = False
        if outcome.unmet is not None and outcome.error is None:
            failed.append(outcome.unmet)
    return verdict(satisfied, failed)


def _facts(
    driver: str | None, cuda: str | None, brand: str | None, arch: str | None, notes: list[str]
) -> _Facts:
    def version(value: str | None, what: str) -> str | None:
        if value is None or not value.strip():
            return None
        if _VERSION.fullmatch(value.strip()) is None:
            notes.append(f"{what} {value!r} is not a version: treated as unknown")
            return None
        return value.strip()

    known_driver = version(driver, "driver version")
    known_cuda = version(cuda, "CUDA version")
    if known_cuda is None and known_driver is not None:
        known_cuda = cuda_for_driver(known_driver)
        if known_cuda is None:
            notes.append(f"driver {known_driver} is older than NVIDIA's CUDA table")
        else:
            notes.append(
                f"CUDA {known_cuda} derived from driver {known_driver} with NVIDIA's table"
            )
    brand = None if brand is None else brand.strip().lower() or None
    return _Facts(known_cuda, known_driver, version(arch, "GPU architecture"), brand)


def _parse_condition(text: str) -> _Condition:
    match = _CONDITION.fullmatch(text)
    if match is None:
        return _Condition(text, error="no comparison operator")
    key, op, value = match.group(1).lower(), match.group(2), match.group(3)
    if op not in _OPERATORS:
        return _Condition(text, error=f"unknown operator {op!r}")
    if not key:
        return _Condition(text, error="no key before the operator")
    if key not in _FACT_NAMES:
        return _Condition(text, error=f"unknown key {key!r}; expected cuda, driver, arch or brand")
    if not value:
        return _Condition(text, error="no value after the operator")
    if key == "brand":
        if op not in ("=", "==", "!="):
            return _Condition(text, error="a brand is compared with = or != only")
        if _BRAND.fullmatch(value) is None:
            return _Condition(text, error=f"{value!r} is not a brand name")
    elif _VERSION.fullmatch(value) is None:
        return _Condition(text, error=f"{value!r} is not a version")
    return _Condition(text, key, op, value)


def _parse(name: str, value: str) -> _Constraint:
    alternatives = (
        tuple(_parse_condition(part) for part in alternative.split(",") if part)
        for alternative in value.split()
    )
    return _Constraint(name, tuple(a for a in alternatives if a))


def _legacy_major_minor(cuda_version: str) -> str | None:
    match = _LEGACY_CUDA.fullmatch(cuda_version)
    if match is None:
        return None
    return f"{int(match.group(1))}.{int(match.group(2) or 0)}"


def _constraints(env: Mapping[str, str], notes: list[str], errors: list[str]) -> list[_Constraint]:
    constraints = []
    for name in sorted(env):
        if not name.startswith(REQUIRE_PREFIX) or name.startswith(_REQUIRE_JETPACK):
            continue
        constraint = _parse(name, env[name])
        if constraint.alternatives:
            constraints.append(constraint)
        else:
            notes.append(f"{name} is empty: no condition")
    legacy = env.get(CUDA_VERSION, "")
    if legacy and not env.get(REQUIRE_CUDA):
        major_minor = _legacy_major_minor(legacy)
        if major_minor is None:
            errors.append(
                f"{CUDA_VERSION}={legacy!r} is not a version: the NVIDIA hook refuses to start"
                f" an image without {REQUIRE_CUDA} whose {CUDA_VERSION} it cannot read"
            )
        else:
            notes.append(
                f"no {REQUIRE_CUDA}: the NVIDIA hook requires cuda>={major_minor}"
                f" from {CUDA_VERSION}={legacy}"
            )
            constraints.append(_parse(CUDA_VERSION, f"cuda>={major_minor}"))
    return constraints


def _required_cuda(env: Mapping[str, str]) -> str | None:
    for alternative in env.get(REQUIRE_CUDA, "").split():
        for part in alternative.split(","):
            condition = _parse_condition(part)
            if condition.key == "cuda" and condition.op in (">=", "=", "=="):
                return condition.value
    return _legacy_major_minor(env.get(CUDA_VERSION, ""))


def _evaluate(constraint: _Constraint, facts: _Facts, notes: list[str]) -> _Outcome:
    # Like nvidia-container-cli: alternatives in order, the first that holds wins; inside
    # one, the first unmet condition ends it; a malformed condition reached is an error.
    unmet: str | None = None
    for alternative in constraint.alternatives:
        for condition in alternative:
            if condition.error:
                return _Outcome(False, unmet, None, condition)
            if not _holds(condition, facts, notes):
                unmet = unmet or condition.text
                break
        else:
            return _Outcome(True, unmet, ",".join(c.text for c in alternative), None)
    return _Outcome(False, unmet, None, None)


def _holds(condition: _Condition, facts: _Facts, notes: list[str]) -> bool:
    fact: str | None = getattr(facts, condition.key)
    if fact is None:
        notes.append(f"{_FACT_NAMES[condition.key]} unknown: {condition.text} counted as unmet")
        return False
    if condition.key == "brand":
        return (fact == condition.value.lower()) != (condition.op == "!=")
    return _VERSION_TESTS[condition.op](compare_versions(fact, condition.value))
