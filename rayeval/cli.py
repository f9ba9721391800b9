"""The `rayeval` command line: a thin click layer over the Python API."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from rayeval.errors import RayevalError

__all__ = ["main"]


class _Group(click.Group):
    """Turns RayevalError into a clear message and its exit code (2: invalid input, nothing written)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RayevalError as e:
            click.echo(f"rayeval: error: {e}", err=True)
            ctx.exit(e.exit_code)


@click.group(cls=_Group)
@click.version_option(package_name="rayeval")
@click.option(
    "--tags",
    metavar="TAG[,TAG...]",
    help="The tags you present (default $RAYEVAL_TAGS): you see, stop, restart, copy, delete and read only "
    "tasks carrying one of them, and reuse results only from those.",
)
@click.pass_context
def main(ctx: click.Context, tags: str | None) -> None:
    """rayeval: distributed evaluation of LLMs on Ray."""
    from rayeval.tasks import caller_tags

    ctx.obj = {"tags": caller_tags(tags)}


def _tags() -> list[str] | None:
    """The tags the caller presents (--tags, else $RAYEVAL_TAGS), for every command's lookups."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    if isinstance(obj, dict) and "tags" in obj:
        return obj["tags"]
    from rayeval.tasks import caller_tags

    return caller_tags()


def _bar(record: dict[str, Any], width: int = 30) -> str:
    from rayeval.actors.coordinator import progress_fraction

    frac = progress_fraction(record)
    done = sum(p["done"] for sets in record.get("progress", {}).values() for p in sets.values())
    total = sum(p["total"] for sets in record.get("progress", {}).values() for p in sets.values())
    errors = sum(p["errors"] for sets in record.get("progress", {}).values() for p in sets.values())
    filled = int(frac * width)
    line = f"[{'#' * filled}{'.' * (width - filled)}] {frac:6.1%}  {done}/{total} entries, {errors} errors"
    return line + _rate(record, done, total)


def _rate(record: dict[str, Any], done: int, total: int) -> str:
    """', 12.3 items/s, ETA 4m10s' for a running task (items skipped by a restart or reused are not counted)."""
    started = record.get("started_at")
    if record.get("state") != "running" or not started:
        return ""
    elapsed = time.time() - started
    reused = sum(p.get("reused", 0) for sets in record.get("progress", {}).values() for p in sets.values())
    evaluated = done - record.get("resumed", 0) - reused
    if elapsed <= 0 or evaluated <= 0:
        return ", rate: starting"
    rate = evaluated / elapsed
    eta = max(0, total - done) / rate
    return f", {rate:.1f} items/s, ETA {int(eta // 60)}m{int(eta % 60):02d}s"


def _progress_printer(quiet: bool):
    tty = sys.stderr.isatty()
    last = [0.0]
    deployments: dict[str, tuple[str, str]] = {}

    def show(record: dict[str, Any]) -> None:
        if quiet:
            return
        for model, d in record.get("deployments", {}).items():
            seen = (d.get("state", ""), d.get("message", ""))
            if deployments.get(model) != seen:  # deployment steps take minutes: say what is going on
                deployments[model] = seen
                click.echo(f"{chr(13) if tty else ''}model {model}: {seen[0]}: {seen[1]}", err=True)
        now = time.monotonic()
        final = record["state"] != "running"
        if tty:
            click.echo(f"\r{_bar(record)}", err=True, nl=final)
        elif final or now - last[0] >= 10:
            last[0] = now
            click.echo(_bar(record), err=True)

    return show


@main.command()
@click.argument("task_file", type=click.Path(dir_okay=False))
@click.option("--address", help="Ray cluster address (default: RAY_ADDRESS, a running cluster, or a new local one).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--verbose", is_flag=True, help="Also print the workers' logs (Serve replicas, vLLM engines, actors).")
def run(task_file: str, address: str | None, as_json: bool, quiet: bool, verbose: bool) -> None:
    """Run TASK_FILE on the current Ray cluster (or a local one) and print its summary."""
    _run_and_print(task_file, address=address, quiet=quiet, verbose=verbose, fmt="json" if as_json else "table")


def _run_and_print(spec: Any, *, address: str | None, quiet: bool, verbose: bool, fmt: str) -> None:
    """Run a task here with a progress bar, then say where its results are (and what it reused) and
    print its summary."""
    import ray

    from rayeval.api import run as run_task
    from rayeval.report import format_summary

    _quiet_logging(verbose)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    handle = run_task(spec, address=address, on_progress=_progress_printer(quiet), log_to_driver=verbose, tags=_tags())
    rows = handle.results()
    click.echo(f"task {handle.task_id}: results in {handle.store.uri(handle.task_id)}", err=True)
    note = _reuse_note(handle.status())
    if note:
        click.echo(note, err=True)
    click.echo(format_summary(rows, fmt))


def _reuse_note(record: dict[str, Any]) -> str | None:
    """'reused 40 items from earlier tasks: ID (40)' when the task took items from earlier tasks."""
    reused = record.get("reused") or {}
    if not reused.get("total"):
        return None
    sources = ", ".join(f"{t} ({n})" for t, n in reused["sources"].items())
    return f"reused {reused['total']} items from earlier tasks: {sources}"


def _quiet_logging(verbose: bool) -> None:
    """rayeval's own log lines in plain text (other libraries may install JSON handlers on the root logger)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("rayeval: %(message)s"))
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    logger = logging.getLogger("rayeval")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)  # every event reaches the task's event log; the console shows warnings
    for noisy in ("httpx", "httpcore", "ray.serve"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)


