"""The task record: what the coordinator keeps about a task, and the rules every reader applies to it.

A record is a plain mapping (it travels through Ray, is stored as `{output}/{task_id}/task.json` and
is what the Python API's `TaskHandle.status()` returns), typed here as TypedDicts so that every
layer reads the same fields. Standard library only: readers without Ray (the CLI's index, the
analysis) import it too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any, Literal, TypedDict

__all__ = [
    "ACTIVE",
    "HEARTBEAT_S",
    "HEARTBEAT_STALE_S",
    "TAGS_ENV",
    "TERMINAL",
    "Deployment",
    "Event",
    "Progress",
    "Reused",
    "Wait",
    "TaskRecord",
    "TaskState",
    "caller_tags",
    "driver_gone",
    "match_task",
    "progress_fraction",
    "progress_totals",
    "shown_state",
    "visible",
]

#: A task's life: pending -> running -> (stopping ->) succeeded | failed | stopped; `interrupted` when
#: its driver went silent (restartable).
TaskState = Literal["pending", "running", "stopping", "succeeded", "failed", "stopped", "interrupted"]
#: States a task does not leave by itself.
TERMINAL: tuple[TaskState, ...] = ("succeeded", "failed", "stopped")
#: States in which a live driver works on the task.
ACTIVE: tuple[TaskState, ...] = ("pending", "running", "stopping")
#: Seconds between a running task's heartbeats, and the silence after which its driver is taken for gone.
HEARTBEAT_S = 2.0
HEARTBEAT_STALE_S = 10.0
#: Environment variable holding the tags a caller presents (comma-separated), when not given otherwise.
TAGS_ENV = "RAYEVAL_TAGS"


class Progress(TypedDict, total=False):
    """One model x evaluation set of a task (mode custom: one model x set its programs cover)."""

    done: int  # items evaluated, failed ones included (restarted and reused items count)
    errors: int  # items that failed
    total: int  # items to evaluate
    reused: int  # items taken from earlier tasks' results
    resumed: int  # items already committed when the run (a restart) began


class Event(TypedDict):
    """One line of a task's event log (`rayeval logs`)."""

    t: float  # when (Unix time)
    level: str  # info, warning, error
    message: str  # credentials scrubbed


class Deployment(TypedDict, total=False):
    """A hosted model's deployment, as the task saw it (`rayeval status`)."""

    app: str  # the Serve application
    state: str  # deploying, healthy, deleted, kept, ...
    message: str
    updated_at: float


class Wait(TypedDict):
    """A stage of a task waiting for resources the cluster cannot give now (rayeval.cluster.waits)."""

    stage: str  # inference, judging, scoring, writer
    actors: int  # actors not placed
    since: float  # waiting since (Unix time)
    needs: dict[str, float]  # what each actor asks for


class Reused(TypedDict):
    """What a task took from earlier tasks' results."""

    total: int
    sources: dict[str, int]  # earlier task id -> items


class TaskRecord(TypedDict, total=False):
    """Everything the coordinator knows about a task; persisted as its `task.json`."""

    task_id: str
    name: str
    remarks: str
    tags: list[str]
    mode: Literal["evaluation_only", "inference_and_evaluation", "custom"]
    models: list[str]
    resources: dict[str, str]  # hosted model (or judge) -> its replicas and what each takes (EngineSpec.describe)
    eval_sets: list[str]
    output: str  # the results location (folder or URI)
    creator: str
    job_id: str | None  # the Ray job of the driver
    submitted: bool  # the driver is a job `rayeval submit` started
    state: TaskState
    error: str  # why it failed
    progress: dict[str, dict[str, Progress]]  # model -> set -> counts
    stages: dict[str, dict[str, dict[str, int]]]  # model -> set -> stage (inferred, judged, scored) -> items, this run
    model_fps: dict[str, str]  # model -> fingerprint of its answers (rayeval.store.fingerprint)
    set_fps: dict[str, dict[str, str]]  # model -> set -> fingerprint, where the set's parameters change it
    parameters: dict[str, dict[str, dict[str, Any]]]  # model -> set -> the parameters it runs with
    custom_fps: dict[str, str]  # mode custom: configuration -> fingerprint
    resumed: int  # items already committed when the current run began
    reported: dict[str, dict[str, list[int]]]  # model -> set -> [done, errors] the current run's driver reported
    runs: int  # runs of the task (1 + restarts)
    epoch: int  # the run holding the task's lease (rayeval.actors.coordinator: fencing)
    commits: int  # result files the run holding the lease was allowed to commit so far
    sealed: dict[str, int]  # earlier epoch -> files it was allowed to commit (later ones are fenced out)
    created_at: float
    started_at: float
    finished_at: float
    updated_at: float
    heartbeat_at: float  # the driver's last sign of life
    events: list[Event]
    deployments: dict[str, Deployment]  # hosted model -> its deployment
    placement: dict[str, list[str]]  # stage (inference, judging, scoring, writer) -> ids of the nodes its actors ran on
    waiting: list[Wait]  # stages whose actors the cluster cannot place now
    summary: list[dict[str, Any]]  # the summary rows (rayeval.store.summary), once finished
    reused: Reused
    costs: dict[str, Any]  # calls this run made to the singleton actors: writer, limiters, coordinator


def driver_gone(record: TaskRecord) -> bool:
    """True when a task that is not finished has had no heartbeat for HEARTBEAT_STALE_S (its driver died)."""
    if record.get("state") in TERMINAL:
        return False
    return time.time() - record.get("heartbeat_at", record.get("updated_at", 0)) > HEARTBEAT_STALE_S


def shown_state(record: TaskRecord) -> TaskRecord:
    """The record as shown: a task whose driver stopped sending heartbeats is 'interrupted' (restartable),
    or 'stopped' when it was asked to stop (`ray job stop` kills a driver 3 s after asking it to end)."""
    if record.get("state") in ACTIVE and driver_gone(record):
        return {**record, "state": "stopped" if record.get("state") == "stopping" else "interrupted"}
    return record


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


def visible(record: TaskRecord, tags: Iterable[str] | None) -> bool:
    """Whether a caller presenting `tags` may see a task: it presents none, or the task carries one of them."""
    return tags is None or bool(set(record.get("tags") or ()) & set(tags))


def match_task(records: Iterable[TaskRecord], key: str, tags: Iterable[str] | None = None) -> TaskRecord | None:
    """Among `records` visible to `tags`: the task with id `key`, else the newest with name `key`."""
    shown = [r for r in records if visible(r, tags)]
    by_id = next((r for r in shown if r.get("task_id") == key), None)
    if by_id is not None:
        return by_id
    named = [r for r in shown if r.get("name") == key]
    return max(named, key=lambda r: r.get("created_at", 0)) if named else None


def progress_totals(record: TaskRecord) -> Progress:
    """The task's counts summed over every model and set (done, errors, total, reused)."""
    totals: Progress = {"done": 0, "errors": 0, "total": 0, "reused": 0}
    for sets in record.get("progress", {}).values():
        for p in sets.values():
            for key in totals:
                totals[key] += p.get(key, 0)
    return totals


def progress_fraction(record: TaskRecord) -> float:
    """Evaluated entries / (models x entries); failed entries count as evaluated."""
    done = total = 0
    for sets in record.get("progress", {}).values():
        for p in sets.values():
            done += min(p["done"], p["total"])
            total += p["total"]
    return done / total if total else 0.0
