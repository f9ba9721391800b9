"""Quick-configuration files and `extends:`: metrics written once, reused by name.

A quick-configuration file is YAML that maps evaluation-set names to metric lists, with prompt
and script files given relative to the file itself::

    qa:
      - exact_match
      - name: correctness
        judge: {model: referee, prompt_file: prompts/correct.txt, parser: {kind: regex, pattern: "Score: (\\d)"}}
      - {name: strict, extends: correctness, judge: {parser: {kind: labels, labels: {A: 1, B: 0}}}}

The task names it (`metrics_config: metrics.yaml`); each set of the task with a name in the file
gets those metrics after its own. A metric with `extends: NAME` is a copy of the metric of that
name (from the file or from the task's own sets) with its fields overriding, dict fields merged
key by key. This module expands both into plain metric lists before the spec is validated.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from rayeval.errors import SpecError
from rayeval.spec.unique_keys import load_yaml

__all__ = ["expand_metrics", "resolve_metric_files"]


def expand_metrics(data: dict[str, Any], base: Path, resolve_path: Any) -> dict[str, Any]:
    """Fill the task data's sets from its quick-configuration file and resolve every `extends:`.

    Args:
        data: The task as parsed from YAML/JSON (modified in place and returned).
        base: The task file's folder (relative paths start there).
        resolve_path: (folder, path) -> absolute path or URI.

    Raises:
        SpecError: a missing or malformed file, a set name the task lacks, an unknown or cyclic `extends`.
    """
    sets = [s for s in data.get("evaluation_sets") or [] if isinstance(s, dict)]
    config_path = data.get("metrics_config")
    if config_path is not None:
        path = Path(config_path if Path(config_path).is_absolute() else resolve_path(base, config_path))
        by_set = _load(path)
        names = {s.get("name") for s in sets}
        unknown = sorted(set(by_set) - names)
        if unknown:
            raise SpecError(
                f"metrics_config '{path}' names sets the task does not have: {', '.join(unknown)} "
                f"(the task's sets: {', '.join(sorted(str(n) for n in names))})",
                field="metrics_config",
            )
        for s in sets:
            extra = [resolve_metric_files(m, path.parent, resolve_path) for m in by_set.get(s.get("name"), [])]
            s["metrics"] = [*(s.get("metrics") or []), *extra]
    named = {m["name"]: m for s in sets for m in s.get("metrics") or [] if isinstance(m, dict) and "name" in m}
    for i, s in enumerate(sets):
        s["metrics"] = [
            _extended(m, named, f"evaluation_sets.{i}.metrics.{k}") if isinstance(m, dict) else m
            for k, m in enumerate(s.get("metrics") or [])
        ]
    return data


def _load(path: Path) -> dict[str, list[Any]]:
    if not path.is_file():
        raise SpecError(f"metrics_config file '{path}' not found", field="metrics_config")
    try:
        content = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SpecError(f"metrics_config '{path}' is not valid YAML: {e}", field="metrics_config") from None
    if not isinstance(content, dict) or not all(isinstance(v, list) for v in content.values()):
        raise SpecError(
            f"metrics_config '{path}' must map evaluation-set names to lists of metrics", field="metrics_config"
        )
    return content


def resolve_metric_files(metric: Any, folder: Path, resolve_path: Any) -> Any:
    """A copy of a metric entry with its script and prompt-file paths made relative to `folder`
    (the folder of the task file or of the quick-configuration file that declares it)."""
    if not isinstance(metric, dict):
        return metric
    metric = copy.deepcopy(metric)
    for key in ("preprocess", "postprocess", "evaluate"):  # scripts, and an evaluate module's folder
        if isinstance(metric.get(key), str):
            metric[key] = resolve_path(folder, metric[key])
    options = metric.get("options")
    if metric.get("name") == "evaluate" and isinstance(options, dict) and isinstance(options.get("module"), str):
        metric["options"] = {**options, "module": resolve_path(folder, options["module"])}
    judge = metric.get("judge")
    if isinstance(judge, dict) and isinstance(judge.get("prompt_file"), str):
        judge["prompt_file"] = resolve_path(folder, judge["prompt_file"])
    return metric


def _extended(metric: dict[str, Any], named: dict[str, dict[str, Any]], field: str, seen: tuple = ()) -> dict:
    parent = metric.get("extends")
    if parent is None:
        return metric
    if parent in seen or parent == metric.get("name"):
        raise SpecError(f"`extends` loops: {' -> '.join([*seen, str(parent)])}", field=f"{field}.extends")
    if parent not in named:
        raise SpecError(
            f"metric extends '{parent}', which no set defines (defined: {', '.join(sorted(named)) or 'none'})",
            field=f"{field}.extends",
        )
    base = _extended(named[parent], named, field, (*seen, str(parent)))
    overrides = {k: v for k, v in metric.items() if k != "extends"}
    return _merge(copy.deepcopy({k: v for k, v in base.items() if k != "extends"}), overrides)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base
