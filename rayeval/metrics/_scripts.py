"""User scripts around a metric: preprocessing before scoring, postprocessing after judging.

A script is a Python file defining one function:

- preprocessing: `preprocess(item: dict) -> dict`. `item` holds the item's columns (`item_id`,
  `query`, `reference`, `prediction` and any other column); the returned dict replaces it for
  the scoring step (return a copy with changes; keys you drop are dropped).
- postprocessing: `postprocess(judge_output: str, item: dict) -> float | dict`. It receives the
  judge's raw answer (or the rule metric's score, as text) and the item; it returns the score, or
  a dict with a `score` key and anything else to keep beside it.

A script that cannot be loaded (missing file, syntax error, failing import, no such function,
wrong number of parameters) fails the task when it is validated, before anything runs. A script
that raises on one item gives that item an error holding the exception and the script's lines of
the traceback; the other items go on.
"""

from __future__ import annotations

import inspect
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rayeval.errors import MetricError

__all__ = ["ScriptResult", "checked_source", "compile_script", "load_script", "run_script"]

ScriptKind = Literal["preprocess", "postprocess"]
_ARITY = {"preprocess": 1, "postprocess": 2}


@dataclass(frozen=True)
class ScriptResult:
    """What one call of a script gave: its value, or the item error."""

    value: Any = None
    error: str | None = None


def load_script(path: str | Path, kind: ScriptKind, *, field: str | None = None) -> Callable[..., Any]:
    """Import a script file and return its `preprocess` or `postprocess` function.

    Raises:
        MetricError: the file is missing, does not import, or lacks a fitting function.
    """
    return _read(path, kind, field)[1]


def checked_source(path: str | Path, kind: ScriptKind, *, field: str | None = None) -> str:
    """A script file's source, once it has been checked to load (what is shipped to the actors).

    Raises:
        MetricError: the file is missing, does not import, or lacks a fitting function.
    """
    return _read(path, kind, field)[0]


def _read(path: str | Path, kind: ScriptKind, field: str | None) -> tuple[str, Callable[..., Any]]:
    path = Path(path)
    if not path.is_file():
        raise MetricError(f"{kind} script '{path}' not found", field=field)
    source = path.read_text(encoding="utf-8")
    return source, compile_script(source, str(path), kind, field=field)


def compile_script(source: str, filename: str, kind: ScriptKind, *, field: str | None = None) -> Callable[..., Any]:
    """The script's function from its source text (what actors on other nodes get: no shared files needed).

    Raises:
        MetricError: the source does not run, or lacks a fitting function.
    """
    module = types.ModuleType(f"rayeval_user_{kind}")
    module.__file__ = filename
    try:
        exec(compile(source, filename, "exec"), module.__dict__)
    except Exception as e:  # SyntaxError, ImportError, anything at module level
        where = f" (line {e.lineno})" if isinstance(e, SyntaxError) and e.lineno else ""
        raise MetricError(
            f"{kind} script '{filename}' does not load{where}: {type(e).__name__}: {e}", field=field
        ) from None
    fn = module.__dict__.get(kind)
    if not callable(fn):
        raise MetricError(f"{kind} script '{filename}' defines no function `{kind}`", field=field)
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) != _ARITY[kind]:
        expected = "item" if kind == "preprocess" else "judge_output, item"
        raise MetricError(
            f"{kind} script '{filename}': `{kind}` takes {len(params)} parameter(s); expected ({expected})",
            field=field,
        )
    return fn


def run_script(fn: Callable[..., Any], kind: ScriptKind, *args: Any) -> ScriptResult:
    """Call a loaded script on one item; an exception becomes the item's error, never the task's."""
    try:
        value = fn(*args)
    except Exception as e:
        return ScriptResult(error=f"{kind} script raised {type(e).__name__}: {e}{_script_frames(e, fn)}")
    if kind == "preprocess" and not isinstance(value, dict):
        return ScriptResult(error=f"preprocess returned {type(value).__name__}, expected a dict of the item's columns")
    if kind == "postprocess":
        score = value.get("score") if isinstance(value, dict) else value
        if isinstance(score, bool) or not isinstance(score, (int, float)) and score is not None:
            return ScriptResult(
                error=f"postprocess returned {type(value).__name__}, expected a number or a dict with 'score'"
            )
    return ScriptResult(value=value)


def _script_frames(error: BaseException, fn: Callable[..., Any]) -> str:
    """The traceback's frames inside the user's script file, as ' (at file:line in fn: code; ...)'."""
    filename = fn.__code__.co_filename
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == filename]
    if not frames:
        return ""
    steps = "; ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}: {(f.line or '').strip()}" for f in frames[-3:])
    return f" (at {steps})"
