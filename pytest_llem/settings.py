"""PreflightSettings: every setting of a pre-flight, its default, limits and names, in one place.

A setting is one field below; its metadata says how pytest (``--llem-...``), a study file
(``docker.<key>``) and `llem preflight` name it, and what values it accepts (a field with no
option comes from a study's launches alone). The pytest options and the study's ``docker:``
keys are derived from these fields; a session gets the settings as this object. No heavy
imports: the plugin loads this in every session.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .domain.allocation import Allocation

Kind = Literal[
    "seconds",
    "seconds_or_0",
    "image",
    "images",
    "ids",
    "indices",
    "flag",
    "path",
    "requests",
    "allocation",
    "choice",
]


def _setting(
    default: Any,
    *,
    kind: Kind,
    option: str | None,
    help: str,
    study: str | None = None,
    cli: str | None = None,
    maximum: float | None = None,
    metavar: str | None = None,
    choices: tuple[str, ...] = (),
) -> Any:
    meta = {
        "kind": kind,
        "option": option,
        "help": help,
        "study": study,
        "cli": cli,
        "maximum": maximum,
        "metavar": metavar,
        "choices": choices,
    }
    return field(default=default, metadata=meta)  # every default is immutable


DAY_S = 86400.0
# What the default host timeout allows beyond a host's longest silent work: its worker's start
# (ssh, Python, pytest, collection) and the quick host commands around a pull or a probe.
HOST_TIMEOUT_MARGIN_S = 60.0


class SettingError(ValueError):
    """A setting's value is out of its domain; ``str()`` names the option or key."""


