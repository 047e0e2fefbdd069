"""Reading a study or user-config file: once, bounded in size, nesting and alias expansion.

A study file comes from a colleague: a few hundred bytes of YAML aliases can stand for billions
of values, and a deep nesting exhausts the stack. Both are refused before anything is built.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from ..errors import ConfigError

MAX_DEPTH = 64
MAX_VALUES = 100_000  # values once every alias is expanded


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (the last would win silently)."""


def _checked_map(loader: _Loader, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    yield from loader.construct_yaml_map(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _checked_map)


def parse_mapping(data: bytes, origin: str) -> dict[str, Any]:
    """The top-level mapping of a YAML document; every problem is one ConfigError line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{origin}: not UTF-8 text") from None
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # (its reader checks every character here)
        node = loader.get_single_node()
        if node is not None:
            _check_size(node, origin)
        value = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{origin}:{mark.line + 1}:{mark.column + 1}" if mark else origin
        what = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"{where}: invalid YAML: {one_line(what)}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(
            f"{origin}:{line}:{column}: invalid YAML: character #x{code:04x} is not allowed"
        ) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(f"{origin}: invalid YAML: {one_line(str(exc))}") from None
    except RecursionError:
        raise ConfigError(f"{origin}: invalid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    if value is None:
        raise ConfigError(f"{origin}: the file is empty")
    if not isinstance(value, dict):
        raise ConfigError(f"{origin}: expected a mapping at the top level, got {kind_of(value)}")
    return value


def _check_size(root: yaml.Node, origin: str) -> None:
    """Refuse a document nested deeper than `MAX_DEPTH`, or of more than `MAX_VALUES` values
    once its aliases are expanded (a node an alias repeats counts each time)."""
    expanded: dict[int, int] = {}  # id(node) -> values under it, aliases expanded
    # Iterative post-order walk: the document may be deep, and aliases may form a cycle.
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    on_path: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        children = _children(node)
        if done:
            on_path.discard(id(node))
            expanded[id(node)] = min(
                1 + sum(expanded[id(child)] for child in children), MAX_VALUES + 1
            )
            continue
        if id(node) in expanded:
            continue
        if depth > MAX_DEPTH:
            raise ConfigError(
                f"{origin}:{node.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels"
            )
        if id(node) in on_path:
            raise ConfigError(f"{origin}:{node.start_mark.line + 1}: an alias refers to itself")
        on_path.add(id(node))
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in children if id(child) not in expanded)
    if expanded[id(root)] > MAX_VALUES:
        raise ConfigError(
            f"{origin}: more than {MAX_VALUES} values once its aliases are expanded "
            "(an alias bomb?)"
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def one_line(text: str) -> str:
    """``text`` on one line: a key or value with a line break must not split the message."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def kind_of(value: object) -> str:
    if value is None:
        return "null"
    for kind, name in (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (list, "a list"),
        (dict, "a mapping"),
    ):
        if isinstance(value, kind):
            return name
    return type(value).__name__
