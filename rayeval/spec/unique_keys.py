"""Reading YAML and JSON files where a key given twice is an error: both formats keep the last value
silently, so a task file's second `parameters:` would undo the first without a word."""

from __future__ import annotations

import json
from typing import Any

import yaml

__all__ = ["load_json", "load_yaml"]


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice in the same mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if twice := next((k for k in keys if keys.count(k) > 1), None):
        raise ValueError(f"key '{twice}' is given twice in the same object")
    return dict(pairs)


def load_yaml(text: str) -> Any:
    """Parse YAML safely (yaml.YAMLError, with its line, for a key given twice)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)


def load_json(text: str) -> Any:
    """Parse JSON (json.JSONDecodeError for bad syntax, ValueError for a key given twice)."""
    return json.loads(text, object_pairs_hook=_unique)
