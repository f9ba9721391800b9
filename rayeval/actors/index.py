"""The coordinator's on-disk index, read without a Ray connection: finding, listing and deleting tasks."""

from __future__ import annotations

from typing import Any

import pyarrow.fs as pafs

from rayeval.errors import RayevalError, TaskNotFoundError
from rayeval.paths import default_home, index_location
from rayeval.records import ACTIVE, TaskRecord, caller_tags, driver_gone, match_task, shown_state, visible
from rayeval.store.results import ResultsStore

__all__ = ["delete_task", "filter_tasks", "find_task", "list_tasks"]


def list_tasks(home: str | None = None, *, tags: Any = None, output: str | None = None) -> list[TaskRecord]:
    """Every task record found through the index under RAYEVAL_HOME, and in `output` if given, newest
    first (those visible to the caller's tags: see `caller_tags`)."""
    tags = caller_tags(tags)
    index = ResultsStore(index_location(home))
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


def find_task(key: str, *, output: str | None = None, home: str | None = None, tags: Any = None) -> TaskRecord:
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


def filter_tasks(records: list[TaskRecord], *, state: str | None = None, tag: str | None = None) -> list[TaskRecord]:
    """The records in `state` (a task whose driver went silent counts as 'interrupted') and with `tag`."""
    shown = (shown_state(r) for r in records)
    return [r for r in shown if (state is None or r["state"] == state) and (tag is None or tag in r.get("tags", []))]


def delete_task(key: str, *, output: str | None = None, home: str | None = None, tags: Any = None) -> TaskRecord:
    """Remove a task's record, its index entry and its results folder; returns the record it had.

    Raises:
        TaskNotFoundError: nothing matches.
        RayevalError: the task is still running (stop it first).
    """
    record = find_task(key, output=output, home=home, tags=tags)
    task_id = record["task_id"]
    if record.get("state") in ACTIVE and not driver_gone(record):
        raise RayevalError(f"task {task_id} is {record['state']}; stop it first: `rayeval stop {task_id}`")
    store = ResultsStore(record["output"])
    if store.fs.get_file_info(store.path(task_id)).type != pafs.FileType.NotFound:
        store.delete_task(task_id)
    index = ResultsStore(index_location(home))
    if index.fs.get_file_info(index.path(task_id)).type != pafs.FileType.NotFound:
        index.delete_task(task_id)
    return record
