"""What a command shows while a task runs here: deployment steps and a progress bar on stderr, rayeval's
own log lines in plain text, then where the results are and the summary."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any, TextIO

import click

from rayeval.analysis.text import format_summary, progress_bar, progress_rows, reuse_note, waiting_line
from rayeval.cli.console import Console, own_console
from rayeval.cli.group import caller_tags_option
from rayeval.errors import TooManyErrors
from rayeval.records import TERMINAL, TaskRecord

__all__ = [
    "ProgressPrinter",
    "deployment_step",
    "notice_once",
    "progress_printer",
    "quiet_logging",
    "run_and_print",
]


class ProgressPrinter:
    """Shows a running task on `stream` (default stderr): each deployment step once, then its progress.

    On a terminal, a live view (rich) with one bar per model and set, redrawn in place and sized to the
    terminal's width; elsewhere (a pipe, a log file), plain lines every 10 s and at the end: the
    whole task's bar, then one line per model and set (with each stage's count). Call it with each task
    record; `close` ends the live view (the caller does, in `finally`, whatever happened).
    """

    def __init__(self, quiet: bool, stream: TextIO | None = None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._deployments: dict[str, tuple[str, str]] = {}
        self._waiting: str | None = None
        self._last = 0.0
        self._live: Any = None  # rich.progress.Progress, once the first record came (on a terminal)
        self._bars: dict[tuple[str, str], Any] = {}

    def _note(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            click.echo(text, file=self.stream)

    def __call__(self, record: TaskRecord) -> None:
        if self.quiet:
            return
        for model, d in record.get("deployments", {}).items():
            seen = (d.get("state", ""), deployment_step(d.get("message", "")))
            if self._deployments.get(model) != seen:  # deployment steps take minutes: say what is going on
                self._deployments[model] = seen
                self._note(f"model {model}: {seen[0]}: {seen[1]}")
        final = record.get("state") in TERMINAL
        if self.tty:
            self._draw(record)
            if final:
                self.close()
            return
        now = time.monotonic()
        if final or now - self._last >= 10:
            self._last = now
            rows = progress_rows(record)
            click.echo(progress_bar(record), file=self.stream)
            if len(rows) > 1 or record.get("stages"):  # several, or what each stage did (inferred, scored...)
                for model, eval_set, done, total, facts in rows:
                    click.echo(f"[{model} / {eval_set}] {done}/{total} done, {facts}", file=self.stream)

    def _draw(self, record: TaskRecord) -> None:
        waiting = waiting_line(record)
        kind = _WAITED.sub("", waiting) if waiting else None
        if kind and kind != self._waiting:
            self._note(waiting)  # what a stage waits for, in full once; the bars then say for how long
        self._waiting = kind
        rows = progress_rows(record)
        if not rows:
            return
        if self._live is None:
            self._live = _live_view(self.stream)
            self._live.start()
        for model, eval_set, done, total, facts in rows:
            key = (model, eval_set)
            if key not in self._bars:
                self._bars[key] = self._live.add_task(_label(model, eval_set), total=max(total, 1), facts="")
            shown = waiting or facts
            self._live.update(self._bars[key], completed=done, total=max(total, 1), facts=shown)

    def close(self) -> None:
        """End the live view, leaving its last state on the terminal (a no-op without one)."""
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None


#: Characters of a bar's label (model / set); the rest of the line is the bar and its figures.
LABEL_CHARS = 28


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _label(model: str, eval_set: str, width: int = LABEL_CHARS) -> str:
    """'model / set' in `width` characters: long names are cut, the model's first (the bars of one model's
    sets must stay apart)."""
    eval_set = _cut(eval_set, max(8, width // 2))
    return f"{_cut(model, max(4, width - 3 - len(eval_set)))} / {eval_set}"


#: The growing part of a wait's description ("... for 35 s").
_WAITED = re.compile(r" for \d+ s")


def _live_view(stream: TextIO) -> Any:
    from rich.console import Console as RichConsole
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn
    from rich.table import Column

    console = RichConsole(file=stream, highlight=False)
    return Progress(
        TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis", max_width=LABEL_CHARS)),
        BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=10)),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[facts]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=2)),
        console=console,
        expand=True,
        refresh_per_second=4,
    )


def progress_printer(quiet: bool, stream: TextIO | None = None) -> ProgressPrinter:
    """A `ProgressPrinter` for a task run here (see its docstring)."""
    return ProgressPrinter(quiet, stream)


def notice_once(key: str, text: str, *, show: bool = True) -> None:
    """Print `text` to stderr the first time `key` comes up for this $RAYEVAL_HOME, never again (a marker
    file in its notices/ folder remembers; an unwritable home says it every time rather than never). With
    `show` false it is only marked as said (a notice that does not concern this user)."""
    from rayeval.paths import notices_dir

    marker = notices_dir() / key
    if marker.exists():
        return
    if show:
        click.echo(text, err=True)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(text + "\n", encoding="utf-8")
    except OSError:
        pass


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
    printer = progress_printer(quiet, console.err)
    try:
        handle = run_task(
            spec,
            address=address,
            on_progress=printer,
            log_to_driver=verbose,
            tags=caller_tags_option(),
            on_cluster=lambda where: click.echo(f"rayeval: running on {where}", file=console.err),
        )
    except TooManyErrors as e:  # it ran to its end: its summary is worth seeing before the error
        printer.close()
        click.echo(format_summary(e.record.get("summary") or [], fmt), file=console.out)
        raise
    finally:
        printer.close()  # a failed run leaves no live view behind (nor a hidden cursor)
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
