"""Loading a task: YAML or JSON into a checked TaskSpec, paths made relative to the task file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rayeval.errors import SpecError
from rayeval.spec.base import DEFAULT_OUTPUT, format_validation_error
from rayeval.spec.metrics_config import expand_metrics, resolve_metric_files
from rayeval.spec.task import TaskSpec
from rayeval.spec.unique_keys import load_json, load_yaml

__all__ = ["load_task", "parse_task", "set_dotted"]


def _resolve_path(base: Path, value: str) -> str:
    if "://" in value:
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_paths(data: Any, base: Path) -> Any:
    """Make relative data and output paths relative to the task file's folder."""
    if not isinstance(data, dict):
        return data
    output = data.get("output", DEFAULT_OUTPUT)
    if isinstance(output, str):  # absolute from here on: other processes (the coordinator) read it too
        data["output"] = _resolve_path(base, output)
    for m in [*(data.get("models") or []), *(data.get("judges") or [])]:
        if isinstance(m, dict) and isinstance(m.get("path"), str):
            m["path"] = _resolve_path(base, m["path"])
    for c in data.get("custom") or []:
        if isinstance(c, dict) and isinstance(c.get("mounts"), list):
            c["mounts"] = [
                _resolve_path(base, m) if isinstance(m, str) else
                ({**m, "path": _resolve_path(base, m["path"])} if isinstance(m, dict) and isinstance(m.get("path"), str)
                 and not m.get("shared") else m)
                for m in c["mounts"]
            ]  # fmt: skip
    for s in data.get("evaluation_sets") or []:
        if not isinstance(s, dict):
            continue
        if isinstance(s.get("path"), str):
            s["path"] = _resolve_path(base, s["path"])
        elif isinstance(s.get("path"), list):
            s["path"] = [_resolve_path(base, p) if isinstance(p, str) else p for p in s["path"]]
        if isinstance(s.get("metrics"), list):
            s["metrics"] = [resolve_metric_files(m, base, _resolve_path) for m in s["metrics"]]
        pf = s.get("prediction_files")
        if isinstance(pf, dict):
            for k, v in pf.items():
                if isinstance(v, str):
                    pf[k] = _resolve_path(base, v)
                elif isinstance(v, list):
                    pf[k] = [_resolve_path(base, p) if isinstance(p, str) else p for p in v]
    return data


def parse_task(data: Any, *, source: str | None = None, base_dir: str | Path | None = None) -> TaskSpec:
    """Validate already-parsed data into a TaskSpec.

    Args:
        data: The mapping read from a task file (or built in Python).
        source: Where it came from, for error messages.
        base_dir: Folder relative paths are resolved against (the task file's folder; default: cwd).

    Raises:
        SpecError: naming the source, the field and what is wrong.
    """
    if isinstance(data, TaskSpec):
        return data
    if not isinstance(data, dict):
        raise SpecError("a task file must hold a mapping (key: value) at the top level", source=source)
    base = Path(base_dir or Path.cwd())
    data = _resolve_paths(json.loads(json.dumps(data)), base)
    try:
        data = expand_metrics(data, base, _resolve_path)
    except SpecError as e:
        raise e.with_source(source) from None
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as err:
        problems = format_validation_error(err)
        loc, msg = problems[0]
        more = "".join(f"\n  field '{lo}': {m}" for lo, m in problems[1:])
        raise SpecError(msg + more, source=source, field=loc) from None
    spec._source = source
    return spec


def load_task(path: str | Path) -> TaskSpec:
    """Load and validate a task file (.yaml, .yml or .json).

    Raises:
        SpecError: the file is missing, is not valid YAML/JSON, or does not validate.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError("task file not found; give the path to a .yaml or .json task file", source=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"task file is not UTF-8 text (byte {e.start})", source=str(path)) from None
    try:
        if path.suffix.lower() == ".json":
            data = load_json(text)
        else:
            data = load_yaml(text)
    except json.JSONDecodeError as e:
        raise SpecError(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}", source=str(path)) from None
    except ValueError as e:  # a key twice in a JSON object
        raise SpecError(f"invalid JSON: {e}", source=str(path)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"invalid YAML{where}: {problem}", source=str(path)) from None
    return parse_task(data, source=str(path), base_dir=path.resolve().parent)


def set_dotted(data: Any, key: str, value: Any) -> None:
    """Set a value in spec data by dotted key ("parameters.temperature", "models.0.url" or "models.m.url":
    list entries by index or by name).

    Raises:
        SpecError: no such list entry, or a value where a mapping or list is needed.
    """
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            match = [j for j, x in enumerate(node) if isinstance(x, dict) and x.get("name") == part]
            if part.isdigit() and int(part) < len(node):
                index = int(part)
            elif match:
                index = match[0]
            else:
                raise SpecError(f"override '{key}': no entry '{part}' in that list", field=key)
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise SpecError(f"override '{key}': '{'.'.join(parts[:i])}' is a value, not a mapping or list", field=key)
