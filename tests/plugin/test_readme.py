"""The README's examples are run: its sample report and its user-check example must stay true."""

from __future__ import annotations

import ast
import json
import re
import sys
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

README = (Path(__file__).parents[2] / "README.md").read_text()
BUILTINS = (
    "docker-cli,docker-daemon,nvidia-toolkit,host-driver,cuda-compat,gpu-in-container,"
    "gpu-idle,persistence-mode,mig-mode,clock-events,energy-counter,power-limit,gpu-health"
)

pytestmark = pytest.mark.usefixtures("bare_host")


def _blocks(language: str) -> list[str]:
    """The README's fenced code blocks opened with ```language."""
    blocks, current, opened = [], [], None
    for line in README.splitlines():
        if opened is not None and line == "```":
            if opened == language:
                blocks.append("\n".join(current) + "\n")
            opened = None
        elif opened is not None:
            current.append(line)
        elif line.startswith("```"):  # any block opens here, of this language or another
            current, opened = [], line[3:]
    return blocks


def test_the_sample_failure_report_is_what_a_bare_host_prints(pytester: pytest.Pytester) -> None:
    sample = next(b for b in _blocks("") if "[docker-cli]" in b).rstrip("\n").splitlines()
    result = pytester.runpytest("--llem-preflight")
    assert result.ret == 1
    out = result.stdout.lines
    start = out.index(sample[0])
    assert out[start : start + len(sample)] == sample


def test_the_user_check_example_runs(pytester: pytest.Pytester) -> None:
    example = next(b for b in _blocks("python") if "preflight(tier=2" in b)
    pytester.makepyfile(test_mine=example)
    result = pytester.runpytest(
        "--llem-preflight", "--llem-skip", BUILTINS, ".", "--llem-json", "r.json"
    )
    data = json.loads((pytester.path / "r.json").read_text())
    outcomes = {c["id"]: c["outcome"] for c in data["checks"] if c["outcome"] != "skipped"}
    # No /models/llama here: the tier-2 check fails; no nvidia-smi: the tier-1 check warns.
    assert outcomes == {"gpu-memory": "warning", "model-cache": "failed"}
    assert data["failures"][0]["fix"] == "mount the model volume"
    assert result.ret == 1


# -- what the README lists: every check id and every study key, derived from the code ---------


def test_the_check_table_lists_every_check_with_its_tier() -> None:
    from pytest_llem.domain.check_ids import CHECKS
    from pytest_llem.domain.fleet import REACHABLE_ID

    rows = re.findall(r"^\| (\d) \| `([a-z-]+)(?:\[IMAGE\])?` \|", README, re.M)
    listed = {check_id: int(tier) for tier, check_id in rows}
    assert listed == {**{d.id: d.tier for d in CHECKS}, REACHABLE_ID: 0}


def _model_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """The dotted keys of a study model: ``docker.images``, ``experiments[].model``, ..."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        inner = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _model_keys(annotation, f"{prefix}{name}.")
        elif isinstance(inner, type) and issubclass(inner, BaseModel):
            keys += _model_keys(inner, f"{prefix}{name}[].")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _yaml_keys(data: object, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    if isinstance(data, dict):
        for name, value in data.items():
            keys |= {f"{prefix}{name}", *_yaml_keys(value, f"{prefix}{name}.")}
    elif isinstance(data, list):
        for item in data:
            keys |= _yaml_keys(item, f"{prefix.removesuffix('.')}[].")
    return keys


def _study_example() -> str:
    return next(b for b in _blocks("yaml") if b.startswith("name: ") and "experiments:" in b)


def test_the_readme_names_every_study_key() -> None:
    """Each key of the study models is in the README's study example, or named in its text
    (``docker.skip_preflight``); a key under a mapping of the person's (``runners.vllm``,
    ``docker.images.vllm``) counts for the mapping."""
    from pytest_llem.run.config import StudyConfig

    shown = _yaml_keys(yaml.safe_load(_study_example()))
    keys = _model_keys(StudyConfig)
    assert {"docker.images", "experiments[].params", "execution.skip_checks"} <= set(keys)
    missing = [
        key
        for key in keys
        if key not in shown
        and not any(k.startswith(f"{key}.") for k in shown)
        and not re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", README)
    ]
    assert missing == []


def test_the_study_example_is_a_valid_study(tmp_path: Path) -> None:
    from pytest_llem.run.config import load_study
    from pytest_llem.run.runners import resolve_runners

    example = _study_example().encode()
    study = load_study(tmp_path / "study.yaml", env={"HOME": str(tmp_path)}, data=example)
    resolve_runners(study, env={})  # every experiment has what its runner needs
    assert [e.image for e in study.experiments][-1] == "vllm/vllm-openai:v0.8.5"


# -- the fast-test command brings what the fast tests import ---------------------------------

ROOT = Path(__file__).resolve().parents[2]


def _quick_start_commands() -> list[str]:
    section = README.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    quick = section.split("```sh\n", 1)[1].split("\n```", 1)[0]
    fast = section.split("\nOnly the fast tests", 1)[1].split("```sh\n", 1)[1].split("\n```")[0]
    return [quick, fast]


def _third_party_imports(*folders: Path) -> set[str]:
    """The top-level modules that the files under ``folders`` import, outside the standard
    library and this repository (pytest_llem, checks, the test helpers)."""
    local = {p.stem for p in (ROOT / "tests").rglob("*.py")} | {"pytest_llem", "checks"}
    local |= {p.name for p in (ROOT / "tests").rglob("*") if p.is_dir()}
    found: set[str] = set()
    for folder in folders:
        for path in [folder] if folder.is_file() else folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.partition(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.partition(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in local}


def _installed_with(extras: set[str]) -> set[str]:
    """The distributions that installing pytest-llem with ``extras`` brings (as installed here:
    their own requirements, transitively)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    def applies(req: Requirement, extras: set[str]) -> bool:
        return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *extras})

    own = map(Requirement, metadata.requires("pytest-llem") or [])
    wanted = [req for req in own if applies(req, extras)]
    seen: set[str] = set()
    while wanted:
        req = wanted.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            texts = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        wanted += [sub for sub in map(Requirement, texts) if applies(sub, set())]
    return seen


def test_the_fast_test_command_installs_what_the_fast_tests_import() -> None:
    """Without the `dev` extra, hypothesis is missing and whole test modules fail to import.
    (tests/quickstart runs the command itself, where a system Python can make a venv.)"""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    quick, fast = _quick_start_commands()
    assert fast.endswith("python -m pytest tests/unit tests/plugin -q")
    assert fast.startswith(". .venv/bin/activate && ")  # the tests run `python` by name
    extras: set[str] = set()
    for command in (quick, fast):
        for spec in re.findall(r"pip install (?:--?[\w-]+ )*'?(\.(?:\[[\w,-]+\])?)'?", command):
            extras |= set(spec.partition("[")[2].rstrip("]").split(",")) - {""}
    installed = _installed_with(extras)
    modules = _third_party_imports(
        ROOT / "tests" / "unit", ROOT / "tests" / "plugin", ROOT / "tests" / "testbed",
        ROOT / "conftest.py",
    )  # fmt: skip
    assert "hypothesis" in modules
    providers = metadata.packages_distributions()
    missing = {
        module: providers.get(module, [module])
        for module in modules
        if not any(canonicalize_name(d) in installed for d in providers.get(module, [module]))
    }
    assert missing == {}
