"""Finding tasks and their records without a Ray connection, from the coordinator's on-disk index."""

from __future__ import annotations

from typing import Any

import pyarrow.fs as pafs

from rayeval.actors.coordinator import default_home
from rayeval.errors import TaskNotFoundError
from rayeval.store import ResultsStore

__all__ = ["delete_task", "filter_tasks", "find_task", "list_tasks"]


def list_tasks(home: str | None = None) -> list[dict[str, Any]]:
    """Every task record found through the index under RAYEVAL_HOME, newest first."""
    index = ResultsStore((home or default_home()).rstrip("/") + "/tasks")
    records = []
    for task_id in index.task_ids():
        pointer = index.read_json(task_id, "task.json") or {}
        if "output" not in pointer:
            continue
        record = ResultsStore(pointer["output"]).read_json(task_id, "task.json")
        if record:
            records.append(record)
    return sorted(records, key=lambda r: r.get("created_at", 0), reverse=True)


def find_task(key: str, *, output: str | None = None, home: str | None = None) -> dict[str, Any]:
    """A task record by id or name (the newest with that name).

    Args:
        key: Task id or task name.
        output: An output location to look in too (for tasks run with another RAYEVAL_HOME).
        home: The coordinator's home (default: RAYEVAL_HOME or ~/.rayeval).

    Raises:
        TaskNotFoundError: nothing matches.
    """
    records = list_tasks(home)
    if output:
        store = ResultsStore(output)
        records += [r for r in (store.read_json(t, "task.json") for t in store.task_ids()) if r]
    for r in records:
        if r.get("task_id") == key:
            return r
    named = [r for r in records if r.get("name") == key]
    if named:
        return max(named, key=lambda r: r.get("created_at", 0))
    where = f"{home or default_home()}" + (f" or {output}" if output else "")
    raise TaskNotFoundError(
        f"no task with id or name '{key}' in {where}; run `rayeval status` to list tasks, "
        "or pass --output with the task's output location"
    )


def filter_tasks(records: list[dict[str, Any]], *, state: str | None = None, tag: str | None = None) -> list[dict]:
    """The records in `state` (a task whose driver went silent counts as 'interrupted') and with `tag`."""
    from rayeval.actors.coordinator import driver_gone

    out = []
    for r in records:
        shown = r.get("state")
        if shown in ("pending", "running", "stopping") and driver_gone(r):
            shown = "interrupted"
        if (state is None or shown == state) and (tag is None or tag in r.get("tags", [])):
            out.append({**r, "state": shown})
    return out


def delete_task(key: str, *, output: str | None = None, home: str | None = None) -> dict[str, Any]:
    """Remove a task's record, its index entry and its results folder; returns the record it had.

    Raises:
        TaskNotFoundError: nothing matches.
        RayevalError: the task is still running (stop it first).
    """
    from rayeval.actors.coordinator import driver_gone
    from rayeval.errors import RayevalError

    record = find_task(key, output=output, home=home)
    task_id = record["task_id"]
    if record.get("state") in ("pending", "running", "stopping") and not driver_gone(record):
        raise RayevalError(f"task {task_id} is {record['state']}; stop it first: `rayeval stop {task_id}`")
    store = ResultsStore(record["output"])
    if store.fs.get_file_info(store.path(task_id)).type != pafs.FileType.NotFound:
        store.delete_task(task_id)
    index = ResultsStore((home or default_home()).rstrip("/") + "/tasks")
    if index.fs.get_file_info(index.path(task_id)).type != pafs.FileType.NotFound:
        index.delete_task(task_id)
    return record
