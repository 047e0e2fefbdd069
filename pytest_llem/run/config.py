"""The study file, the user's defaults, and their validation (DESIGN §7).

Every problem becomes a ``ConfigError`` with one line naming the file and the field path.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from ..domain.imageref import image_ref_error
from ..errors import ConfigError
from ..host.paths import user_config_path
from ..host.study_file import command_dir, read_bytes
from ..settings import PreflightSettings, study_fields
from .names import EXPERIMENT_ID_PATTERN, study_name_problem
from .runner_kinds import parse_runner
from .yaml_file import kind_of, one_line, parse_mapping

BACKENDS: frozenset[str] = frozenset({"pytorch", "vllm", "tensorrt"})
DEFAULT_STUDY_NAME = "llem"
RunnerMode = str  # a runner kind's name (run/runner_kinds.py)


def known_backends() -> str:
    return ", ".join(sorted(BACKENDS))


def _backend(value: str) -> str:
    if value not in BACKENDS:
        raise ValueError(f"unknown backend {value!r} (known backends: {known_backends()})")
    return value


def _runner(value: str) -> str:
    parse_runner(value)
    return value


def _image(value: str) -> str:
    error = image_ref_error(value)
    if error is not None:
        raise ValueError(error)
    return value


def _int_to_str(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _plain_data(value: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(value, default=str)
    except (ValueError, RecursionError) as exc:
        raise ValueError("must be plain data without cyclic references") from exc
    return value


def _check_ids(value: list[str]) -> list[str]:
    from ..domain.check_ids import BUILTIN_IDS, unknown_check_ids

    unknown = unknown_check_ids(value)
    if unknown:
        raise ValueError(
            f"unknown check id {unknown[0]!r} (valid ids: all, {', '.join(BUILTIN_IDS)}, "
            "or cuda-compat[IMAGE] / gpu-in-container[IMAGE])"
        )
    return value


class _BadText(ValueError):
    """A string that cannot reach a command line, an environment or a file name; ``where``
    is its place inside the field (list positions, mapping keys)."""

    def __init__(self, problem: str, where: tuple[str, ...]) -> None:
        super().__init__(problem)
        self.where = where


def _text_problem(text: str) -> str | None:
    if "\0" in text:
        return "contains a NUL byte"
    if any("\ud800" <= c <= "\udfff" for c in text):  # undecodable bytes (surrogateescape)
        return "contains bytes that are not valid UTF-8"
    return None


def _check_text(value: object, where: tuple[str, ...] = ()) -> None:
    """Raise `_BadText` for the first string in ``value`` (keys included) with a NUL byte or
    undecodable bytes: none can become an argument, an environment value or a file name."""
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem is not None:
            raise _BadText(problem, where)
    elif isinstance(value, (list, tuple)):
        for n, item in enumerate(value):
            _check_text(item, (*where, str(n)))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and _text_problem(key) is not None:
                raise _BadText(f"key {key!r} {_text_problem(key)}", where)
            _check_text(item, (*where, str(key)))


def _study_name(value: str) -> str:
    problem = study_name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _unique_gpus(value: list[int]) -> list[int]:
    duplicates = sorted({i for i in value if value.count(i) > 1})
    if duplicates:
        raise ValueError(f"GPU {duplicates[0]} is listed twice")
    return value


Backend = Annotated[str, AfterValidator(_backend)]
CheckIds = Annotated[list[Annotated[str, Field(min_length=1)]], AfterValidator(_check_ids)]
# GPU indices as nvidia-smi numbers them; at least one (omit the key for all GPUs).
GpuIndices = Annotated[
    list[Annotated[int, Field(ge=0)]], Field(min_length=1), AfterValidator(_unique_gpus)
]
Runner = Annotated[str, AfterValidator(_runner)]
ImageRef = Annotated[str, AfterValidator(_image)]
NonEmpty = Annotated[str, Field(min_length=1)]
ExperimentId = Annotated[str, BeforeValidator(_int_to_str), Field(pattern=EXPERIMENT_ID_PATTERN)]
StudyName = Annotated[str, Field(min_length=1), AfterValidator(_study_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _plain_text(cls, value: Any) -> Any:
        """No string of a study holds a NUL byte or undecodable bytes (`_check_text`)."""
        _check_text(value)
        return value


def _time_limit(value: str) -> str:
    from ..domain.slurm import TIME_LIMIT

    if not TIME_LIMIT.match(value):
        raise ValueError(
            f"invalid time limit {value!r} (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, "
            "D-HH:MM:SS or UNLIMITED, as sbatch --time takes it)"
        )
    return value


TimeLimit = Annotated[str, BeforeValidator(_int_to_str), AfterValidator(_time_limit)]


class SlurmExecution(_Model):
    """``execution.slurm``: how `llem run --slurm` submits each experiment as a job."""

    partition: NonEmpty | None = None  # None: the cluster's default partition
    gpus_per_experiment: Annotated[int, Field(ge=0, le=64)] = 1
    time_limit: TimeLimit | None = None  # sbatch --time; None: the partition's default
    extra_args: list[NonEmpty] = Field(default_factory=list)  # more sbatch arguments


def _attest_interval(value: float) -> float:
    if not (value == 0 or 0.1 <= value <= 3600):
        raise ValueError("must be 0 (before and after only) or from 0.1 to 3600 seconds")
    return value


class Execution(_Model):
    skip_preflight: bool | None = None
    skip_checks: CheckIds = Field(default_factory=list)  # check ids not to run
    # An experiment still running after this many seconds is stopped (None: no limit).
    experiment_timeout_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    slurm: SlurmExecution = Field(default_factory=SlurmExecution)
    # The attestation of each experiment's measurement window (run/attest.py).
    attest: bool = True
    attest_interval_s: Annotated[float, AfterValidator(_attest_interval)] = 5.0
    require_clean: bool = False  # a suspect experiment counts as failed


class _DockerBase(_Model):
    """Docker settings a user may also set once in their own config file.

    Besides ``images``, its keys are the pre-flight settings a study may set: they come from
    `PreflightSettings` (see `study_fields`), with its limits; unset keys stay None.
    """

    images: dict[Backend, ImageRef] = Field(default_factory=dict)

    def preflight_settings(self) -> PreflightSettings:
        """The built-in settings under what this section sets."""
        return PreflightSettings().with_study(self.model_dump())


def _study_type(kind: str, maximum: float | None, choices: tuple[str, ...] = ()) -> Any:
    """The study-file type of a setting of ``kind``: pydantic states its limits."""
    if kind == "image":
        return ImageRef
    if kind == "choice":
        return typing.Literal[choices]
    low = {"gt": 0} if kind == "seconds" else {"ge": 0}
    return Annotated[float, Field(le=maximum, allow_inf_nan=False, **low)]  # type: ignore[call-overload]


_SETTING_KEYS: dict[str, Any] = {
    key: (
        _study_type(f.metadata["kind"], f.metadata["maximum"], f.metadata["choices"]) | None,
        None,
    )
    for key, f in study_fields()
}

if TYPE_CHECKING:
    DockerDefaults = _DockerBase

    class DockerSettings(_DockerBase):
        skip_preflight: bool | None = None

else:
    DockerDefaults = create_model("DockerDefaults", __base__=_DockerBase, **_SETTING_KEYS)
    DockerSettings = create_model(
        "DockerSettings", __base__=DockerDefaults, skip_preflight=(bool | None, None)
    )


class Experiment(_Model):
    model: NonEmpty
    backend: Backend
    id: ExperimentId | None = None
    command: list[NonEmpty] | None = Field(default=None, min_length=1)
    image: ImageRef | None = None
    gpus: GpuIndices | None = None  # None: the study's gpus, else all GPUs
    params: Annotated[dict[str, Any], AfterValidator(_plain_data)] = Field(default_factory=dict)


class UserConfig(_Model):
    """``$XDG_CONFIG_HOME/llenergymeasure/config.yaml``: defaults below the study file."""

    runners: dict[Backend, Runner] = Field(default_factory=dict)
    docker: DockerDefaults = Field(default_factory=DockerDefaults)


class StudyConfig(_Model):
    name: StudyName = DEFAULT_STUDY_NAME
    execution: Execution = Field(default_factory=Execution)
    runners: dict[Backend, Runner] = Field(default_factory=dict)
    docker: DockerSettings = Field(default_factory=DockerSettings)
    gpus: GpuIndices | None = None  # None: all GPUs
    experiments: list[Experiment] = Field(default_factory=list)

    _path: Path | None = PrivateAttr(default=None)
    _workdir: Path | None = PrivateAttr(default=None)
    _user: UserConfig = PrivateAttr(default_factory=UserConfig)

    @model_validator(mode="after")
    def _consistent(self) -> StudyConfig:
        skips = (self.execution.skip_preflight, self.docker.skip_preflight)
        if None not in skips and skips[0] != skips[1]:
            raise ValueError("execution.skip_preflight and docker.skip_preflight disagree")
        first: dict[str, int] = {}
        for n, (exp_id, _) in enumerate(self.numbered()):
            if exp_id in first:  # one id, one set of files in RUN_DIR: the second would overwrite
                raise ValueError(
                    f"duplicate experiment id {exp_id!r}: {self._which(first[exp_id])} and "
                    f"{self._which(n)}"
                )
            first[exp_id] = n
        return self

    def _which(self, index: int) -> str:
        """``experiments.N (model, id: X)`` or ``... numbered X by its position``."""
        e = self.experiments[index]
        how = f"id: {e.id}" if e.id is not None else f"numbered {index + 1:03d} by its position"
        return f"experiments.{index} ({e.model}, {how})"

    @property
    def path(self) -> Path | None:
        """The study file, or None for a study built in code or on the command line."""
        return self._path

    @property
    def workdir(self) -> Path:
        """Where its local commands run: the study file's directory, or the current one for a
        study read from a pipe or a terminal (/dev/stdin) or built in code."""
        return self._workdir if self._workdir is not None else Path.cwd()

    @property
    def user(self) -> UserConfig:
        """The user's defaults this study was loaded with (their runners rank below the study's)."""
        return self._user

    @property
    def origin(self) -> str:
        return str(self._path) if self._path is not None else "the study"

    def skip_preflight_setting(self) -> tuple[bool, str] | None:
        """(skip, where it is set) from the study file, or None when it says nothing."""
        for section, value in (
            ("execution", self.execution.skip_preflight),
            ("docker", self.docker.skip_preflight),
        ):
            if value is not None:
                return value, f"{section}.skip_preflight in {self.origin}"
        return None

    def gpus_of(self, experiment: Experiment) -> list[int] | None:
        """The GPU indices ``experiment`` runs on: its own ``gpus:``, else the study's; None
        for all of them."""
        return experiment.gpus if experiment.gpus is not None else self.gpus

    def used_gpus(self) -> tuple[int, ...]:
        """Every GPU some experiment runs on, sorted; empty when one of them uses all."""
        chosen = [self.gpus_of(e) for e in self.experiments] or [self.gpus]
        if any(g is None for g in chosen):
            return ()
        return tuple(sorted({i for g in chosen for i in g or ()}))

    def numbered(self) -> list[tuple[str, Experiment]]:
        """(id, experiment): the ``id:``, else the position (``001``, ``002``, ...)."""
        return [(e.id or f"{n:03d}", e) for n, e in enumerate(self.experiments, 1)]


# ---- reading files ----------------------------------------------------------------------------


def load_user_config(env: Mapping[str, str] | None = None) -> UserConfig:
    path = user_config_path(env)
    if not path.exists():
        return UserConfig()
    return _validate(UserConfig, parse_mapping(read_bytes(path), str(path)), str(path))


def load_study(
    path: str | Path, *, env: Mapping[str, str] | None = None, data: bytes | None = None
) -> StudyConfig:
    """Validate a study file, with the user's defaults merged below it.

    ``data`` are the file's bytes when the caller read them already: they are what is
    validated (the file is read only when they are not given, and then only once).
    """
    path = Path(path)
    mapping = parse_mapping(read_bytes(path) if data is None else data, str(path))
    mapping.setdefault("name", path.stem or DEFAULT_STUDY_NAME)
    study = _validate(StudyConfig, mapping, str(path))
    study = with_user_defaults(study, load_user_config(env), path)
    study._workdir = command_dir(path) or Path.cwd()
    return study


def with_user_defaults(
    study: StudyConfig, user: UserConfig, path: Path | None = None
) -> StudyConfig:
    """The study with ``user``'s Docker settings under its own; runners keep their sources."""
    own = study.docker
    update: dict[str, Any] = {
        name: getattr(user.docker, name)
        for name in user.docker.model_fields_set - own.model_fields_set
    }
    update["images"] = {**user.docker.images, **own.images}
    merged = study.model_copy(update={"docker": own.model_copy(update=update)})
    merged._path = path if path is not None else study.path
    merged._workdir = study._workdir
    merged._user = user
    return merged


