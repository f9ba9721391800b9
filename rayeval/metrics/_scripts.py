"""User scripts around a metric: preprocessing before scoring, postprocessing after judging.

A script is a Python file defining one function:

- preprocessing: `preprocess(item: dict) -> dict`. `item` holds the item's columns (`item_id`,
  `query`, `reference`, `prediction` and any other column); the returned dict replaces it for
  the scoring step (return a copy with changes; keys you drop are dropped).
- postprocessing: `postprocess(judge_output: str, item: dict) -> float | dict`. It receives the
  judge's raw answer (or the rule metric's score, as text) and the item; it returns the score, or
  a dict with a `score` key and anything else to keep beside it.

A script runs in a process of its own (rayeval.metrics._script_host, under rayeval.processes'
supervisor), with a time limit per call, `script_timeout_s` of its metric: a script that loops, sleeps
or waits forever is killed with everything it started, and the item fails with "script X exceeded N s"
(the next item gets a fresh process). A script that cannot be loaded (missing file, syntax error,
failing import, no such function, wrong number of parameters, or a load past the time limit) fails the
task when it is validated, before anything runs. A script that raises (even SystemExit), ends its
process, or returns something unusable (not a dict of the item's columns; not a finite number or a
dict with one as `score`; anything that is not JSON) gives that item an error naming the script and
what it returned; the other items go on.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

from rayeval.errors import MetricError
from rayeval.processes import stop_supervised, supervised

__all__ = [
    "DEFAULT_SCRIPT_TIMEOUT_S",
    "Script",
    "ScriptResult",
    "checked_source",
    "compile_script",
    "load_script",
    "run_script",
]

ScriptKind = Literal["preprocess", "postprocess"]
_ARITY = {"preprocess": 1, "postprocess": 2}
_EXPECTED = {"preprocess": "item", "postprocess": "judge_output, item"}
#: Seconds a script's process may take to start Python (not counted against the script's own limit).
PROCESS_START_S = 60.0
#: Seconds a script may take to load, and per call, unless its metric sets `script_timeout_s`.
DEFAULT_SCRIPT_TIMEOUT_S = 5.0
_HOST = str(Path(__file__).with_name("_script_host.py"))


@dataclass(frozen=True)
class ScriptResult:
    """What one call of a script gave: its value, or the item error."""

    value: Any = None
    error: str | None = None


class Script:
    """A loaded script, running in a process of its own; call it through `run_script`.

    Args:
        source: The script's code.
        filename: Its file (shown in errors and tracebacks).
        kind: preprocess or postprocess.
        timeout_s: Most seconds to load, and per call.
        field: The spec field that names it (for errors at load time).

    Raises:
        MetricError: the script does not load, or takes longer than `timeout_s` to.
    """

    def __init__(
        self,
        source: str,
        filename: str,
        kind: ScriptKind,
        timeout_s: float = DEFAULT_SCRIPT_TIMEOUT_S,
        *,
        field: str | None = None,
    ):
        self.source, self.filename, self.kind, self.timeout_s = source, filename, kind, timeout_s
        self.name = Path(filename).name
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        error = self._start()
        if error:
            raise MetricError(f"{kind} script '{filename}' {error}", field=field)

    def __getstate__(self) -> dict[str, Any]:  # a copy starts its own process when first called
        return {k: v for k, v in self.__dict__.items() if k not in ("_proc", "_lock", "_reader", "_writer")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _proc=None, _lock=threading.Lock())

    def _start(self) -> str | None:
        """Start the process and load the script; the reason it failed, if it did."""
        proc = supervised(
            [sys.executable, _HOST], grace=0.5, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
        )
        self._proc = proc
        self._writer = Connection(os.dup(proc.stdin.fileno()), readable=False)
        self._reader = Connection(os.dup(proc.stdout.fileno()), writable=False)
        proc.stdin.close()  # the connections hold their own copies of the pipes
        proc.stdout.close()
        # Starting Python is not the script's time (seconds on a loaded machine): its limit starts after.
        up = self._answer(PROCESS_START_S)
        if up[0] != "up":
            self.close()
            if up[0] == "timeout":
                return f"its process did not start in {PROCESS_START_S:g} s"
            return f"its process ended before loading it ({up[0]} {up[1]})"
        self._writer.send((self.kind, self.source, self.filename, _ARITY[self.kind], _EXPECTED[self.kind]))
        answer = self._answer()
        if answer[0] == "ready":
            return None
        self.close()
        if answer[0] == "timeout":
            return f"exceeded {self.timeout_s:g} s while loading (script_timeout_s)"
        return answer[1]

    def _answer(self, timeout_s: float | None = None) -> tuple[str, Any]:
        """The process's next answer, ("timeout", None) past the time limit (the script's, unless given),
        ("ended", exit code) if it died."""
        try:
            if not self._reader.poll(self.timeout_s if timeout_s is None else timeout_s):
                return ("timeout", None)
            return self._reader.recv()
        except (EOFError, OSError):
            code = self._proc.wait(timeout=5) if self._proc is not None else None
            return ("ended", code)

    def call(self, *args: Any) -> tuple[str, Any]:
        """One call: ("value", v), ("raised", text), ("unsendable", text), ("timeout", None) or ("ended", code).
        After a time-out or a death the process is gone; the next call starts a new one."""
        with self._lock:
            if self._proc is None:
                error = self._start()
                if error:
                    return ("raised", f"the script does not load again: {error}")
            try:
                self._writer.send(args)
            except (OSError, ValueError):
                answer: tuple[str, Any] = ("ended", self._proc.poll())
            else:
                answer = self._answer()
            if answer[0] in ("timeout", "ended"):
                self.close()
            return answer

    def close(self) -> None:
        """End the script's process and everything it started."""
        proc, self._proc = self._proc, None
        if proc is not None:
            for conn in (self._writer, self._reader):
                conn.close()
            stop_supervised(proc, wait=2.0)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutting down
            pass


