"""`rayeval ui`: the reports of every task, and the progress of running ones, served by a Ray Serve
application (on the Serve proxy, which listens on 127.0.0.1 unless RAYEVAL_SERVE_HOST says otherwise).

Routes under the application's prefix (default `/rayeval`): `/` lists the tasks with their state and
progress (the page refreshes itself while any runs), `/task/{id}` is the task's report (the same page
as `rayeval report`), and `/api/tasks` the list as JSON.
"""

from __future__ import annotations

import html
import os
import time
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from ray import serve

from rayeval.records import ACTIVE, TaskRecord

__all__ = ["APP_NAME", "ROUTE_PREFIX", "ReportUI", "start_ui", "stop_ui"]

APP_NAME = "rayeval-ui"
ROUTE_PREFIX = "/rayeval"

api = FastAPI(title="rayeval", docs_url=None, redoc_url=None)


def _row(record: TaskRecord) -> dict[str, Any]:
    from rayeval.analysis.text import progress_lines
    from rayeval.records import progress_fraction

    return {
        "task_id": record["task_id"],
        "name": record.get("name"),
        "mode": record.get("mode"),
        "state": record.get("state"),
        "progress": round(progress_fraction(record), 4),
        "models": record.get("models", []),
        "eval_sets": record.get("eval_sets", []),
        "created_at": record.get("created_at"),
        "lines": progress_lines(record),
    }


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class ReportUI:
    """The pages, built on request from the coordinator's records and the results stores."""

    def __init__(self, tags: list[str] | None = None):
        self.tags = tags

    def _records(self) -> list[dict[str, Any]]:
        import ray

        from rayeval.actors.coordinator import get_coordinator

        coordinator = get_coordinator(create=False)
        return ray.get(coordinator.list_tasks.remote(self.tags)) if coordinator is not None else []

    @api.get("/api/tasks")
    def tasks(self) -> list[dict[str, Any]]:
        """Every task visible to the UI's tags, newest first, with its progress."""
        return [_row(r) for r in self._records()]

    @api.get("/", response_class=HTMLResponse)
    def index(self) -> str:
        rows = [_row(r) for r in self._records()]
        running = any(r["state"] in ACTIVE for r in rows)
        refresh = '<meta http-equiv="refresh" content="5">' if running else ""
        body = "".join(
            f"<tr><td><a href='task/{html.escape(r['task_id'])}'>{html.escape(r['task_id'])}</a></td>"
            f"<td>{html.escape(str(r['mode']))}</td><td class='state'>{html.escape(str(r['state']))}</td>"
            f"<td><progress max='1' value='{r['progress']}'></progress> {100 * r['progress']:.1f}%</td>"
            f"<td><pre>{html.escape(chr(10).join(r['lines']))}</pre></td></tr>"
            for r in rows
        )
        return (
            f"<!doctype html><html><head><meta charset='utf-8'>{refresh}<title>rayeval tasks</title>"
            "<style>body{font:14px system-ui,sans-serif;margin:24px}td,th{padding:4px 10px;border-bottom:1px solid "
            "#ddd;text-align:left;vertical-align:top}pre{margin:0;font-size:12px}</style></head><body>"
            f"<h1>rayeval tasks</h1><p>{len(rows)} task(s), {time.strftime('%H:%M:%S')}"
            f"{' · refreshing every 5 s while tasks run' if running else ''}</p>"
            "<table id='tasks'><tr><th>task</th><th>mode</th><th>state</th><th>progress</th>"
            f"<th>by model and set</th></tr>{body}</table></body></html>"
        )

    @api.get("/task/{task_id}", response_class=HTMLResponse)
    def task(self, task_id: str) -> str:
        from rayeval.analysis import render_report
        from rayeval.errors import RayevalError

        record = next((r for r in self._records() if r["task_id"] == task_id), None)
        if record is None:
            raise HTTPException(status_code=404, detail=f"no task {task_id}")
        try:
            return render_report(task_id, output=record["output"], tags=self.tags)
        except RayevalError as e:
            raise HTTPException(status_code=409, detail=f"task {task_id} has no results to show yet: {e}") from None


def start_ui(tags: list[str] | None = None, route_prefix: str = ROUTE_PREFIX) -> str:
    """Deploy the UI on the connected cluster (starting Serve if needed); returns its URL."""
    from rayeval.serve_apps.hosting import DEFAULT_HOST, ensure_serve

    port = ensure_serve()
    serve.run(ReportUI.bind(tags), name=APP_NAME, route_prefix=route_prefix, blocking=False)
    host = os.environ.get("RAYEVAL_SERVE_HOST", DEFAULT_HOST)
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}{route_prefix}/"


def stop_ui() -> None:
    """Take the UI down."""
    serve.delete(APP_NAME)