@main.command()
@click.argument("task_file", type=click.Path(dir_okay=False))
@click.option("--address", help="Ray dashboard address (default: RAY_ADDRESS or http://127.0.0.1:8265).")
@click.option("--wait", is_flag=True, help="Wait for the task to end and print its summary.")
@click.option("--no-ship", is_flag=True, help="Use the rayeval installed on the cluster instead of uploading this one.")
def submit(task_file: str, address: str | None, wait: bool, no_ship: bool) -> None:
    """Submit TASK_FILE as a Ray job; prints the task id (also the job's submission id)."""
    from rayeval.api import submit as submit_task
    from rayeval.report import format_summary

    handle = submit_task(task_file, address=address, ship_package=not no_ship)
    click.echo(handle.task_id)
    if wait:
        handle.wait()
        click.echo(format_summary(handle.results()))


@main.command()
@click.argument("task", required=False)
@click.option("--output", help="Also look for tasks in this output location.")
@click.option("--address", help="Ask the coordinator of this Ray cluster instead of reading the local index.")
@click.option("--json", "as_json", is_flag=True, help="Print records as JSON.")
def status(task: str | None, output: str | None, address: str | None, as_json: bool) -> None:
    """Show one task's state and progress per model and set, or list every task."""
    from rayeval.actors.coordinator import progress_fraction
    from rayeval.errors import TaskNotFoundError
    from rayeval.report import progress_lines
    from rayeval.tasks import find_task, list_tasks, shown_state

    if address:
        import ray

        from rayeval.actors.coordinator import get_coordinator
        from rayeval.cluster import connect

        connect(address)
        coordinator = get_coordinator()
        if task:
            record = ray.get(coordinator.get.remote(task, _tags()))
            if record is None:
                raise TaskNotFoundError(f"the coordinator knows no task '{task}' (visible to the tags you present)")
            records = [record]
        else:
            records = ray.get(coordinator.list_tasks.remote(_tags()))
    else:
        records = [find_task(task, output=output, tags=_tags())] if task else list_tasks(tags=_tags())
    records = [shown_state(r) for r in records]
    if as_json:
        click.echo(json.dumps(records if not task else records[0], indent=2, default=str))
        return
    if not task:
        for r in records:
            created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.get("created_at", 0)))
            click.echo(f"{r['task_id']:<48} {r['state']:<12} {progress_fraction(r):6.1%}  {created}  {r['mode']}")
        if not records:
            click.echo("no tasks yet")
        return
    r = records[0]
    click.echo(f"task {r['task_id']} ({r['mode']}): {r['state']}")
    click.echo(_bar(r))
    for line in progress_lines(r):
        click.echo(f"  {line}")
    for model, d in r.get("deployments", {}).items():
        click.echo(f"  deployment of {model}: {d.get('state')} (Serve app {d.get('app')}) {d.get('message', '')}")
    if _reuse_note(r):
        click.echo(_reuse_note(r))
    if r.get("error"):
        click.echo(f"error: {r['error']}")


