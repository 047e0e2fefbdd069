"""The package's shape: no import cycle, pure logic in domain/, subprocesses only in host/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest_llem

PACKAGE = Path(pytest_llem.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def _imports(name: str) -> set[str]:
    """Every pytest_llem module ``name`` imports, at any depth of its code, except in
    ``if TYPE_CHECKING:`` blocks."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in GRAPH[v]:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            connect(v)
    return found


def test_the_graph_sees_the_imports_it_should() -> None:
    """The graph is real: known edges are found, lazy (in-function) imports included."""
    assert "pytest_llem.settings" in GRAPH["pytest_llem.plugin"]
    assert "pytest_llem.session" in GRAPH["pytest_llem.plugin"]  # imported in a function
    assert "pytest_llem.domain.records" in GRAPH["pytest_llem.host.docker"]
    assert "pytest_llem.domain" not in GRAPH["pytest_llem.plugin"]


def test_no_import_cycle() -> None:
    assert _cycles() == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    GRAPH["pytest_llem.domain.records"].add("pytest_llem.host.docker")
    try:
        cycles = _cycles()
        assert any(
            {"pytest_llem.domain.records", "pytest_llem.host.docker"} <= set(c) for c in cycles
        )
    finally:
        GRAPH["pytest_llem.domain.records"].discard("pytest_llem.host.docker")


def test_domain_is_pure() -> None:
    """domain/ imports no other layer of the package, and nothing that touches the world."""
    for name, imported in GRAPH.items():
        if name.startswith("pytest_llem.domain."):
            assert all(m.startswith("pytest_llem.domain") for m in imported), (name, imported)
            source = MODULES[name].read_text()
            for word in ("subprocess", "import os\n", "open("):
                assert word not in source, (name, word)


def test_only_host_adapters_run_subprocesses() -> None:
    users = {name for name, path in MODULES.items() if "import subprocess" in path.read_text()}
    assert users == {
        "pytest_llem.host.proc",
        "pytest_llem.host.workloads",
        "pytest_llem.host.containers",
    }


def test_a_setting_default_is_defined_once() -> None:
    """The probe image's name, a default, stands in `settings.py` alone."""
    holders = {n for n, p in MODULES.items() if "nvidia/cuda:12.0.0-base" in p.read_text()}
    assert holders == {"pytest_llem.settings"}


def test_the_first_host_queries_start_before_the_heavy_modules_load() -> None:
    """`llem` starts `docker version` and `nvidia-smi -q` from `Facts.start_host` right after
    the interpreter starts: what that takes may not pull in the records (dataclasses and
    `inspect`), the settings, the thread pool, pathlib or pytest, which load while the
    queries run. A top-level import of any of them here costs every pre-flight its time."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import pytest_llem.cli, pytest_llem.signals, pytest_llem.facts\n"
        "heavy = ['dataclasses', 'pathlib', 'concurrent.futures', 'pytest', 'pydantic',\n"
        "         'yaml', 'pytest_llem.domain.records', 'pytest_llem.settings', 'json']\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(PACKAGE.parent)},
        check=True,
    )
    assert result.stdout.split() == []


def test_every_test_module_has_a_basename_of_its_own() -> None:
    """The suites are collected together (rootdir-relative imports by basename): two test
    modules of one name in different folders make one of them an import error."""
    tests = PACKAGE.parent / "tests"
    names: dict[str, list[str]] = {}
    for path in tests.rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(tests)))
    assert {name: where for name, where in names.items() if len(where) > 1} == {}


# Where an engine's name may be compared: its profile and its adapter (the classifier reads
# the engines' own messages, which name them).
ENGINE_NAMED_IN = {
    "pytest_llem.domain.engines",
    "pytest_llem.host.engines",
    "pytest_llem.domain.diagnosis",  # ("podman" in an error message)
}


def _engine_comparisons(tree: ast.AST) -> list[int]:
    """Lines that compare something with the string "docker" or "podman"."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            named = [
                o for o in operands
                if isinstance(o, ast.Constant) and o.value in ("docker", "podman")
            ]  # fmt: skip
            if named:
                lines.append(node.lineno)
    return lines


def test_no_engine_is_chosen_by_its_name_outside_its_profile_and_adapter() -> None:
    found = {
        name: lines
        for name, path in MODULES.items()
        if name not in ENGINE_NAMED_IN
        and (lines := _engine_comparisons(ast.parse(path.read_text())))
    }
    assert found == {}, "compare domain.engines.profile(engine)'s attributes instead"


def test_the_comparison_finder_finds_one() -> None:
    assert _engine_comparisons(ast.parse('if engine == "podman":\n    pass\n')) == [1]
    assert _engine_comparisons(ast.parse('if "docker" != x:\n    pass\n')) == [1]
    assert _engine_comparisons(ast.parse('if "podman" in text:\n    pass\n')) == [1]
