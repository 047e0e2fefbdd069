"""CheckContext: what a check sees — the session's facts and a way to state its verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .checking import CheckFailed, CheckWarned, NotRun

if TYPE_CHECKING:
    from .domain.records import HostFacts, ImageFacts, ProbeFacts
    from .domain.report import CheckResult
    from .session import Session
    from .settings import PreflightSettings

VERDICT_KEY = pytest.StashKey["CheckResult"]()


class CheckContext:
    """The `llem` fixture: host, image and probe facts, gathered once per session."""

    __slots__ = ("_item", "_session")

    def __init__(self, session: Session, item: pytest.Item) -> None:
        self._session = session
        self._item = item

    @property
    def settings(self) -> PreflightSettings:
        return self._session.settings

    @property
    def host(self) -> HostFacts:
        return self._session.facts.host()

    @property
    def access_host(self) -> HostFacts:
        """`host`, with the path the session's GPU requests take (`--gpus` or CDI) and what
        the engine and its CDI specs say of it."""
        facts = self._session.facts
        return facts.with_access(facts.host())

    def label(self, request: str) -> str:
        """The GPU request ``request`` (``all``, ``device=1``) as the session makes it:
        ``--gpus``, or CDI devices (``cdi:1``)."""
        return self._session.facts.label(request)

    @property
    def measured_host(self) -> HostFacts:
        """The host facts the measurement checks judge: this machine's `nvidia-smi -q` even
        when the daemon is remote, if only local experiments run (`local`)."""
        return self._session.facts.measured_host()

    @property
    def local(self) -> bool:
        """Whether some experiments run as processes here: this machine's GPUs are measured
        even when the daemon is remote."""
        settings = self._session.settings
        return settings.measurement_only or settings.local_runs

    def image(self, image: str) -> ImageFacts:
        return self._session.facts.image(image)

    def probe(self, image: str, request: str | None = None) -> ProbeFacts | None:
        """The probe of ``image`` making GPU request ``request`` (`domain.gpu_request`; by
        default the first one an experiment of that image makes)."""
        if request is None:
            requests = [r for i, r in self.settings.launch_requests if i == image]
            request = requests[0] if requests else "all"
        return self._session.facts.probe(image, request, self._session.probe_eligible)

    def probed_driver(self, judged: str) -> str | None:
        """The driver a probe of another image saw, for a daemon whose host driver is unknown."""
        return self._session.facts.probe_driver(judged)

    def driver_without_requirements(self, image: str) -> str | None:
        """The driver a container of ``image`` sees with the NVIDIA hook's requirement check
        off: the remote daemon's driver, when that hook refused the image's probe."""
        return self._session.facts.driver_without_requirements(image)

    def compute_capability(self) -> str | None:
        """Compute capability of the host's first GPU ("9.0"), None when unknown."""
        return self._session.facts.compute_capability()

    def failed(self, check_id: str) -> bool:
        return self._session.outcome(check_id) == "failed"

    def expect(self, verdict: CheckResult) -> None:
        """End the check as the verdict says."""
        self._item.stash[VERDICT_KEY] = verdict
        if verdict.outcome == "failed" and verdict.finding:
            raise CheckFailed(verdict)
        if verdict.outcome == "warning" and verdict.finding:
            raise CheckWarned(verdict)
        if verdict.outcome == "not-run":
            raise NotRun(verdict.reason)
        if verdict.outcome == "skipped":
            pytest.skip(verdict.reason)
