"""The task commands when the caller named a `rayeval server` (`rayeval --server URL`, RAYEVAL_SERVER): the
same output as through Ray, from the server's JSON API (rayeval.server.client)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import click

from rayeval.analysis.text import LIST_HEADER, format_summary, list_line
from rayeval.server.client import ServerClient

__all__ = [
    "remote_copy",
    "remote_delete",
    "remote_item",
    "remote_list",
    "remote_logs",
    "remote_report",
    "remote_restart",
    "remote_results",
    "remote_run",
    "remote_status",
    "remote_stop",
]


def _created(row: dict[str, Any]) -> str:
    return (row.get("created_at") or "").replace("T", " ")[:16]


def _task_file(path: str) -> tuple[str, bool]:
    """A task file's text, and whether it is JSON (else YAML)."""
    return Path(path).read_text(encoding="utf-8"), path.lower().endswith(".json")


def remote_run(server: ServerClient, task_file: str, *, wait: bool, as_json: bool = False) -> None:
    """`submit` (and `run`, which waits and prints the summary): the task runs as the server's Ray job."""
    text, is_json = _task_file(task_file)
    done = server.submit(text, json_body=is_json)
    task_id = done["task_id"]
    click.echo(task_id)
    if not wait:
        return
    status = server.wait(task_id)
    click.echo(f"task {task_id}: {status['state']}", err=True)
    if status.get("error"):
        click.echo(f"error: {status['error']}", err=True)
    click.echo(format_summary(status.get("summary") or [], "json" if as_json else "table"))


def remote_status(server: ServerClient, task: str | None, as_json: bool) -> None:
    if task is None:
        remote_list(server, None, None, as_json)
        return
    s = server.status(task)
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    click.echo(f"task {s['task_id']} ({s.get('mode')}): {s['state']} {100 * s['progress']:.1f}%")
    for line in s.get("lines", []):
        click.echo(f"  {line}")
    if s.get("error"):
        click.echo(f"error: {s['error']}")


def remote_list(server: ServerClient, state: str | None, tag: str | None, as_json: bool) -> None:
    rows = server.tasks(state=state, tag=tag)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no tasks" + (" matching" if state or tag else " yet"))
        return
    click.echo(LIST_HEADER)
    for r in rows:
        click.echo(list_line(r, r["progress"], _created(r)))


def remote_logs(server: ServerClient, task: str, follow: bool) -> None:
    for e in server.events(task, follow=follow):
        stamp = datetime.datetime.fromisoformat(e["at"]).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{stamp} {e['level']:<7} {e['message']}")


def remote_stop(server: ServerClient, task: str, wait: float | None) -> None:
    done = server.stop(task, wait)
    click.echo(f"task {done['task_id']}: {done.get('state') or 'stopping'}")


def remote_restart(server: ServerClient, task: str, failed: bool, spec_file: str | None) -> None:
    spec = Path(spec_file).read_text(encoding="utf-8") if spec_file else None
    done = server.restart(task, failed=failed, spec=spec)
    click.echo(f"task {done['task_id']}: restarted as a Ray job of the server ({done.get('job_id')})")


def remote_copy(server: ServerClient, task: str, name: str | None, overrides: dict[str, Any]) -> None:
    done = server.copy(task, name=name, overrides=overrides)
    click.echo(done["task_id"])


def remote_delete(server: ServerClient, task: str, yes: bool) -> None:
    if not yes:
        click.confirm(f"delete task {task} and its results?", abort=True)
    done = server.delete(task)
    click.echo(f"deleted task {done['task_id']}")


def remote_results(server: ServerClient, task: str, fmt: str, **params: Any) -> None:
    from rayeval.analysis import format_results
    from rayeval.analysis.board import Results

    click.echo(format_results(Results.from_dict(server.results(task, **params)), fmt))


def remote_item(server: ServerClient, task: str, item_id: str, as_json: bool, **params: Any) -> None:
    from rayeval.analysis import format_item
    from rayeval.analysis.item import ItemView

    views = server.item(task, item_id, **params)
    click.echo(json.dumps(views, indent=2) if as_json else format_item([ItemView.from_dict(v) for v in views]))


def remote_report(server: ServerClient, task: str, out: str, **params: Any) -> None:
    page = server.report(task, **params)
    Path(out).write_text(page, encoding="utf-8")
    click.echo(f"wrote {out} ({len(page) / 1024:.0f} KiB)")
