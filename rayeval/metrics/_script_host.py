"""The process a user's pre- or post-processing script runs in (rayeval.metrics._scripts).

Run by file path, standard library only. It reads the script's (kind, source, file name, arity) from
its stdin, loads it and answers "ready" or why not; then, for each call, it reads the arguments and
answers ("value", v), ("raised", text) or ("unsendable", text). Messages are pickled frames
(multiprocessing.connection) on stdin/stdout; the script's own prints go to stderr. The caller
kills the process (and whatever it started) when a call runs past its time limit.
"""

from __future__ import annotations

import inspect
import os
import traceback
import types
from multiprocessing.connection import Connection
from pathlib import Path

__all__ = ["main"]


def _frames(error: BaseException, filename: str) -> str:
    """The traceback's frames inside the user's script file, as ' (at file:line in fn: code; ...)'."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == filename]
    if not frames:
        return ""
    steps = "; ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}: {(f.line or '').strip()}" for f in frames[-3:])
    return f" (at {steps})"


def _load(kind: str, source: str, filename: str, arity: int, expected: str) -> tuple[object, str | None]:
    module = types.ModuleType(f"rayeval_user_{kind}")
    module.__file__ = filename
    try:
        exec(compile(source, filename, "exec"), module.__dict__)
    except BaseException as e:  # SyntaxError, ImportError, SystemExit, anything at module level
        where = f" (line {e.lineno})" if isinstance(e, SyntaxError) and e.lineno else ""
        return None, f"does not load{where}: {type(e).__name__}: {e}"
    fn = module.__dict__.get(kind)
    if not callable(fn):
        return None, f"defines no function `{kind}`"
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) != arity:
        return None, f"`{kind}` takes {len(params)} parameter(s); expected ({expected})"
    return fn, None


def main() -> None:
    reader = Connection(os.dup(0), writable=False)
    writer = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # the script's prints go to stderr, never into the answers
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    writer.send(("up", None))  # the interpreter is up: the script's time limit starts with its load
    kind, source, filename, arity, expected = reader.recv()
    fn, error = _load(kind, source, filename, arity, expected)
    writer.send(("error", error) if error else ("ready", None))
    if error:
        return
    while True:
        try:
            args = reader.recv()
        except (EOFError, OSError):  # the caller is gone
            return
        try:
            value = fn(*args)
        except BaseException as e:  # sys.exit() too: an item error, and this process goes on
            writer.send(("raised", f"{type(e).__name__}: {e}{_frames(e, filename)}"))
            continue
        try:
            writer.send(("value", value))
        except Exception as e:  # not picklable: nothing was written yet
            writer.send(("unsendable", f"{type(value).__name__} ({type(e).__name__}: {e})"))


if __name__ == "__main__":
    main()
