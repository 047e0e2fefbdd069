"""The pre-flight's head start: what `llem` begins before it knows for sure it will need it.

The read-only host queries start before the arguments are even parsed; the study's image
inspects and, where the facts allow, its GPU probes start while pydantic and pytest load. The
pre-flight adopts a piece of this work only when it asks for the very same thing; what is not
adopted is ended at exit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from .run.plans import Plan


def start_host_queries(args: Sequence[str]) -> None:
    """Before the arguments are even parsed: the host queries of a pre-flight that will
    likely run start now (read-only; a wrong guess only leaves an answer unused)."""
    if args[:1] not in (["run"], ["preflight"]):
        return
    if any(a in ("-h", "--help") or a.startswith("--skip") for a in args):
        return  # (argparse takes "--skip" for --skip-preflight too)
    from .defaults import HOST_COMMAND_TIMEOUT_S
    from .host import prefetch

    prefetch.start_host(HOST_COMMAND_TIMEOUT_S)


def start_study_work(args: argparse.Namespace, plan: Plan | None) -> None:
    """The work on the study's images starts now: it runs while pydantic and pytest load.

    A remembered plan says exactly which images and limits the pre-flight will have; else a
    cheap look at the study file guesses them.
    """
    from .defaults import HOST_COMMAND_TIMEOUT_S
    from .host import prefetch

    if plan is not None:
        if plan.docker and plan.skip_warning is None:
            prefetch.start_preflight(plan.images, HOST_COMMAND_TIMEOUT_S)
            _start_early(
                plan.images, timeout_s=plan.timeout_s, pull_timeout_s=plan.pull_timeout_s,
                cache_s=plan.cache_s,
            )  # fmt: skip
        return
    from .hint import StudyHint, read_hint

    study = getattr(args, "config", None)
    hint = read_hint(study) if study else StudyHint()
    prefetch.start_preflight(hint.images, HOST_COMMAND_TIMEOUT_S)
    overridden = args.command == "run" and (
        args.runner or any(name.startswith("LLEM_RUNNER_") for name in os.environ)
    )
    # Only where the file alone says which images will run:
    if args.command == "run" and args.model is None and not overridden and not hint.skip_preflight:
        _start_early(
            hint.images, timeout_s=hint.probe_timeout_s, pull_timeout_s=hint.pull_timeout_s,
            cache_s=hint.probe_cache_s,
        )  # fmt: skip


def _start_early(
    images: Sequence[str],
    timeout_s: float | None,
    pull_timeout_s: float | None,
    cache_s: float | None,
) -> None:
    """Start the pre-flight of a study's images while the study is validated.

    Only for a local daemon (a remote one is refused for dispatch); the pre-flight adopts this
    work only if the validated study asks for exactly these images and limits, and whatever
    is not adopted is ended at exit.
    """
    from .facts import start_early
    from .host.docker import daemon_endpoint
    from .settings import Settings

    if images and not daemon_endpoint().remote:
        start_early(
            Settings.of(images, timeout_s=timeout_s, pull_timeout_s=pull_timeout_s, cache_s=cache_s)
        )
