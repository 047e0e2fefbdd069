"""The check declarations (domain/check_ids.py) are what the session collects and runs: the
ids, tiers and parameters of the collected built-in items, and each declaration's verdict."""

from __future__ import annotations

import importlib

import pytest

from pytest_llem.collect import ITEM_KEY
from pytest_llem.domain.check_ids import BY_ID, CHECKS, MEASUREMENT_TIER
from pytest_llem.settings import PreflightSettings

CASES = [
    pytest.param([], PreflightSettings(), id="defaults"),
    pytest.param(
        ["--llem-image", "a/b:1", "--llem-image", "c/d:2", "--llem-gpus", "1,3"],
        PreflightSettings(images=("a/b:1", "c/d:2"), gpus=(1, 3)),
        id="images-and-gpus",
    ),
    pytest.param(
        ["--llem-measurement-only"], PreflightSettings(measurement_only=True), id="measurement"
    ),
    pytest.param(
        ["--llem-engine", "podman", "--llem-image", "a/b:1"],
        PreflightSettings(engine="podman", images=("a/b:1",)),
        id="podman",
    ),
    pytest.param(
        ["--llem-gpu-request", "cdi"], PreflightSettings(gpu_request="cdi"), id="docker-cdi"
    ),
    pytest.param(
        ["--llem-skip", "cuda-compat,gpu-in-container[a/b:1]", "--llem-image", "a/b:1"],
        PreflightSettings(
            images=("a/b:1",), skip=frozenset({"cuda-compat", "gpu-in-container[a/b:1]"})
        ),
        id="skips",
    ),
]


class Collected:
    def __init__(self) -> None:
        self.items: list[tuple[str, str, int]] = []

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.items = [item.stash[ITEM_KEY] for item in session.items]


@pytest.mark.usefixtures("bare_host")
@pytest.mark.parametrize(("args", "settings"), CASES)
def test_the_collected_checks_are_the_declared_ones(
    pytester: pytest.Pytester, args: list[str], settings: PreflightSettings
) -> None:
    seen = Collected()
    pytester.inline_run("--llem-preflight", "--co", *args, plugins=[seen])
    skip = settings.skip
    kept = [(cid, base, tier) for cid, base, tier in seen.items]
    # every declared check of the session's runner kinds is collected, with its declared
    # tier; what the person skipped is collected too, then reported as skipped
    assert [cid for cid, _, _ in kept] == settings.replace(skip=frozenset()).required_ids()
    for cid, base, tier in kept:
        assert BY_ID[base].tier == tier and cid.startswith(base)
    assert set(settings.required_ids()) <= {cid for cid, _, _ in kept}
    assert len(settings.required_ids()) < len(kept) or not skip


def test_every_declaration_has_its_verdict_and_its_check() -> None:
    import pytest_llem.checks as checks_package  # noqa: F401  (the built-in checks)

    from pytest_llem.collect import checks_dir

    marked: dict[str, int] = {}
    for path in sorted(checks_dir().glob("*_checks.py")):
        module = importlib.import_module(f"pytest_llem.checks.{path.stem}")
        for value in vars(module).values():
            for mark in getattr(value, "pytestmark", []):
                if mark.name == "preflight":
                    marked[mark.kwargs["id"]] = mark.kwargs["tier"]
    assert marked == {decl.id: decl.tier for decl in CHECKS}
    for decl in CHECKS:
        module, _, name = decl.verdict.partition(":")
        assert callable(getattr(importlib.import_module(f"pytest_llem.domain.{module}"), name))
        assert decl.tier == MEASUREMENT_TIER or "local" not in decl.runners