def single_experiment(
    study: StudyConfig, model: str, backend: str, command: list[str] | None = None
) -> StudyConfig:
    """The study with one experiment given on the command line instead of its own."""
    if not model:
        raise ConfigError("--model: must not be empty")
    if backend not in BACKENDS:
        raise ConfigError(
            f"--backend: unknown backend {backend!r} (known backends: {known_backends()})"
        )
    if command is not None and (not command or not all(command)):
        raise ConfigError("the command after '--' must not be empty")
    try:
        experiment = Experiment(model=model, backend=backend, command=command)
    except ValidationError as exc:
        raise ConfigError(one_line(_on_the_command_line(exc))) from None
    return study.model_copy(update={"experiments": [experiment]})


_FLAGS = {"model": "--model", "backend": "--backend", "command": "the command after '--'"}


def _on_the_command_line(exc: ValidationError) -> str:
    """The first problem of an experiment given with --model/--backend, named by its flag."""
    path, _, problem = _one(exc.errors(include_url=False)[0], Experiment).partition(": ")
    field = path.split(".")[0]
    return f"{_FLAGS.get(field, field)}: {problem}"


# ---- error messages -------------------------------------------------------------------------

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}
_MAX_ERRORS = 3

_M = typing.TypeVar("_M", bound=BaseModel)


