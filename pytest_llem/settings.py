"""Settings of one pre-flight session, read once from pytest's options."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .defaults import (
    DEFAULT_CACHE_S,
    DEFAULT_PROBE_IMAGE,
    DEFAULT_PROBE_TIMEOUT_S,
    DEFAULT_PULL_TIMEOUT_S,
    HOST_COMMAND_TIMEOUT_S,
)

if TYPE_CHECKING:
    import pytest


@dataclass(frozen=True)
class Settings:
    images: tuple[str, ...] = (DEFAULT_PROBE_IMAGE,)
    skip: frozenset[str] = frozenset()
    timeout_s: float = DEFAULT_PROBE_TIMEOUT_S
    pull_timeout_s: float = DEFAULT_PULL_TIMEOUT_S
    cache_s: float = DEFAULT_CACHE_S
    no_cache: bool = False
    json_path: str | None = None
    host_timeout_s: float = HOST_COMMAND_TIMEOUT_S

    def same_facts(self, other: Settings) -> bool:
        """Whether facts gathered for ``other`` answer for these settings too."""
        fields = ("images", "timeout_s", "pull_timeout_s", "cache_s", "no_cache", "host_timeout_s")
        return all(getattr(self, f) == getattr(other, f) for f in fields)

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        opt = config.option
        images: list[str] = list(opt.llem_image or [])
        timeout_s, pull_s, cache_s = opt.llem_timeout, opt.llem_pull_timeout, opt.llem_cache_s
        if opt.llem_config:
            from .errors import ConfigError
            from .run.runners import preflight_settings_from_study

            try:
                study = preflight_settings_from_study(opt.llem_config)
            except ConfigError as exc:
                import pytest

                raise pytest.UsageError(f"--llem-config: {exc}") from None
            images = images or list(study.images)
            timeout_s = timeout_s if timeout_s is not None else study.timeout_s
            pull_s = pull_s if pull_s is not None else study.pull_timeout_s
            cache_s = cache_s if cache_s is not None else study.cache_s
        skip = frozenset(
            part.strip()
            for value in (opt.llem_skip or [])
            for part in value.split(",")
            if part.strip()
        )
        return cls.of(
            images,
            timeout_s=timeout_s,
            pull_timeout_s=pull_s,
            cache_s=cache_s,
            no_cache=bool(opt.llem_no_cache),
            skip=skip,
            json_path=opt.llem_json,
        )

    @classmethod
    def of(
        cls,
        images: Sequence[str],
        *,
        timeout_s: float | None = None,
        pull_timeout_s: float | None = None,
        cache_s: float | None = None,
        no_cache: bool = False,
        skip: frozenset[str] = frozenset(),
        json_path: str | None = None,
    ) -> Settings:
        """Settings where an unset limit takes its default, and no image means the probe image."""

        def limit(value: float | None, default: float) -> float:
            return default if value is None else float(value)

        return cls(
            images=tuple(dict.fromkeys(images)) or (DEFAULT_PROBE_IMAGE,),
            skip=skip,
            timeout_s=limit(timeout_s, DEFAULT_PROBE_TIMEOUT_S),
            pull_timeout_s=limit(pull_timeout_s, DEFAULT_PULL_TIMEOUT_S),
            cache_s=limit(cache_s, DEFAULT_CACHE_S),
            no_cache=no_cache,
            json_path=json_path,
        )