@dataclass(frozen=True)
class PreflightSettings:
    """What one pre-flight checks and within which limits (validated when built)."""

    images: tuple[str, ...] = _setting(
        (),
        kind="images",
        option="--llem-image",
        cli="--image",
        metavar="IMAGE",
        help="image whose CUDA requirement and GPU access tier 2 checks (repeatable; default: "
        "the study's Docker images, else the probe image)",
    )
    probe_image: str = _setting(
        "nvidia/cuda:12.0.0-base-ubuntu22.04",
        kind="image",
        option="--llem-probe-image",
        study="probe_image",
        metavar="IMAGE",
        help="the image probed when no image is named",
    )
    skip: frozenset[str] = _setting(
        frozenset(),
        kind="ids",
        option="--llem-skip",
        cli="--skip-check",
        metavar="ID",
        help="check ids not to run, repeatable or comma-separated; 'all' skips all",
    )
    timeout_s: float = _setting(
        30.0,
        kind="seconds",
        option="--llem-timeout",
        study="probe_timeout_s",
        cli="--timeout",
        maximum=DAY_S,
        metavar="SECONDS",
        help="limit for one container probe (default 30)",
    )
    pull_timeout_s: float = _setting(
        600.0,
        kind="seconds",
        option="--llem-pull-timeout",
        study="pull_timeout_s",
        maximum=DAY_S,
        metavar="SECONDS",
        help="limit for pulling one image (default 600)",
    )
    cache_s: float = _setting(
        900.0,
        kind="seconds_or_0",
        option="--llem-cache-s",
        study="probe_cache_s",
        maximum=30 * DAY_S,
        metavar="SECONDS",
        help="how long a passed probe is remembered (default 900, 0 = off)",
    )
    wait_s: float = _setting(
        0.0,
        kind="seconds_or_0",
        option="--llem-wait",
        cli="--wait",
        maximum=DAY_S,
        metavar="SECONDS",
        help="while tier 1 fails for a reason that can clear by itself (daemon not up yet, "
        "driver not loaded yet), retry it for up to SECONDS (default 0: no wait)",
    )
    no_cache: bool = _setting(
        False,
        kind="flag",
        option="--llem-no-cache",
        cli="--no-cache",
        help="ignore remembered results of earlier GPU probes",
    )
    gpus: tuple[int, ...] = _setting(
        (),
        kind="indices",
        option="--llem-gpus",
        cli="--gpus",
        metavar="INDEX",
        help="GPU indices the measurement checks judge, repeatable or comma-separated "
        "(default: all; a study's gpus: lists)",
    )
    measurement_only: bool = _setting(
        False,
        kind="flag",
        option="--llem-measurement-only",
        cli="--measurement-only",
        help="run only the measurement-readiness checks (tier 3), as for a study whose "
        "experiments all run locally",
    )
    engine: str = _setting(
        "docker",
        kind="choice",
        choices=("docker", "podman"),
        option="--llem-engine",
        cli="--engine",
        metavar="ENGINE",
        help="the container engine the experiments run on: docker or podman (default docker; "
        "a study's runners decide)",
    )
    gpu_request: str = _setting(
        "auto",
        kind="choice",
        choices=("auto", "gpus", "cdi"),
        option="--llem-gpu-request",
        study="gpu_request",
        cli="--gpu-request",
        metavar="MODE",
        help="how a Docker container asks for its GPUs: gpus (--gpus, through the NVIDIA "
        "hook), cdi (--device nvidia.com/gpu=N, through the engine's CDI specs), or auto "
        "(what the engine is set up for; default). Podman always uses CDI",
    )
    # What a study's launches make of it (run/runners.py), never typed by a person: they reach
    # the session as this object (llem, --llem-config) or an xdist worker's copy of it.
    requests: tuple[tuple[str, str], ...] = _setting(
        (),
        kind="requests",
        option=None,
        help="(image, GPU request) of each container the study starts (default: each image "
        "with the GPUs of --llem-gpus, else all)",
    )
    local_runs: bool = _setting(
        False,
        kind="flag",
        option=None,
        help="some experiments run as processes on this machine: its GPUs are measured even "
        "when the daemon is remote",
    )
    skipped_by: str | None = _setting(
        None,
        kind="path",
        option=None,
        help="where a skip of the whole pre-flight comes from (execution.skip_preflight)",
    )
    skip_origin: str | None = _setting(
        None,
        kind="path",
        option=None,
        help="where the ids of `skip` were named (--llem-skip, execution.skip_checks in FILE)",
    )
    host_timeout_s: float | None = _setting(
        None,
        kind="seconds",
        option="--llem-host-timeout",
        cli="--host-timeout",
        maximum=DAY_S,
        metavar="SECONDS",
        help="with many hosts: how long one host may go without answering before it is "
        "reported unreachable and left behind (default: the pull limit plus the probe limit, "
        "or --wait if longer, plus 60)",
    )
    allocation: Allocation | None = _setting(  # noqa: RUF009 (a NamedTuple: immutable)
        None,
        kind="allocation",
        option=None,
        help="the Slurm job this pre-flight runs in (its GPUs are the default of gpus)",
    )
    json_path: str | None = _setting(
        None,
        kind="path",
        option="--llem-json",
        cli="--json",
        metavar="PATH",
        help="write the JSON report to PATH",
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _checked(f, getattr(self, f.name)))

    @property
    def images_to_check(self) -> tuple[str, ...]:
        """The images tier 2 checks: the named ones, else the probe image."""
        return self.images or (self.probe_image,)

    @property
    def host_timeout(self) -> float:
        """How long one fleet host may go without answering: ``host_timeout_s``, else long
        enough for the longest silence of a healthy host (a tier-1 wait, or an image pull
        then a probe) and its start."""
        if self.host_timeout_s is not None:
            return self.host_timeout_s
        return max(self.wait_s, self.pull_timeout_s + self.timeout_s) + HOST_TIMEOUT_MARGIN_S

    @property
    def launch_requests(self) -> tuple[tuple[str, str], ...]:
        """(image, GPU request label) of every container the probes stand in for: a study's,
        else each image checked with the GPUs of ``gpus`` (all when none)."""
        if self.requests:
            return self.requests
        from .domain.gpu_request import label_of

        label = label_of(self.gpus or None)
        return tuple((image, label) for image in self.images_to_check)

    @property
    def runner_kinds(self) -> frozenset[str]:
        """The runner kinds whose checks this session runs; ``cdi`` too when its containers'
        GPU requests go through CDI whatever the engine says (Podman, or ``gpu_request:
        cdi``). With ``auto``, the session adds it once the engine chose CDI."""
        if self.measurement_only:
            return frozenset({"local"})
        from .domain.engines import profile

        kinds = {self.engine, *(("local",) if self.local_runs else ())}
        if profile(self.engine).cdi_only or self.gpu_request == "cdi":
            kinds.add("cdi")
        return frozenset(kinds)

    def required_ids(self) -> list[str]:
        """Every built-in check these settings require, less the ones skipped."""
        from .domain.check_ids import required_ids

        if self.skipped_by:
            return []
        images = () if self.measurement_only else self.images_to_check
        requests = () if self.measurement_only else self.launch_requests
        return required_ids(self.runner_kinds, images, requests, self.skip)

    def replace(self, **changes: Any) -> PreflightSettings:
        return dataclasses.replace(self, **changes)

    def with_allocation(self, allocation: Allocation | None) -> PreflightSettings:
        """These settings inside a Slurm job, step or prolog: the GPUs to judge and request
        default to its allocation (host indices); GPUs named already (``--gpus``, a study's
        ``gpus:``, its launches) win. The job is remembered for the report either way."""
        if allocation is None:
            return self
        gpus = self.gpus or allocation.gpus
        return dataclasses.replace(self, gpus=gpus, allocation=allocation)

    # --- option values ------------------------------------------------------------------

    @classmethod
    def from_options(
        cls,
        values: Mapping[str, Any],
        below: PreflightSettings | None = None,
        *,
        named_by: Literal["option", "cli"] = "option",
    ) -> PreflightSettings:
        """Settings from parsed option values (pytest's ``dest`` -> value; None or empty =
        not given), each validated under the name its user typed (the pytest option, or
        `llem`'s flag); unset ones come from ``below``."""
        base = below or cls()
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.metadata["option"] is None:
                continue
            value = values.get(option_dest(f.metadata["option"]))
            if value is None or value == [] or value is False:
                continue
            kind = f.metadata["kind"]
            if kind == "ids":
                from .domain.check_ids import split_ids

                value = split_ids(value)
            elif kind == "indices":
                value = [part.strip() for v in value for part in v.split(",") if part.strip()]
            name = f.metadata[named_by] or f.metadata["option"]
            changes[f.name] = parse_value(f, value, name)
            if f.name == "skip":
                changes["skip_origin"] = name
        return dataclasses.replace(base, **changes)

    def with_study(self, docker: Mapping[str, Any]) -> PreflightSettings:
        """These settings under a study's validated ``docker:`` values (None = not set)."""
        changes = {
            f.name: docker[f.metadata["study"]]
            for f in dataclasses.fields(self)
            if f.metadata["study"] and docker.get(f.metadata["study"]) is not None
        }
        return dataclasses.replace(self, **changes)

    def _items(self) -> Iterator[tuple[dataclasses.Field[Any], Any]]:
        for f in dataclasses.fields(self):
            yield f, getattr(self, f.name)