def load_script(
    path: str | Path, kind: ScriptKind, *, field: str | None = None, timeout_s: float = DEFAULT_SCRIPT_TIMEOUT_S
) -> Script:
    """Load a script file; returns it ready to run (see `run_script`).

    Raises:
        MetricError: the file is missing, does not load in `timeout_s`, or lacks a fitting function.
    """
    return _read(path, kind, field, timeout_s)[1]


def checked_source(
    path: str | Path, kind: ScriptKind, *, field: str | None = None, timeout_s: float = DEFAULT_SCRIPT_TIMEOUT_S
) -> str:
    """A script file's source, once it has been checked to load (what is shipped to the actors).

    Raises:
        MetricError: the file is missing, does not load in `timeout_s`, or lacks a fitting function.
    """
    source, script = _read(path, kind, field, timeout_s)
    script.close()
    return source


def _read(path: str | Path, kind: ScriptKind, field: str | None, timeout_s: float) -> tuple[str, Script]:
    path = Path(path)
    if not path.is_file():
        raise MetricError(f"{kind} script '{path}' not found", field=field)
    source = path.read_text(encoding="utf-8")
    return source, compile_script(source, str(path), kind, field=field, timeout_s=timeout_s)


def compile_script(
    source: str,
    filename: str,
    kind: ScriptKind,
    *,
    field: str | None = None,
    timeout_s: float = DEFAULT_SCRIPT_TIMEOUT_S,
) -> Script:
    """The script, loaded from its source text in a process of its own (what actors on other nodes get:
    no shared files needed).

    Raises:
        MetricError: the source does not load in `timeout_s`, or lacks a fitting function.
    """
    return Script(source, filename, kind, timeout_s, field=field)


def run_script(script: Script, kind: ScriptKind, *args: Any) -> ScriptResult:
    """Call a loaded script on one item; whatever goes wrong becomes the item's error, never the task's."""
    what, value = script.call(*args)
    where = f"{kind} script '{script.name}'"
    if what == "timeout":
        return ScriptResult(error=f"{where} exceeded {script.timeout_s:g} s on this item (script_timeout_s)")
    if what == "ended":
        return ScriptResult(error=f"{where} ended its process (exit status {value}) on this item")
    if what == "raised":
        return ScriptResult(error=f"{where} raised {value}")
    if what == "unsendable":
        return ScriptResult(error=f"{where} returned {value}: return plain data (JSON)")
    problem = _unusable(kind, value)
    if problem:
        return ScriptResult(error=f"{where} returned {problem}")
    return ScriptResult(value=value)


def _unusable(kind: ScriptKind, value: Any) -> str | None:
    """Why a script's return value cannot be used (None: it can)."""
    if kind == "preprocess" and not isinstance(value, dict):
        return f"{type(value).__name__}, expected a dict of the item's columns"
    if kind == "postprocess":
        score = value.get("score") if isinstance(value, dict) else value
        if isinstance(score, bool) or not isinstance(score, (int, float)) and score is not None:
            return f"{type(value).__name__} {_shown(value)}, expected a number or a dict with 'score'"
        if score is not None and not math.isfinite(score):
            return f"{score} (not a finite number), expected a number or a dict with 'score'"
    try:
        json.dumps(value, allow_nan=kind == "preprocess")
    except (TypeError, ValueError) as e:
        return f"{_shown(value)}, which is not plain data (JSON: {e})"
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