@main.command("list")
@click.option("--state", help="Only tasks in this state (running, succeeded, failed, stopped, interrupted...).")
@click.option("--tag", help="Only tasks with this tag.")
@click.option("--output", help="Also list the tasks in this output location.")
@click.option("--json", "as_json", is_flag=True, help="Print records as JSON.")
def list_cmd(state: str | None, tag: str | None, output: str | None, as_json: bool) -> None:
    """List tasks: name, state, progress, models, sets, mode, tags, creator, creation time, remarks."""
    from rayeval.actors.coordinator import progress_fraction
    from rayeval.api import list_tasks
    from rayeval.tasks import filter_tasks

    records = filter_tasks(list_tasks(output=output, tags=_tags()), state=state, tag=tag)
    if as_json:
        click.echo(json.dumps(records, indent=2, default=str))
        return
    if not records:
        click.echo("no tasks" + (" matching" if state or tag else " yet"))
        return
    click.echo(f"{'TASK':<44} {'STATE':<12} {'PROGRESS':>8}  {'MODE':<25} {'CREATED':<16} {'CREATOR':<10} DETAILS")
    for r in records:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.get("created_at", 0)))
        details = f"models {','.join(r.get('models', []))}; sets {','.join(r.get('eval_sets', []))}"
        if r.get("tags"):
            details += f"; tags {','.join(r['tags'])}"
        if r.get("remarks"):
            details += f"; {r['remarks']}"
        click.echo(
            f"{r['task_id']:<44} {r['state']:<12} {progress_fraction(r):>8.1%}  {r.get('mode', ''):<25} "
            f"{created:<16} {r.get('creator', ''):<10} {details}"
        )


@main.command()
@click.argument("task")
@click.option("--output", help="Also look for the task in this output location.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(task: str, output: str | None, yes: bool) -> None:
    """Delete TASK (id or name): its record and all its results. A running task must be stopped first."""
    from rayeval.api import delete as delete_task
    from rayeval.tasks import find_task

    record = find_task(task, output=output, tags=_tags())
    if not yes:
        click.confirm(f"delete task {record['task_id']} and its results in {record['output']}?", abort=True)
    delete_task(record["task_id"], output=output, tags=_tags())
    click.echo(f"deleted task {record['task_id']}")


@main.command()
@click.argument("task")
@click.option("--name", help="The new task's name (default: the old one with '-copy').")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a field by its dotted path, "
    "e.g. parameters.temperature=0.2 or models.m.url=http://... (values are read as YAML).",
)
@click.option(
    "--to", "to_file", type=click.Path(dir_okay=False), help="Write the new task file here instead of running it."
)
@click.option("--output", help="Also look for the task in this output location.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def copy(
    task: str, name: str | None, overrides: tuple[str, ...], to_file: str | None, output: str | None, quiet: bool
) -> None:
    """A new task from TASK's spec with overrides: run it now, or write it (--to) to edit and run later."""
    import yaml

    from rayeval.api import copy_spec

    parsed = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--set takes KEY=VALUE, got {item!r}")
        parsed[key.strip()] = yaml.safe_load(value)
    spec = copy_spec(task, name=name, overrides=parsed, output=output, tags=_tags())
    if to_file:
        with open(to_file, "w", encoding="utf-8") as f:
            yaml.safe_dump(spec.redacted(), f, sort_keys=False)
        click.echo(f"wrote task {spec.name} to {to_file}")
        return
    _run_and_print(spec, address=None, quiet=quiet, verbose=False, fmt="table")


@main.command()
@click.argument("task")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the task ends.")
@click.option("--output", help="Also look for the task in this output location.")
@click.option(
    "--address", help="Ray dashboard of a submitted task's job, for its driver output (default: RAY_ADDRESS)."
)
def logs(task: str, follow: bool, output: str | None, address: str | None) -> None:
    """TASK's event log (runs, deployments, stages, stops, errors by kind, retries), and for a task
    submitted as a Ray job, its driver's output."""
    from rayeval.actors.coordinator import TERMINAL, driver_gone
    from rayeval.tasks import find_task

    record = find_task(task, output=output, tags=_tags())
    shown = 0
    while True:
        events = record.get("events", [])
        for e in events[shown:]:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["t"]))
            click.echo(f"{stamp} {e['level']:<7} {e['message']}")
        shown = len(events)
        if not follow or record.get("state") in TERMINAL or driver_gone(record):
            break
        time.sleep(1.0)
        record = find_task(record["task_id"], output=output, tags=_tags())
    if record.get("submitted"):
        _job_logs(record["task_id"], address)