def option_dest(option: str) -> str:
    """argparse's ``dest`` of a ``--long-option``."""
    return option.lstrip("-").replace("-", "_")


def setting_fields() -> tuple[dataclasses.Field[Any], ...]:
    """The settings a person sets by an option (the others come from a study)."""
    return tuple(f for f in dataclasses.fields(PreflightSettings) if f.metadata["option"])


def study_fields() -> Iterator[tuple[str, dataclasses.Field[Any]]]:
    """(key under ``docker:``, field) of each setting a study file may set."""
    for f in setting_fields():
        if f.metadata["study"]:
            yield f.metadata["study"], f


def parse_value(f: dataclasses.Field[Any], value: Any, name: str) -> Any:
    """``value`` (text from a command line, or a plain value) as field ``f`` holds it."""
    kind = f.metadata["kind"]
    if kind in ("seconds", "seconds_or_0") and isinstance(value, str):
        try:
            return _checked(f, float(value), name, shown=_short(value))
        except ValueError as exc:
            if isinstance(exc, SettingError):
                raise
            raise SettingError(f"{name}: expected a number of seconds, got {value!r}") from None
    return _checked(f, value, name)


def _checked(
    f: dataclasses.Field[Any], value: Any, name: str | None = None, shown: str | None = None
) -> Any:
    from .domain.imageref import image_ref_error

    name = name or f.metadata["option"] or f.name
    kind, maximum = f.metadata["kind"], f.metadata["maximum"]
    if kind in ("seconds", "seconds_or_0"):
        if value is None and f.default is None:  # not set: a default derived from others
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingError(f"{name}: expected a number of seconds, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        shown = shown or _short(value)
        if not math.isfinite(number):
            raise SettingError(f"{name}: should be a finite number, got {shown}")
        if kind == "seconds" and number <= 0:
            raise SettingError(f"{name}: should be greater than 0, got {shown}")
        if number < 0:
            raise SettingError(f"{name}: should be greater than or equal to 0, got {shown}")
        if maximum is not None and number > maximum:
            raise SettingError(f"{name}: should be less than or equal to {maximum:g}, got {shown}")
        return number
    if kind == "image":
        error = image_ref_error(value) if isinstance(value, str) else "expected an image"
        if error:
            raise SettingError(f"{name}: {error}")
        return value
    if kind == "images":
        images = tuple(dict.fromkeys(_strings(value, name)))
        for image in images:
            error = image_ref_error(image)
            if error:
                raise SettingError(f"{name}: {error}")
        return images
    if kind == "ids":
        return frozenset(_strings(value, name))
    if kind == "indices":
        return _indices(value, name)
    if kind == "flag":
        return bool(value)
    if kind == "requests":
        return _requests(value, name)
    if kind == "allocation":
        return _allocation(value, name)
    if kind == "choice":
        choices = f.metadata["choices"]
        if value not in choices:
            raise SettingError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
        return value
    if value is not None and (not isinstance(value, str) or not value or "\0" in value):
        raise SettingError(f"{name}: expected a path, got {value!r}")
    return value


def _indices(value: Any, name: str) -> tuple[int, ...]:
    """GPU indices: non-negative integers (digits from a command line), sorted, each once."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise SettingError(f"{name}: expected GPU indices (0, 1, ...), got {value!r}")
    found: set[int] = set()
    for item in value:
        number = item
        text = item.strip() if isinstance(item, str) else ""
        if text.isascii() and text.isdigit():  # not "²" or "١": int() takes some, not others
            number = int(text)
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise SettingError(f"{name}: expected GPU indices (0, 1, ...), got {item!r}")
        found.add(number)
    return tuple(sorted(found))


def _requests(value: Any, name: str) -> tuple[tuple[str, str], ...]:
    """(image, GPU request label) pairs, each once, in order."""
    from .domain.gpu_request import devices_of
    from .domain.imageref import image_ref_error

    pairs: list[tuple[str, str]] = []
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise SettingError(f"{name}: expected (image, GPU request) pairs, got {item!r}")
        image, label = item
        if not isinstance(image, str) or not isinstance(label, str):
            raise SettingError(f"{name}: expected (image, GPU request) pairs, got {item!r}")
        error = image_ref_error(image)
        if error:
            raise SettingError(f"{name}: {error}")
        try:
            devices_of(label)
        except ValueError as exc:
            raise SettingError(f"{name}: {exc}") from None
        pairs.append((image, label))
    return tuple(dict.fromkeys(pairs))


def _allocation(value: Any, name: str) -> Allocation | None:
    """A Slurm allocation, or its plain form (the list of its values that an xdist worker's
    copy of the settings holds)."""
    from .domain.allocation import Allocation

    if value is None or isinstance(value, Allocation):
        return value
    try:
        job_id, gpus, source, step_id, node, visible, note = value
    except (TypeError, ValueError):
        raise SettingError(f"{name}: expected a Slurm allocation, got {value!r}") from None
    texts = (job_id, source, step_id, node, note)
    if not all(isinstance(v, str) for v in texts) or not isinstance(visible, (str, type(None))):
        raise SettingError(f"{name}: expected a Slurm allocation, got {value!r}")
    return Allocation(job_id, _indices(gpus, name), source, step_id, node, visible, note)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _strings(value: Any, name: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise SettingError(f"{name}: expected a list of strings, got {value!r}")
    items = list(value)
    if not all(isinstance(item, str) for item in items):
        raise SettingError(f"{name}: expected a list of strings, got {items!r}")
    return items
