"""What a command shows while a task runs here: deployment steps and a progress bar on stderr, rayeval's
own log lines in plain text, then where the results are and the summary."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import click

from rayeval.analysis.text import format_summary, progress_bar, reuse_note
from rayeval.cli.console import Console, own_console
from rayeval.cli.group import caller_tags_option
from rayeval.errors import TooManyErrors
from rayeval.records import TaskRecord

__all__ = ["deployment_step", "progress_printer", "quiet_logging", "run_and_print"]


def progress_printer(quiet: bool, stream: TextIO | None = None) -> Callable[[TaskRecord], None]:
    """A callback printing a task's deployment steps, and its progress bar (in place on a terminal, every
    10 s otherwise), on `stream` (default stderr)."""
    tty = (stream or sys.stderr).isatty()
    last = [0.0]
    deployments: dict[str, tuple[str, str]] = {}

    def echo(text: str, nl: bool = True) -> None:
        click.echo(text, file=stream, err=stream is None, nl=nl)

    def show(record: TaskRecord) -> None:
        if quiet:
            return
        for model, d in record.get("deployments", {}).items():
            seen = (d.get("state", ""), deployment_step(d.get("message", "")))
            if deployments.get(model) != seen:  # deployment steps take minutes: say what is going on
                deployments[model] = seen
                echo(f"{chr(13) if tty else ''}model {model}: {seen[0]}: {seen[1]}")
        now = time.monotonic()
        final = record["state"] != "running"
        if tty:
            echo(f"\r{progress_bar(record)}", nl=final)
        elif final or now - last[0] >= 10:
            last[0] = now
            echo(progress_bar(record))

    return show


def run_and_print(spec: Any, *, address: str | None, quiet: bool, verbose: bool, fmt: str) -> None:
    """Run a task here with a progress bar, then say where its results are (and what it reused) and
    print its summary. Unless `verbose`, what Ray, Serve and vLLM print goes to a log file
    (rayeval.cli.console), and the terminal shows rayeval's lines only."""
    import ray

    connects = not ray.is_initialized()
    with own_console(verbose) as console:
        try:
            _run_and_print(spec, console, address=address, quiet=quiet, verbose=verbose, fmt=fmt)
        except Exception:
            if console.log is not None:
                click.echo(f"rayeval: what Ray, Serve and vLLM printed is in {console.log}", file=console.err)
            raise
        finally:  # Ray's last words (the raylet's warnings, the local cluster going down) go to the log too
            if connects:
                ray.shutdown()


def _run_and_print(spec: Any, console: Console, *, address: str | None, quiet: bool, verbose: bool, fmt: str) -> None:
    import ray

    from rayeval.api import run as run_task

    quiet_logging(verbose, console.err)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        handle = run_task(
            spec,
            address=address,
            on_progress=progress_printer(quiet, console.err),
            log_to_driver=verbose,
            tags=caller_tags_option(),
            on_cluster=lambda where: click.echo(f"rayeval: running on {where}", file=console.err),
        )
    except TooManyErrors as e:  # it ran to its end: its summary is worth seeing before the error
        click.echo(format_summary(e.record.get("summary") or [], fmt), file=console.out)
        raise
    rows = handle.results()
    click.echo(f"task {handle.task_id}: results in {handle.store.uri(handle.task_id)}", file=console.err)
    note = reuse_note(handle.status())
    if note:
        click.echo(note, file=console.err)
    click.echo(format_summary(rows, fmt), file=console.out)


_SLOW_START = re.compile(r"has (\d+) replicas? that ha(?:s|ve) taken more than (\d+)s to initialize")


def deployment_step(message: str) -> str:
    """A deployment event's message on one line: Serve's note on replicas that start slowly says what
    they do (vLLM loads the weights, then compiles and warms up), not that `__init__` may be slow."""
    slow = _SLOW_START.search(message)
    if slow:
        return f"{slow.group(1)} replica(s) still starting after {slow.group(2)} s (vLLM loads the model and warms up)"
    return message.strip().splitlines()[0] if message.strip() else ""


def quiet_logging(verbose: bool, stream: TextIO | None = None) -> None:
    """rayeval's own log lines in plain text on `stream` (default stderr; other libraries may install JSON
    handlers on the root logger)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("rayeval: %(message)s"))
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    logger = logging.getLogger("rayeval")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)  # every event reaches the task's event log; the console shows warnings
    for noisy in ("httpx", "httpcore", "ray.serve"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)
