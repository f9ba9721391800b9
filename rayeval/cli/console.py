"""The terminal of a command that runs a task: rayeval's own lines only, the libraries' output in a file.

Ray, Ray Serve and vLLM print to the process's standard output and error from Python and from C++
(JSON log lines, deployment option dumps, raylet warnings forwarded to the driver, Python warnings),
and the processes Ray starts here inherit the same descriptors. Unless `--verbose`, a command that
runs a task points descriptors 1 and 2 at a log file under `$RAYEVAL_HOME/logs/` for as long as it
runs, and prints its own lines (deployment steps, the progress bar, the summary, errors) on copies of
the terminal's descriptors taken before. Where the streams are not the process's own descriptors (a
caller that captures them, as click's test runner does), nothing is redirected.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rayeval.paths import logs_dir

__all__ = ["Console", "own_console"]


@dataclass
class Console:
    """Where a command's own output goes.

    Attributes:
        out: Results (the summary table or JSON).
        err: Messages: deployment steps, the progress bar, notes and errors.
        log: The file that holds what the libraries printed meanwhile (None: they print here too).
    """

    out: TextIO
    err: TextIO
    log: Path | None = None


def _own_descriptors() -> bool:
    try:
        return sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return False


@contextlib.contextmanager
def own_console(verbose: bool) -> Iterator[Console]:
    """The console of a command that runs a task (see the module's docstring); restored on the way out,
    whatever happens, so that an error is printed on the terminal."""
    if verbose or not _own_descriptors():
        yield Console(sys.stdout, sys.stderr)
        return
    folder = logs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    out = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8", errors="replace")
    err = os.fdopen(os.dup(saved[1]), "w", buffering=1, encoding="utf-8", errors="replace")
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    try:
        yield Console(out, err, path)
    finally:
        for stream in (sys.stdout, sys.stderr, out, err):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        out.close()
        err.close()
