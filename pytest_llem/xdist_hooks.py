"""pytest-xdist support: every pre-flight item goes to one worker, in order, so gating holds."""

from __future__ import annotations

from typing import Any

import pytest


class XdistHooks:
    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        from xdist.scheduler import LoadScopeScheduling

        class OneScopeScheduling(LoadScopeScheduling):  # type: ignore[misc]
            """A single scope: tiers run in order on one worker, probes run in parallel there."""

            def _split_scope(self, nodeid: str) -> str:
                return "llem-preflight"

        return OneScopeScheduling(config, log)