def _validate(model: type[_M], data: dict[str, Any], origin: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {one_line(describe(exc, model))}") from None
    except RecursionError:
        raise ConfigError(f"{origin}: nested too deeply") from None


def describe(exc: ValidationError, model: type[BaseModel]) -> str:
    """All of a validation error on one line: ``path: problem; path: problem``."""
    errors = exc.errors(include_url=False)
    parts = [_one(error, model) for error in errors[:_MAX_ERRORS]]
    more = len(errors) - _MAX_ERRORS
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _one(error: Any, model: type[BaseModel]) -> str:
    loc = [str(p) for p in error["loc"] if p != "[key]"]
    kind, value = error["type"], error.get("input")
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, _BadText):
        loc += cause.where
    if kind == "extra_forbidden":
        problem = "unknown key" + _suggestion(model, error["loc"])
    elif kind == "missing":
        problem = "missing required key"
    elif kind == "invalid_key":
        problem = "keys must be strings"
    elif kind == "string_unicode":
        problem = "contains bytes that are not valid UTF-8"
    elif kind in _EXPECTED:
        problem = f"expected {_EXPECTED[kind]}, got {kind_of(value)}"
    elif kind in ("value_error", "assertion_error"):
        problem = str(error["ctx"]["error"])
    elif kind == "string_pattern_mismatch":
        problem = f"invalid value {value!r} (letters, digits, '_', '.', '-'; up to 64)"
    elif kind in ("too_short", "string_too_short"):
        problem = "must not be empty"
    else:
        problem = str(error["msg"]).replace("Input should be", "should be")
        problem = f"{problem}, got {_short(value)}"
    path = ".".join(loc)
    return f"{path}: {problem}" if path else problem


def _suggestion(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """`` (did you mean 'model'?)`` from the field names of the model that holds the key."""
    tp: Any = model
    for part in loc[:-1]:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            tp = _unwrap(field.annotation) if field else None
        else:
            args = typing.get_args(tp)
            tp = _unwrap(args[-1]) if args else None
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(tp.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unwrap(tp: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> ``X``."""
    while True:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is Annotated:
            tp = args[0]
        elif origin in (typing.Union, types.UnionType):
            tp = next(a for a in args if a is not type(None))
        else:
            return tp


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
