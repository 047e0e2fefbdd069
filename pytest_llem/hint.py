"""A cheap first look at a study file, before it is validated: what the pre-flight will need.

`llem run` uses it to start the pre-flight's work while pydantic and pytest load. It is only a
hint: the validated study decides, and work started for a wrong hint is simply not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StudyHint:
    images: tuple[str, ...] = ()
    skip_preflight: bool = False
    probe_timeout_s: float | None = None
    pull_timeout_s: float | None = None
    probe_cache_s: float | None = None


def read_hint(study_path: str) -> StudyHint:
    """The images and pre-flight settings a study file names (an empty hint if unreadable)."""
    try:
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        with open(study_path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=loader)
    except Exception:
        return StudyHint()
    if not isinstance(data, dict):
        return StudyHint()
    execution, docker = _section(data, "execution"), _section(data, "docker")
    experiments = data.get("experiments")
    experiments = (
        [e for e in experiments if isinstance(e, dict)] if isinstance(experiments, list) else []
    )
    used = {e.get("backend") for e in experiments}  # images of unused backends never run
    names: list[object] = [e.get("image") for e in experiments]
    runners = data.get("runners")
    if isinstance(runners, dict):
        names += [
            v[len("docker:") :]
            for k, v in runners.items()
            if k in used and isinstance(v, str) and v.startswith("docker:")
        ]
    if isinstance(docker.get("images"), dict):
        names += [v for k, v in docker["images"].items() if k in used]
    from .domain.imageref import is_image_ref

    def number(value: object) -> float | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else None  # type: ignore[arg-type]

    return StudyHint(
        images=tuple(n for n in dict.fromkeys(names) if isinstance(n, str) and is_image_ref(n)),
        skip_preflight=execution.get("skip_preflight") is True
        or docker.get("skip_preflight") is True,
        probe_timeout_s=number(docker.get("probe_timeout_s")),
        pull_timeout_s=number(docker.get("pull_timeout_s")),
        probe_cache_s=number(docker.get("probe_cache_s")),
    )


def _section(data: dict[Any, Any], key: str) -> dict[Any, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}
