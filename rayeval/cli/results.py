"""Commands that read a task's results: results (leaderboard, intervals, comparison), item, report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rayeval.analysis.text import reuse_note
from rayeval.cli.group import caller_tags_option as _tags
from rayeval.cli.group import main, server_client
from rayeval.cli.remote import remote_item, remote_report, remote_results

__all__ = ["item", "report", "results"]


@main.command()
@click.argument("task")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option(
    "--weights",
    help="Weights on top of the task's: a YAML/JSON file, or set=W,... (metric:NAME=W for metrics). Re-ranks "
    "without evaluating anything again.",
)
@click.option("--reference", help="Compare every model with this one, item by item (default: the task's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap intervals.")
@click.option("--resamples", type=int, default=1000, show_default=True, help="Bootstrap resamples.")
@click.option(
    "--export",
    "export_dir",
    type=click.Path(file_okay=False),
    help="Write scores, leaderboard, usage and comparison as CSV, and everything as results.json, here.",
)
@click.option("--output", help="Also look for the task in this output location.")
def results(
    task: str,
    fmt: str,
    weights: str | None,
    reference: str | None,
    seed: int,
    resamples: int,
    export_dir: str | None,
    output: str | None,
) -> None:
    """Print the results of TASK (id or name): the leaderboard (comprehensive score with its 95%
    interval and rank), each model x set x metric with its interval and weight, token usage and
    latency, and the comparison with the reference model."""
    if (remote := server_client()) is not None:
        if export_dir:
            raise click.UsageError("--export through a server: use --format json and keep what it prints")
        return remote_results(remote, task, fmt, weights=weights, reference=reference, seed=seed, resamples=resamples)
    from rayeval.actors.index import find_task
    from rayeval.analysis import compute_results, format_results
    from rayeval.store.results import ResultsStore

    record = find_task(task, output=output, tags=_tags())
    res = compute_results(
        record["task_id"], weights=weights, reference=reference, seed=seed, resamples=resamples,
        output=record["output"], tags=_tags(),
    )  # fmt: skip
    click.echo(format_results(res, fmt))
    if export_dir:
        folder = Path(export_dir)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for view in ("scores", "leaderboard", "usage", "comparison"):
            text = res.to_csv(view)
            if text:
                (folder / f"{view}.csv").write_text(text, encoding="utf-8")
                written.append(f"{view}.csv")
        (folder / "results.json").write_text(json.dumps(res.to_dict(), indent=2), encoding="utf-8")
        written.append("results.json")
        parquet = ResultsStore(record["output"]).uri(record["task_id"], "results")
        click.echo(f"wrote {', '.join(written)} to {folder}; the per-item rows are the Parquet files in {parquet}")
    if fmt == "table" and reuse_note(record):
        click.echo(reuse_note(record))


@main.command()
@click.argument("task")
@click.argument("item_id")
@click.option("--model", help="Only this model (default: every model but the reference).")
@click.option("--set", "eval_set", help="The item's evaluation set, when its id is in several.")
@click.option("--reference", help="Show this model's response and scores beside (default: the task's).")
@click.option("--json", "as_json", is_flag=True, help="Print the steps as JSON.")
@click.option("--output", help="Also look for the task in this output location.")
def item(
    task: str,
    item_id: str,
    model: str | None,
    eval_set: str | None,
    reference: str | None,
    as_json: bool,
    output: str | None,
) -> None:
    """Every step of one item of TASK, in order: query, prompt sent, response, inference facts, and each
    metric's preprocessing output, judge prompt, raw judge answer, parsed score, postprocessing, errors."""
    if (remote := server_client()) is not None:
        return remote_item(remote, task, item_id, as_json, model=model, set=eval_set, reference=reference)
    from rayeval.analysis import format_item, item_view

    views = item_view(task, item_id, model=model, eval_set=eval_set, reference=reference, output=output, tags=_tags())
    click.echo(json.dumps([v.to_dict() for v in views], indent=2, default=str) if as_json else format_item(views))


@main.command()
@click.argument("task")
@click.option("--out", "out", default="report.html", show_default=True, type=click.Path(dir_okay=False))
@click.option("--weights", help="Starting weights on top of the task's (the page changes them live).")
@click.option("--reference", help="The reference model (default: the task's).")
@click.option("--items", type=int, default=200, show_default=True, help="Items per set in the item browser (0: all).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap intervals.")
@click.option("--resamples", type=int, default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--output", help="Also look for the task in this output location.")
def report(
    task: str,
    out: str,
    weights: str | None,
    reference: str | None,
    items: int,
    seed: int,
    resamples: int,
    output: str | None,
) -> None:
    """Write TASK's report as one self-contained HTML file (opens without network): leaderboard with
    live weight controls, scores with intervals, a chart, the item browser and the reference comparison."""
    if (remote := server_client()) is not None:
        return remote_report(
            remote, task, out, weights=weights, reference=reference, items=items, seed=seed, resamples=resamples
        )
    from rayeval.analysis import render_report

    page = render_report(
        task, weights=weights, reference=reference, seed=seed, resamples=resamples, items=items, output=output,
        tags=_tags(),
    )  # fmt: skip
    Path(out).write_text(page, encoding="utf-8")
    click.echo(f"wrote {out} ({len(page) / 1024:.0f} KiB)")
