"""Commands on tasks: run, submit, eval-checkpoint, status, list, logs, stop, restart, copy, delete."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import click

from rayeval.analysis.text import (
    LIST_HEADER,
    format_summary,
    list_line,
    parameter_lines,
    progress_bar,
    progress_lines,
    reuse_note,
)
from rayeval.cli.group import caller_tags_option as _tags
from rayeval.cli.group import main, server_client
from rayeval.cli.progress import notice_once, progress_printer, quiet_logging, run_and_print
from rayeval.cli.remote import (
    remote_copy,
    remote_delete,
    remote_list,
    remote_logs,
    remote_restart,
    remote_run,
    remote_status,
    remote_stop,
)
from rayeval.records import TaskRecord, progress_fraction

__all__ = [
    "copy",
    "delete",
    "eval_checkpoint",
    "eval_cmd",
    "list_cmd",
    "logs",
    "restart",
    "run",
    "status",
    "stop",
    "submit",
]


def _no_reuse_flags(reuse: bool, reuse_from: tuple[str, ...]) -> None:
    if reuse or reuse_from:
        raise click.UsageError("through a server, turn reuse on in the task file (`reuse: true` or `{tasks: [...]}`)")


def _reuse_options(command):
    """--reuse and --reuse-from: turn on reuse of earlier results for this run (the task file's `reuse`)."""
    command = click.option(
        "--reuse-from",
        "reuse_from",
        multiple=True,
        metavar="TASK",
        help="Reuse results only from this earlier task (id or name; repeat for several). Turns reuse on.",
    )(command)
    return click.option(
        "--reuse",
        is_flag=True,
        help="Take items earlier tasks evaluated with the same fingerprints instead of evaluating them again "
        "(off unless the task file says `reuse: true`).",
    )(command)


def _task_with_reuse(task_file: str, reuse: bool, reuse_from: tuple[str, ...]) -> Any:
    """The task file, or its task with reuse turned on by the command line; the one-time notice that reuse
    is off by default goes to a task file that does not say."""
    from rayeval.api import with_reuse

    spec = with_reuse(task_file, reuse=reuse, sources=reuse_from)
    if "reuse" not in spec.model_fields_set:
        notice_once(
            "reuse-off-by-default",
            "rayeval: note: reuse of earlier tasks' results is off unless turned on (`reuse: true` in the task "
            "file, or --reuse / --reuse-from TASK); earlier versions had it on by default. (Said once.)",
            show=_used_before(),
        )
    return spec


def _used_before() -> bool:
    """This $RAYEVAL_HOME's task index holds tasks (its user may count on the old default), or is not a local
    folder to look in. A first run on a fresh machine has nothing to reuse: no notice."""
    from rayeval.paths import index_location

    location = index_location()
    if "://" in location:
        return True
    folder = Path(location)
    return folder.is_dir() and any(folder.iterdir())


@main.command()
@click.argument("task_file", type=click.Path(dir_okay=False))
@click.option(
    "--address",
    help="Ray cluster address (default: RAY_ADDRESS, else a local cluster started for this run; never one that "
    "merely runs on this machine).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--verbose", is_flag=True, help="Also print the workers' logs (Serve replicas, vLLM engines, actors).")
@_reuse_options
def run(
    task_file: str, address: str | None, as_json: bool, quiet: bool, verbose: bool, reuse: bool, reuse_from: tuple
) -> None:
    """Run TASK_FILE on the current Ray cluster (or a local one) and print its summary."""
    if (remote := server_client()) is not None:
        _no_reuse_flags(reuse, reuse_from)
        return remote_run(remote, task_file, wait=True, as_json=as_json)
    spec = _task_with_reuse(task_file, reuse, reuse_from)
    run_and_print(spec, address=address, quiet=quiet, verbose=verbose, fmt="json" if as_json else "table")


@main.command()
@click.argument("task_file", type=click.Path(dir_okay=False))
@click.option("--address", help="Ray dashboard address (default: RAY_ADDRESS or http://127.0.0.1:8265).")
@click.option("--wait", is_flag=True, help="Wait for the task to end and print its summary.")
@click.option("--no-ship", is_flag=True, help="Use the rayeval installed on the cluster instead of uploading this one.")
@_reuse_options
def submit(task_file: str, address: str | None, wait: bool, no_ship: bool, reuse: bool, reuse_from: tuple) -> None:
    """Submit TASK_FILE as a Ray job; prints the task id (also the job's submission id)."""
    if (remote := server_client()) is not None:
        _no_reuse_flags(reuse, reuse_from)
        return remote_run(remote, task_file, wait=wait)
    from rayeval.api import submit as submit_task

    spec = _task_with_reuse(task_file, reuse, reuse_from)
    handle = submit_task(spec, address=address, ship_package=not no_ship)
    click.echo(handle.task_id)
    if wait:
        from rayeval.jobs.submit import follow_job_logs

        follow_job_logs(handle.dashboard, handle.job_id, lambda text: click.echo(text, nl=False))
        record = handle.wait(timeout=60)  # the job has ended: its record says how the task did
        if record.get("unreadable"):
            click.echo(f"task {handle.task_id} finished: {record['unreadable']}")
        else:
            click.echo(format_summary(handle.results()))


@main.command()
@click.argument("task", required=False)
@click.option("--output", help="Also look for tasks in this output location.")
@click.option(
    "--address",
    help="The cluster: its dashboard (http://HEAD:8265, reached through the Jobs API) or its address "
    "(HEAD:6379); default RAY_ADDRESS. Without one, the local index.",
)
@click.option("--json", "as_json", is_flag=True, help="Print records as JSON.")
def status(task: str | None, output: str | None, address: str | None, as_json: bool) -> None:
    """Show one task's state and progress per model and set, or list every task."""
    if (remote := server_client()) is not None:
        return remote_status(remote, task, as_json)
    from rayeval.records import shown_state

    records = [shown_state(r) for r in _records(task, address, output)]
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
    click.echo(progress_bar(r))
    for line in progress_lines(r):
        click.echo(f"  {line}")
    for line in parameter_lines(r):
        click.echo(f"  {line}")
    for model, d in r.get("deployments", {}).items():
        click.echo(f"  deployment of {model}: {d.get('state')} (Serve app {d.get('app')}) {d.get('message', '')}")
    for stage, nodes in (r.get("placement") or {}).items():
        click.echo(f"  {stage} actors ran on {len(nodes)} node(s): {', '.join(n[:12] for n in nodes)}")
    if reuse_note(r):
        click.echo(reuse_note(r))
    if r.get("error"):
        click.echo(f"error: {r['error']}")


@main.command("list")
@click.option("--state", help="Only tasks in this state (running, succeeded, failed, stopped, interrupted...).")
@click.option("--tag", help="Only tasks with this tag.")
@click.option("--output", help="Also list the tasks in this output location.")
@click.option(
    "--address",
    help="The cluster: its dashboard (http://HEAD:8265, reached through the Jobs API) or its address "
    "(HEAD:6379); default RAY_ADDRESS. Without one, the local index.",
)
@click.option("--json", "as_json", is_flag=True, help="Print records as JSON.")
def list_cmd(state: str | None, tag: str | None, output: str | None, address: str | None, as_json: bool) -> None:
    """List tasks: name, state, progress, models, sets, mode, tags, creator, creation time, remarks."""
    if (remote := server_client()) is not None:
        return remote_list(remote, state, tag, as_json)
    from rayeval.actors.index import filter_tasks

    records = filter_tasks(_records(None, address, output), state=state, tag=tag)
    if as_json:
        click.echo(json.dumps(records, indent=2, default=str))
        return
    if not records:
        click.echo("no tasks" + (" matching" if state or tag else " yet"))
        return
    click.echo(LIST_HEADER)
    for r in records:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.get("created_at", 0)))
        click.echo(list_line(r, progress_fraction(r), created))


