"""CheckContext: what a check sees — the session's facts and a way to state its verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .checking import CheckFailed, CheckWarned, NotRun

if TYPE_CHECKING:
    from .domain.records import HostFacts, ImageFacts, ProbeFacts
    from .domain.verdicts import Verdict
    from .runtime import Preflight
    from .settings import Settings

VERDICT_KEY = pytest.StashKey["Verdict"]()


class CheckContext:
    __slots__ = ("_item", "_preflight")

    def __init__(self, preflight: Preflight, item: pytest.Item) -> None:
        self._preflight = preflight
        self._item = item

    @property
    def settings(self) -> Settings:
        return self._preflight.settings

    @property
    def host(self) -> HostFacts:
        return self._preflight.facts.host()

    def image(self, image: str) -> ImageFacts:
        return self._preflight.facts.image(image)

    def probe(self, image: str) -> ProbeFacts | None:
        return self._preflight.facts.probe(image, self._preflight.probe_eligible)

    def probed_driver(self, judged: str) -> str | None:
        """The driver a probe of another image saw, for a daemon whose host driver is unknown."""
        return self._preflight.facts.probe_driver(judged)

    def compute_capability(self) -> str | None:
        """Compute capability of the host's first GPU ("9.0"), None when unknown."""
        return self._preflight.facts.compute_capability()

    def failed(self, check_id: str) -> bool:
        return self._preflight.outcomes.outcome(check_id) == "failed"

    def expect(self, verdict: Verdict) -> None:
        """End the check as the verdict says."""
        self._item.stash[VERDICT_KEY] = verdict
        if verdict.outcome == "failed" and verdict.finding:
            raise CheckFailed(verdict.finding)
        if verdict.outcome == "warning" and verdict.finding:
            raise CheckWarned(verdict.finding)
        if verdict.outcome == "not-run":
            raise NotRun(verdict.reason)
        if verdict.outcome == "skipped":
            pytest.skip(verdict.reason)
