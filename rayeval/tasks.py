"""Finding tasks and their records without a Ray connection, from the coordinator's on-disk index."""

from __future__ import annotations

import os
from typing import Any

import pyarrow.fs as pafs

from rayeval.actors.coordinator import default_home, driver_gone, match_task, visible
from rayeval.errors import TaskNotFoundError
from rayeval.store import ResultsStore

__all__ = ["TAGS_ENV", "caller_tags", "delete_task", "filter_tasks", "find_task", "list_tasks", "shown_state"]

#: Environment variable holding the tags a caller presents (comma-separated), when not given otherwise.
TAGS_ENV = "RAYEVAL_TAGS"


def caller_tags(tags: Any = None) -> list[str] | None:
    """The tags a caller presents: `tags` (a list, or a comma-separated string), else $RAYEVAL_TAGS;
    None when it presents none (it then sees every task)."""
    if tags is None:
        tags = os.environ.get(TAGS_ENV) or None
    if tags is None:
        return None
    if isinstance(tags, str):
        tags = tags.split(",")
    return sorted({t.strip() for t in tags if t and t.strip()}) or None


def list_tasks(home: str | None = None, *, tags: Any = None, output: str | None = None) -> list[dict[str, Any]]:
    """Every task record found through the index under RAYEVAL_HOME, and in `output` if given, newest
    first (those visible to the caller's tags: see `caller_tags`)."""
    tags = caller_tags(tags)
    index = ResultsStore((home or default_home()).rstrip("/") + "/tasks")
    records = []
    for task_id in index.task_ids():
        pointer = index.read_json(task_id, "task.json") or {}
        if "output" not in pointer:
            continue
        record = ResultsStore(pointer["output"]).read_json(task_id, "task.json")
        if record and visible(record, tags):
            records.append(record)
    if output:  # tasks run with another RAYEVAL_HOME
        store = ResultsStore(output)
        known = {r["task_id"] for r in records}
        found = (store.read_json(t, "task.json") for t in store.task_ids())
        records += [r for r in found if r and r["task_id"] not in known and visible(r, tags)]
    return sorted(records, key=lambda r: r.get("created_at", 0), reverse=True)


def find_task(key: str, *, output: str | None = None, home: str | None = None, tags: Any = None) -> dict[str, Any]:
    """A task record by id or name (the newest with that name), among those visible to the caller's tags.

    Args:
        key: Task id or task name.
        output: An output location to look in too (for tasks run with another RAYEVAL_HOME).
        home: The coordinator's home (default: RAYEVAL_HOME or ~/.rayeval).
        tags: The caller's tags (default $RAYEVAL_TAGS): tasks carrying none of them are not found.

    Raises:
        TaskNotFoundError: nothing matches.
    """
    tags = caller_tags(tags)
    record = match_task(list_tasks(home, tags=tags, output=output), key)
    if record is not None:
        return record
    where = f"{home or default_home()}" + (f" or {output}" if output else "")
    if tags is not None:
        where += f" visible to the tags you present ({', '.join(tags)})"
    raise TaskNotFoundError(
        f"no task with id or name '{key}' in {where}; run `rayeval status` to list tasks, "
        "or pass --output with the task's output location"
    )


def filter_tasks(records: list[dict[str, Any]], *, state: str | None = None, tag: str | None = None) -> list[dict]:
    """The records in `state` (a task whose driver went silent counts as 'interrupted') and with `tag`."""
    shown = (shown_state(r) for r in records)
    return [r for r in shown if (state is None or r["state"] == state) and (tag is None or tag in r.get("tags", []))]


def shown_state(record: dict[str, Any]) -> dict[str, Any]:
    """The record as shown: a task whose driver stopped sending heartbeats is 'interrupted' (restartable)."""
    if record.get("state") in ("pending", "running", "stopping") and driver_gone(record):
        return {**record, "state": "interrupted"}
    return record


def delete_task(key: str, *, output: str | None = None, home: str | None = None, tags: Any = None) -> dict[str, Any]:
    """Remove a task's record, its index entry and its results folder; returns the record it had.

    Raises:
        TaskNotFoundError: nothing matches.
        RayevalError: the task is still running (stop it first).
    """
    from rayeval.errors import RayevalError

    record = find_task(key, output=output, home=home, tags=tags)
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
