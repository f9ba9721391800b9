"""The JSON records `rayeval server`'s API takes and returns (its OpenAPI schema at `/docs` is made from them).

A task record, as the coordinator keeps it (rayeval.records.TaskRecord), holds fields for the run's own
bookkeeping (fencing epochs, what each driver reported, call counts); the API shows what a person or a
console needs: `TaskRow` in lists, `TaskStatus` for one task, `TaskEvent` for its log.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rayeval.analysis.html import finite
from rayeval.records import TaskRecord, progress_fraction, shown_state

__all__ = [
    "ActionResult",
    "CopyRequest",
    "Problem",
    "RestartRequest",
    "TaskEvent",
    "TaskRow",
    "TaskStatus",
    "WhoAmI",
]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _when(t: float | None) -> datetime | None:
    return datetime.fromtimestamp(t, timezone.utc) if t else None


class TaskRow(_Record):
    """One task in a list: what `rayeval list` shows."""

    task_id: str = Field(description="The task's id (also the Ray job's submission id of its first run).")
    name: str | None = Field(None, description="The task's name.")
    state: str = Field(description="pending, running, stopping, succeeded, failed, stopped or interrupted.")
    progress: float = Field(description="Items evaluated / items to evaluate, over every model and set (0..1).")
    mode: str | None = Field(None, description="evaluation_only, inference_and_evaluation or custom.")
    tags: list[str] = Field(default_factory=list, description="The task's tags.")
    creator: str | None = Field(None, description="Who created it (for tasks submitted here: the token's name).")
    created_at: datetime | None = Field(None, description="When it was created (UTC).")
    resources: dict[str, str] = Field(
        default_factory=dict, description="What each hosted model (or judge) takes: replicas, GPUs, CPUs."
    )
    remarks: str = Field("", description="The task's remarks.")
    models: list[str] = Field(default_factory=list, description="Its models.")
    eval_sets: list[str] = Field(default_factory=list, description="Its evaluation sets.")
    runs: int = Field(1, description="Runs so far (1 + restarts).")
    error: str | None = Field(None, description="Why it failed, if it did.")

    @classmethod
    def of(cls, record: TaskRecord) -> TaskRow:
        """The row of a coordinator record (a task whose driver went silent shows as interrupted)."""
        r = shown_state(record)
        return cls(**_row_fields(r))


def _row_fields(r: TaskRecord) -> dict[str, Any]:
    return {
        "task_id": r["task_id"],
        "name": r.get("name"),
        "state": r.get("state", "pending"),
        "progress": round(progress_fraction(r), 4),
        "mode": r.get("mode"),
        "tags": list(r.get("tags") or []),
        "creator": r.get("creator"),
        "created_at": _when(r.get("created_at")),
        "resources": {k: str(v) for k, v in (r.get("resources") or {}).items()},
        "remarks": r.get("remarks") or "",
        "models": list(r.get("models") or []),
        "eval_sets": list(r.get("eval_sets") or []),
        "runs": int(r.get("runs", 1)),
        "error": r.get("error"),
    }


class TaskStatus(TaskRow):
    """One task in full: what `rayeval status TASK` shows."""

    lines: list[str] = Field(default_factory=list, description="One line per model x set, as `rayeval status` prints.")
    progress_by: dict[str, dict[str, dict[str, int]]] = Field(
        default_factory=dict, description="Model -> set -> counts: done, errors, total, reused, resumed."
    )
    stages: dict[str, dict[str, dict[str, int]]] = Field(
        default_factory=dict, description="Model -> set -> stage (inferred, judged, scored) -> items, this run."
    )
    deployments: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Hosted model -> its deployment: Serve app, state, message."
    )
    waiting: list[dict[str, Any]] = Field(
        default_factory=list, description="Stages waiting for resources the cluster cannot give now."
    )
    parameters: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=dict, description="Model -> set -> the parameters it runs with."
    )
    reused: dict[str, Any] | None = Field(None, description="Items taken from earlier tasks: total and by task.")
    summary: list[dict[str, Any]] | None = Field(None, description="The summary rows, once it ended.")
    output: str | None = Field(None, description="Its results location.")
    started_at: datetime | None = Field(None, description="When its current run started (UTC).")
    finished_at: datetime | None = Field(None, description="When it ended (UTC).")
    updated_at: datetime | None = Field(None, description="When its record last changed (UTC).")

    @classmethod
    def of(cls, record: TaskRecord) -> TaskStatus:
        """The status of a coordinator record."""
        from rayeval.analysis.text import progress_lines

        r = shown_state(record)
        return cls(
            **_row_fields(r),
            lines=progress_lines(r),
            progress_by={m: {s: dict(p) for s, p in sets.items()} for m, sets in (r.get("progress") or {}).items()},
            stages=r.get("stages") or {},
            deployments={m: dict(d) for m, d in (r.get("deployments") or {}).items()},
            waiting=[dict(w) for w in r.get("waiting") or []],
            parameters=finite(r.get("parameters") or {}),
            reused=dict(r["reused"]) if r.get("reused") else None,
            summary=finite(r.get("summary")),
            output=r.get("output"),
            started_at=_when(r.get("started_at")),
            finished_at=_when(r.get("finished_at")),
            updated_at=_when(r.get("updated_at")),
        )


class TaskEvent(_Record):
    """One line of a task's event log (credentials scrubbed where it was written)."""

    at: datetime = Field(description="When (UTC).")
    level: str = Field(description="info, warning or error.")
    message: str = Field(description="What happened.")

    @classmethod
    def of(cls, event: dict[str, Any]) -> TaskEvent:
        """From a record's event ({t, level, message})."""
        return cls(at=_when(event["t"]), level=event.get("level", "info"), message=event.get("message", ""))


class RestartRequest(_Record):
    """How to run a task again."""

    failed: bool = Field(False, description="Also run the items that failed again (`rayeval restart --failed`).")
    spec: str | None = Field(
        None,
        description="The task file (YAML or JSON text), when the stored one cannot be used: it held a literal "
        "credential, which is never stored.",
    )


class CopyRequest(_Record):
    """A new task from an earlier one's spec."""

    name: str | None = Field(None, description="The new task's name (default: the old one with '-copy').")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted paths to values, as `rayeval copy --set`: {'parameters.temperature': 0.2, "
        "'models.m.url': 'http://...', 'evaluation_sets.0.limit': 10}.",
    )


class ActionResult(_Record):
    """What a state-changing call did."""

    task_id: str = Field(description="The task acted on (for submit and copy: the new task).")
    action: Literal["submit", "stop", "restart", "copy", "delete"] = Field(description="What was done.")
    state: str | None = Field(None, description="The task's state now, when known.")
    job_id: str | None = Field(None, description="The Ray job that runs it (submit, restart, copy).")
    message: str = Field("", description="In words.")


class WhoAmI(_Record):
    """The caller, as the server sees its token."""

    name: str = Field(description="The token's name.")
    tags: list[str] = Field(description="The tags the server acts with (an admin's are informative).")
    admin: bool = Field(description="Sees and acts on every task.")
    expires_at: datetime | None = Field(None, description="When the token stops being accepted (UTC).")


class Problem(_Record):
    """An error's body (FastAPI's shape)."""

    detail: str = Field(description="What went wrong, without anything about tasks the caller may not see.")