def _job_logs(job_id: str, address: str | None) -> None:
    import os

    from ray.job_submission import JobSubmissionClient

    dashboard = address or os.environ.get("RAY_ADDRESS") or "http://127.0.0.1:8265"
    try:
        text = JobSubmissionClient(dashboard).get_job_logs(job_id)
    except Exception as e:  # the cluster is gone, or the job was not submitted there
        click.echo(f"(driver output of job {job_id} not available from {dashboard}: {e})", err=True)
        return
    click.echo(f"--- driver output of Ray job {job_id}")
    click.echo(text.rstrip())


@main.command()
@click.argument("task")
@click.option("--failed", is_flag=True, help="Also run the items that failed again.")
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(dir_okay=False, exists=True),
    help="The task file, when the stored spec cannot be used (it held a literal credential).",
)
@click.option("--address", help="Ray cluster address (default: RAY_ADDRESS, a running cluster, or a new local one).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def restart(task: str, failed: bool, spec_file: str | None, address: str | None, as_json: bool, quiet: bool) -> None:
    """Run TASK again where it stopped: only items not in its results yet (and, with --failed, failed ones)."""
    import ray

    from rayeval.api import restart as restart_task
    from rayeval.report import format_summary

    _quiet_logging(False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    record = restart_task(
        task,
        failed=failed,
        spec=spec_file,
        address=address,
        on_progress=_progress_printer(quiet),
        log_to_driver=False,
        tags=_tags(),
    )
    click.echo(f"task {record['task_id']}: {record['state']} (run {record.get('runs', 1)})", err=True)
    click.echo(format_summary(record["summary"], "json" if as_json else "table"))


@main.command()
@click.argument("task")
@click.option("--address", help="Ray cluster address (default: RAY_ADDRESS or a running local cluster).")
@click.option("--no-wait", is_flag=True, help="Return at once instead of waiting for the task to stop.")
def stop(task: str, address: str | None, no_wait: bool) -> None:
    """Stop TASK (id or name): what was evaluated is kept and summarised, hosted models are released."""
    from rayeval.api import stop as stop_task

    record = stop_task(task, address=address, wait=None if no_wait else 120.0, tags=_tags())
    click.echo(f"task {record['task_id']}: {record['state']}")


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
    from rayeval.analysis import compute_results, format_results
    from rayeval.store import ResultsStore
    from rayeval.tasks import find_task

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
    if fmt == "table" and _reuse_note(record):
        click.echo(_reuse_note(record))


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
    from rayeval.analysis import render_report

    page = render_report(
        task, weights=weights, reference=reference, seed=seed, resamples=resamples, items=items, output=output,
        tags=_tags(),
    )  # fmt: skip
    Path(out).write_text(page, encoding="utf-8")
    click.echo(f"wrote {out} ({len(page) / 1024:.0f} KiB)")


@main.command()
@click.option("--address", help="Ray cluster address (default: RAY_ADDRESS or a running local cluster).")
@click.option("--detach", is_flag=True, help="Leave the UI running on the cluster and return.")
def ui(address: str | None, detach: bool) -> None:
    """Serve every task's report, and the progress of running tasks, from a Ray Serve application (on the
    Serve proxy: 127.0.0.1 unless RAYEVAL_SERVE_HOST says otherwise). Ctrl-C takes it down."""
    from rayeval.cluster import connect
    from rayeval.serve_apps.ui import start_ui, stop_ui

    connect(address, log_to_driver=False)
    url = start_ui(tags=_tags())
    click.echo(f"rayeval UI at {url}" + ("" if detach else " (Ctrl-C to stop)"))
    if detach:
        return
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop_ui()
        click.echo("rayeval UI stopped")


@main.command("check-service")
@click.argument("url")
@click.option("--model", "model_id", help="Served model id expected in /v1/models (default: the first listed).")
@click.option("--api", type=click.Choice(["chat", "completions"]), help="Endpoint kind (default: from URL, else chat).")
@click.option("--auth-header-key", default="Authorization", show_default=True)
@click.option("--auth-env", help="Environment variable holding the auth header value (e.g. 'Bearer sk-...').")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds per request.")
def check_service_cmd(
    url: str, model_id: str | None, api: str | None, auth_header_key: str, auth_env: str | None, timeout: float
) -> None:
    """Connectivity test of an OpenAI-compatible service: reachable, auth, model listed, one tiny request."""
    import os

    import httpx

    from rayeval.client import check_service, resolve_endpoint
    from rayeval.spec import ModelSpec

    auth = None
    if auth_env:
        if auth_env not in os.environ:
            raise RayevalError(f"environment variable {auth_env} is not set")
        auth = os.environ[auth_env]
    if model_id is None:
        probe = resolve_endpoint(ModelSpec(name="probe", url=url, api=api, auth_header_key=auth_header_key), auth)
        try:
            listed = httpx.get(f"{probe.base_url}/models", headers=probe.headers, timeout=timeout).json()["data"]
            model_id = listed[0]["id"]
        except Exception:
            model_id = "probe"
    spec = ModelSpec(name="probe", url=url, model=model_id, api=api, auth_header_key=auth_header_key)
    report = check_service(resolve_endpoint(spec, auth, timeout))
    click.echo(report.render())
    sys.exit(0 if report.ok else 1)


@main.command()
@click.argument("task_file", type=click.Path(dir_okay=False))
@click.option("--set", "set_name", help="The evaluation set whose metrics to try (may be left out with one set).")
@click.option("--samples", default=5, show_default=True, help="How many items, from the start of the set.")
@click.option("--model", help="Score this model's responses: asked now, or read from the set in Evaluation Only.")
@click.option(
    "--responses",
    "responses_file",
    type=click.Path(dir_okay=False, exists=True),
    help="Score these responses instead: JSON list or {item_id: response}, JSON Lines, or one per line.",
)
@click.option("--response", "typed", multiple=True, help="A response typed here (repeat: one per sample, in order).")
@click.option("--show-prompt", is_flag=True, help="Print each judge prompt without asking the judge.")
@click.option("--json", "as_json", is_flag=True, help="Print the samples as JSON.")
def debug(
    task_file: str,
    set_name: str | None,
    samples: int,
    model: str | None,
    responses_file: str | None,
    typed: tuple[str, ...],
    show_prompt: bool,
    as_json: bool,
) -> None:
    """Try a set's metrics on a few samples of TASK_FILE, printing every step; nothing is written."""
    from rayeval.debug import debug_metrics, format_debug
    from rayeval.spec import load_task

    if typed and responses_file:
        raise click.UsageError("give --responses or --response, not both")
    if (typed or responses_file) and model:
        raise click.UsageError("give --model or responses, not both")
    _quiet_logging(False)
    spec = load_task(task_file)
    given = list(typed) if typed else responses_file
    result = debug_metrics(spec, set_name, samples=samples, model=model, responses=given, show_prompt=show_prompt)
    if as_json:
        click.echo(json.dumps([s.as_dict() for s in result], ensure_ascii=False, indent=2))
    else:
        click.echo(format_debug(result, set_name=set_name or spec.evaluation_sets[0].name))


@main.command("models")
def models_cmd() -> None:
    """List the built-in models (use them with `builtin: NAME` in a task's models or judges)."""
    from rayeval.serve_apps.builtins import BUILTIN_MODELS

    for name, m in BUILTIN_MODELS.items():
        click.echo(f"{name:<26} {m.hub_id or '(built locally)':<38} {m.description}")


@main.command("metrics")
def metrics_cmd() -> None:
    """List the registered metrics."""
    from rayeval.metrics import list_metrics

    for name, description in list_metrics().items():
        click.echo(f"{name:<16} {description}")


@main.command("eval-checkpoint")
@click.argument("checkpoint")
@click.option("--sets", required=True, help="Built-in sets, comma-separated (e.g. gsm8k,humaneval).")
@click.option("--name", help="Task name (default: eval-<checkpoint folder name>).")
@click.option("--data", multiple=True, metavar="SET=FOLDER", help="A set's folder in the OpenCompass data layout.")
@click.option("--limit", type=int, help="Evaluate only the first N items of each set.")
@click.option("--max-model-len", type=int, help="The engine's MAX_MODEL_LEN (default 8192).")
@click.option("--max-tokens", type=int, help="Most tokens per answer.")
@click.option("--output", help="Results location (default: rayeval-results).")
@click.option("--address", help="Ray cluster address (default: RAY_ADDRESS, a running cluster, or a new local one).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def eval_checkpoint(
    checkpoint: str,
    sets: str,
    name: str | None,
    data: tuple[str, ...],
    limit: int | None,
    max_model_len: int | None,
    max_tokens: int | None,
    output: str | None,
    address: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Evaluate a training CHECKPOINT: host it on Ray Serve with vLLM, run the built-in sets with their
    default metrics (greedy decoding), print the summary, take the deployment down."""

    from rayeval.api import checkpoint_task

    folders = {}
    for item in data:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise click.UsageError(f"--data takes SET=FOLDER, got {item!r}")
        folders[key.strip()] = value.strip()
    spec = checkpoint_task(
        checkpoint,
        [s.strip() for s in sets.split(",") if s.strip()],
        name=name,
        data=folders,
        limit=limit,
        max_model_len=max_model_len,
        max_tokens=max_tokens,
        output=output,
    )
    _run_and_print(spec, address=address, quiet=quiet, verbose=False, fmt="json" if as_json else "table")


@main.group("datasets")
def datasets_group() -> None:
    """Built-in evaluation sets: list, preview, prefetch for air-gapped clusters."""


@datasets_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def datasets_list(as_json: bool) -> None:
    """The built-in sets, with their default metrics, prompt format and data sources."""
    from rayeval.evalsets import list_builtin_sets

    rows = [
        {
            "name": b.name,
            "description": b.description,
            "metrics": [m if isinstance(m, str) else m["name"] for m in b.metrics],
            "prompt": b.prompt,
            "opencompass_folder": f"{b.folder}/ holding {b.layout}",
            "package": b.package,
            "hub": b.hub,
        }
        for b in list_builtin_sets().values()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        click.echo(f"{r['name']:<10} {r['description']}")
        click.echo(f"{'':<10} metrics: {', '.join(r['metrics'])}; prompt: {r['prompt']}")
        sources = [f"folder {r['opencompass_folder']}"]
        sources += [f"package {r['package']}"] if r["package"] else []
        sources += [f"hub {r['hub']}"] if r["hub"] else []
        click.echo(f"{'':<10} sources: {'; '.join(sources)}")


@datasets_group.command("preview")
@click.argument("name")
@click.option("--path", help="The set's folder in the OpenCompass data layout (default: package or hub).")
@click.option("--n", "count", default=5, show_default=True, help="Items to show.")
@click.option("--shots", type=int, help="Few-shot examples in each prompt (default: the set's own).")
@click.option("--json", "as_json", is_flag=True, help="Print the items as JSON lines.")
def datasets_preview(name: str, path: str | None, count: int, shots: int | None, as_json: bool) -> None:
    """The first items of built-in set NAME as rayeval sends them: id, prompt and reference."""
    from rayeval.evalsets import materialize

    file = materialize(name, path, shots)
    with open(file, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= count:
                break
            if as_json:
                click.echo(line.rstrip("\n"))
                continue
            row = json.loads(line)
            click.echo(f"--- {row['id']}")
            click.echo(row["query"])
            click.echo(f">>> reference: {row['reference']}")


@datasets_group.command("prefetch")
@click.argument("name")
@click.option("--to", "to_dir", required=True, type=click.Path(file_okay=False), help="The folder to prepare.")
@click.option("--path", help="Read from this OpenCompass-layout folder instead of the package or the hub.")
@click.option("--shots", type=int, help="Few-shot examples in each prompt (default: the set's own).")
def datasets_prefetch(name: str, to_dir: str, path: str | None, shots: int | None) -> None:
    """Prepare built-in set NAME in a folder to copy to an air-gapped cluster (then `path: DIR/<folder>`)."""
    from rayeval.evalsets import prefetch

    folder, rows = prefetch(name, to_dir, path=path, shots=shots)
    click.echo(f"wrote {rows} items of {name} to {folder}; in a task: builtin: {name}, path: {folder}")


if __name__ == "__main__":
    main()
