"""Collecting the checks: the built-in ones from the installed package, and marked user items."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest

# (check id, base id, tier) and the place in the run of every kept item.
ITEM_KEY = pytest.StashKey[tuple[str, str, int]]()
ORDER_KEY = pytest.StashKey[int]()


@cache
def checks_dir() -> Path:
    """Where the built-in checks are, installed (`pytest_llem/checks`) or in a checkout."""
    spec = importlib.util.find_spec("pytest_llem.checks")
    if spec is not None and spec.origin is not None:
        return Path(spec.origin).resolve().parent
    return _checkout_checks()


def _checkout_checks() -> Path:
    """A checkout's `checks/`, made `pytest_llem.checks` (what installing maps it to): for a
    package imported from the checkout itself (`python -m pytest_llem` in its root)."""
    source = Path(__file__).resolve().parent.parent / "checks"
    init = source / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "pytest_llem.checks", init, submodule_search_locations=[str(source)]
    )
    if not init.is_file() or spec is None or spec.loader is None:
        raise pytest.UsageError(
            f"the built-in checks are missing: no pytest_llem.checks and no {source}; "
            "reinstall pytest-llem"
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules["pytest_llem.checks"] = module
    spec.loader.exec_module(module)
    return source


class ChecksDirectory(pytest.Directory):
    """The built-in checks, imported as modules of the installed package (never by path)."""

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        for path in sorted(self.path.glob("*.py")):
            if not path.name.startswith("_"):
                yield CheckModule.from_parent(self, path=path)


class WayToChecks(pytest.Directory):
    """A directory above the checks: its one child is the next directory towards them."""

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        child = self.path / checks_dir().relative_to(self.path).parts[0]
        node = self.ihook.pytest_collect_directory(path=child, parent=self)
        if node is not None:
            yield node


class CheckModule(pytest.Module):
    def _getobj(self) -> Any:
        return importlib.import_module(f"pytest_llem.checks.{self.path.stem}")


def directory_node(
    path: Path, parent: pytest.Collector, user_paths: Sequence[Path]
) -> pytest.Directory | None:
    """The collector of a directory on the way to the checks (None: pytest's own)."""
    target = checks_dir()
    if path == target:
        return ChecksDirectory.from_parent(parent, path=path)
    if path in target.parents and not any(p == path or path in p.parents for p in user_paths):
        # A directory pytest walks through to reach the checks: never list it (it may be
        # unreadable, and nothing else in it is ours to collect).
        return WayToChecks.from_parent(parent, path=path)
    return None


def ignored(path: Path, user_paths: Sequence[Path]) -> bool:
    """Whether pytest should not collect ``path``: neither the checks nor a user's path."""
    path = path.resolve()
    target = checks_dir()
    if path == target or path in target.parents:
        return False
    return not any(path == p or p in path.parents or path in p.parents for p in user_paths)


def marker_info(item: pytest.Item) -> tuple[str, int] | None:
    """(base id, tier) of a preflight-marked item, else None."""
    marker = item.get_closest_marker("preflight")
    if marker is None:
        return None
    tier = int(marker.kwargs.get("tier", marker.args[0] if marker.args else 1))
    base = marker.kwargs.get("id") or item.name.split("[")[0]
    for prefix in ("test_", "check_"):
        if base.startswith(prefix) and "id" not in marker.kwargs:
            base = base[len(prefix) :].replace("_", "-")
    return str(base), tier


def check_id(item: pytest.Item, base: str) -> str:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return base
    if "llem_image" in callspec.params:
        return f"{base}[{callspec.params['llem_image']}]"
    return f"{base}[{callspec.id}]"


def order_checks(
    items: list[pytest.Item], tiers: frozenset[int] | None = None
) -> list[pytest.Item]:
    """Keep the preflight-marked items (of ``tiers`` only, when given), sorted by (tier, base
    id), stably; return the rest.

    Each kept item is stamped with its id, tier and place (`ITEM_KEY`, `ORDER_KEY`).
    """
    keep: list[tuple[tuple[int, str, int], pytest.Item]] = []
    dropped: list[pytest.Item] = []
    for index, item in enumerate(items):
        info = marker_info(item)
        if info is None:
            dropped.append(item)
            continue
        base, tier = info
        if tiers is not None and tier not in tiers:
            dropped.append(item)
            continue
        item.stash[ITEM_KEY] = (check_id(item, base), base, tier)
        keep.append(((tier, base, index), item))
    keep.sort(key=lambda pair: pair[0])
    items[:] = [item for _, item in keep]
    for order, item in enumerate(items):
        item.stash[ORDER_KEY] = order
    return dropped


def of_other_kinds(items: Sequence[pytest.Item], kinds: frozenset[str]) -> list[pytest.Item]:
    """The built-in checks among ``items`` that guard none of the runner ``kinds`` of the
    session: another engine's, or the CDI spec's where no GPU request goes through CDI."""
    from .domain.check_ids import BY_ID

    target = checks_dir()
    found = []
    for item in items:
        info = marker_info(item) if item.path.parent == target else None
        if info is not None and info[0] in BY_ID and not BY_ID[info[0]].runners & kinds:
            found.append(item)
    return found