@main.command()
@click.argument("task")
@click.option("--output", help="Also look for the task in this output location.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(task: str, output: str | None, yes: bool) -> None:
    """Delete TASK (id or name): its record and all its results. A running task must be stopped first."""
    if (remote := server_client()) is not None:
        return remote_delete(remote, task, yes)
    from rayeval.actors.index import find_task
    from rayeval.api import delete as delete_task

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
    if (remote := server_client()) is not None:
        if to_file:
            raise click.UsageError("--to writes the task file here: not through a server (copy runs it there)")
        return remote_copy(remote, task, name, parsed)
    spec = copy_spec(task, name=name, overrides=parsed, output=output, tags=_tags())
    if to_file:
        with open(to_file, "w", encoding="utf-8") as f:
            yaml.safe_dump(spec.redacted(), f, sort_keys=False)
        click.echo(f"wrote task {spec.name} to {to_file}")
        return
    run_and_print(spec, address=None, quiet=quiet, verbose=False, fmt="table")


@main.command()
@click.argument("task")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the task ends.")
@click.option("--output", help="Also look for the task in this output location.")
@click.option(
    "--address",
    help="The cluster: its dashboard (http://HEAD:8265, reached through the Jobs API) or its address "
    "(HEAD:6379); default RAY_ADDRESS. Without one, the local index.",
)
def logs(task: str, follow: bool, output: str | None, address: str | None) -> None:
    """TASK's event log (runs, deployments, stages, stops, errors by kind, retries), and for a task
    submitted as a Ray job, its driver's output."""
    if (remote := server_client()) is not None:
        return remote_logs(remote, task, follow)
    from rayeval.records import TERMINAL, driver_gone

    record = _records(task, address, output)[0]
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
        record = _records(record["task_id"], address, output)[0]
    if record.get("submitted"):
        _job_logs(record["task_id"], address)


def _records(task: str | None, address: str | None, output: str | None) -> list[TaskRecord]:
    """One task's record (`task`), or every task's, visible to the caller's tags: from the cluster's
    coordinator when an address is given (or RAY_ADDRESS), through its dashboard for an http:// one;
    else from the local index (and `output`)."""
    from rayeval.actors.index import find_task, list_tasks
    from rayeval.cluster.remote import cluster_errors, is_dashboard, query

    address = address or os.environ.get("RAY_ADDRESS")
    if is_dashboard(address):
        return [query(address, "get", task, tags=_tags())] if task else query(address, "list", tags=_tags())
    if address:
        import ray

        from rayeval.actors.coordinator import get_coordinator
        from rayeval.cluster import connect
        from rayeval.errors import TaskNotFoundError

        with cluster_errors(address):
            connect(address, log_to_driver=False)
        coordinator = get_coordinator(create=False)
        if task is None:
            return ray.get(coordinator.list_tasks.remote(_tags())) if coordinator is not None else []
        record = ray.get(coordinator.get.remote(task, _tags())) if coordinator is not None else None
        if record is None:
            raise TaskNotFoundError(f"the cluster's coordinator knows no task '{task}' visible to your tags")
        return [record]
    return [find_task(task, output=output, tags=_tags())] if task else list_tasks(tags=_tags(), output=output)


def _job_logs(job_id: str, address: str | None) -> None:
    from rayeval.cluster.remote import is_dashboard, jobs_client

    address = address or os.environ.get("RAY_ADDRESS")
    dashboard = address if is_dashboard(address) else "http://127.0.0.1:8265"
    try:
        text = jobs_client(dashboard).get_job_logs(job_id)
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
@click.option(
    "--if-running",
    type=click.Choice(["refuse", "wait"]),
    default="refuse",
    show_default=True,
    help="When a run of TASK is alive (another restart, or its first run): refuse, or wait for it to end.",
)
def restart(
    task: str, failed: bool, spec_file: str | None, address: str | None, as_json: bool, quiet: bool, if_running: str
) -> None:
    """Run TASK again where it stopped: only items not in its results yet (and, with --failed, failed ones).
    A task has one live run at a time: a second restart is refused (or waits, --if-running wait)."""
    if (remote := server_client()) is not None:
        return remote_restart(remote, task, failed, spec_file)
    import ray

    from rayeval.api import restart as restart_task

    quiet_logging(False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    printer = progress_printer(quiet)
    try:
        record = restart_task(
            task,
            failed=failed,
            spec=spec_file,
            address=address,
            on_progress=printer,
            log_to_driver=False,
            tags=_tags(),
            if_running=if_running,
        )
    finally:
        printer.close()
    click.echo(f"task {record['task_id']}: {record['state']} (run {record.get('runs', 1)})", err=True)
    click.echo(format_summary(record["summary"], "json" if as_json else "table"))


@main.command()
@click.argument("task")
@click.option(
    "--address",
    help="The cluster: its dashboard (http://HEAD:8265, reached through the Jobs API) or its address "
    "(HEAD:6379); default RAY_ADDRESS. Without one, a running local cluster.",
)
@click.option("--no-wait", is_flag=True, help="Return at once instead of waiting for the task to stop.")
def stop(task: str, address: str | None, no_wait: bool) -> None:
    """Stop TASK (id or name): what was evaluated is kept and summarised, hosted models are released."""
    if (remote := server_client()) is not None:
        return remote_stop(remote, task, None if no_wait else 120.0)
    from rayeval.api import stop as stop_task
    from rayeval.cluster.remote import cluster_errors, is_dashboard, query

    address = address or os.environ.get("RAY_ADDRESS")
    wait = None if no_wait else 120.0
    if is_dashboard(address):
        record = query(address, "stop", task, tags=_tags(), wait=wait)
    else:
        with cluster_errors(address or "the local cluster"):
            record = stop_task(task, address=address, wait=wait, tags=_tags())
    click.echo(f"task {record['task_id']}: {record['state']}")


def _quick_eval_options(command):
    """The options `eval` and `eval-checkpoint` share: the sets, the run, and a hosted model's resources."""
    options = [
        click.option("--sets", required=True, help="Built-in sets, comma-separated (e.g. gsm8k,humaneval)."),
        click.option("--limit", type=int, help="Evaluate only the first N items of each set."),
        click.option(
            "--data", multiple=True, metavar="SET=FOLDER", help="A set's folder in the OpenCompass data layout."
        ),
        click.option("--max-model-len", type=int, help="A hosted model's MAX_MODEL_LEN (default 8192)."),
        click.option("--max-tokens", type=int, help="Most tokens per answer."),
        click.option("--gpus-per-replica", type=float, help="GPUs one replica takes (0: vLLM on CPU)."),
        click.option("--tensor-parallel-size", type=int, help="GPUs one replica's model is split over."),
        click.option("--accelerator-type", help="GPU type to schedule on, e.g. A10G, H100."),
        click.option("--replicas", type=int, help="Replicas of a hosted model (default 1)."),
        click.option("--name", help="Task name (default: eval-<model>)."),
        click.option("--output", help="Results location (default: rayeval-results)."),
        click.option(
            "--address",
            help="Ray cluster address (default: RAY_ADDRESS, else a local cluster started for this run; never one "
            "that merely runs on this machine).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        command = option(command)
    return _reuse_options(command)


@main.command("eval")
@click.option(
    "--model",
    "model",
    required=True,
    help="An OpenAI-compatible URL (http://host:8000/v1), a built-in model (`rayeval models`), or a checkpoint "
    "folder to host on Ray Serve + vLLM.",
)
@click.option("--served-model", help="A URL's model id (default: the one model its /models lists).")
@click.option("--auth-env", help="For a URL: the environment variable holding the Authorization header's value.")
@click.option("--save", type=click.Path(dir_okay=False), help="Also write the task file here (to run it again).")
@_quick_eval_options
def eval_cmd(model: str, save: str | None, **options: Any) -> None:
    """Evaluate one model on built-in sets in one line (greedy, the sets' default metrics): prints the task
    file it runs, then runs it like `rayeval run`."""
    _quick_eval(model, save=save, **options)


@main.command("eval-checkpoint")
@click.argument("checkpoint")
@_quick_eval_options
def eval_checkpoint(checkpoint: str, **options: Any) -> None:
    """Evaluate a training CHECKPOINT: host it on Ray Serve with vLLM, run the built-in sets with their
    default metrics (greedy decoding), print the summary, take the deployment down (`eval --model PATH`)."""
    _quick_eval(checkpoint, save=None, show=False, **options)


def _quick_eval(
    model: str,
    *,
    sets: str,
    data: tuple[str, ...],
    address: str | None,
    as_json: bool,
    quiet: bool,
    save: str | None,
    show: bool = True,
    gpus_per_replica: float | None,
    tensor_parallel_size: int | None,
    accelerator_type: str | None,
    replicas: int | None,
    reuse: bool,
    reuse_from: tuple[str, ...],
    **options: Any,
) -> None:
    import yaml

    from rayeval.api import eval_task_data
    from rayeval.spec import parse_task

    engine = {
        "gpus_per_replica": gpus_per_replica,
        "tensor_parallel_size": tensor_parallel_size,
        "accelerator_type": accelerator_type,
        "replicas": replicas,
    }
    task = eval_task_data(
        model, [s.strip() for s in sets.split(",") if s.strip()], data=_set_folders(data), engine=engine, **options
    )
    if reuse or reuse_from:
        task["reuse"] = {"tasks": list(reuse_from)} if reuse_from else True
    spec = parse_task(task, source=f"rayeval eval --model {model}")
    text = yaml.safe_dump(task, sort_keys=False, allow_unicode=True)
    if save:
        Path(save).write_text(text, encoding="utf-8")
    if show and not quiet:
        click.echo("rayeval: the task file of this run" + (f" (saved to {save})" if save else "") + ":", err=True)
        click.echo("\n".join(f"  {line}" for line in text.rstrip().splitlines()), err=True)
    run_and_print(spec, address=address, quiet=quiet, verbose=False, fmt="json" if as_json else "table")


def _set_folders(data: tuple[str, ...]) -> dict[str, str]:
    """--data SET=FOLDER options as a mapping."""
    folders = {}
    for item in data:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise click.UsageError(f"--data takes SET=FOLDER, got {item!r}")
        folders[key.strip()] = value.strip()
    return folders
