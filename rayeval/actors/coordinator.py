"""The coordinator: a detached, named actor that owns the task registry and progress.

It persists every task's record into the task's own folder of the results store
(`{output}/{task_id}/task.json`) and keeps a pointer per task under RAYEVAL_HOME, so a
restarted coordinator, or a restarted cluster, rebuilds its state from storage.

It also fences a task's runs, the way storage systems do: a task has at most one live run, the one
holding its lease, numbered by an increasing epoch (`register`). Calls that carry an older epoch (a
driver that was frozen, then thawed after a restart took over) change nothing and learn that their run
was superseded; its writer is refused every commit (`may_commit`), and readers ignore the files it
renamed into place after its epoch was sealed (rayeval.store.fence).
"""

from __future__ import annotations

import collections
import logging
import time
from collections import defaultdict
from typing import Any

import ray

from rayeval.actors.progress_metrics import METRICS
from rayeval.paths import default_home, index_location
from rayeval.records import (
    ACTIVE,
    HEARTBEAT_STALE_S,
    TERMINAL,
    Progress,
    TaskRecord,
    TaskState,
    driver_gone,
    match_task,
    visible,
)
from rayeval.store.results import ResultsStore

__all__ = [
    "MAX_EVENTS",
    "NAME",
    "NAMESPACE",
    "Coordinator",
    "get_coordinator",
    "report_placement",
    "report_stage",
    "stop_task",
]

NAME = "coordinator"
NAMESPACE = "rayeval"
#: Events kept in a task's record (rayeval logs).
MAX_EVENTS = 2000
_PERSIST_EVERY_S = 0.5
log = logging.getLogger(__name__)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class Coordinator:
    """Task registry and progress. All methods are cheap; the actor is single-threaded."""

    def __init__(self, home: str):
        from ray.util.metrics import Counter, Gauge

        self.index = ResultsStore(index_location(home))
        self.tasks: dict[str, TaskRecord] = {}
        self._last_persist: dict[str, float] = {}
        self._dirty: set[str] = set()
        #: task id -> method -> calls it made here (what one task costs this singleton: benchmarks/control_plane.py)
        self._calls: dict[str, collections.Counter[str]] = defaultdict(collections.Counter)

        kinds = {"gauge": Gauge, "counter": Counter}
        made = {m.name: kinds[m.kind](m.name, description=m.description, tag_keys=m.tags) for m in METRICS}
        self._gauge = made["rayeval_task_progress"]
        self._items = made["rayeval_items_evaluated"]
        self._errors = made["rayeval_item_errors"]
        self._remaining = made["rayeval_items_remaining"]
        self._reused = made["rayeval_items_reused"]
        self._stages = made["rayeval_items_stage"]
        # Serve application name -> ids of the tasks (or other holders) using it.
        self.deployment_users: dict[str, set[str]] = {}
        self._load()

    # -- persistence ---------------------------------------------------------------------
    def _load(self) -> None:
        """Rebuild the registry from storage. Unfinished tasks come back `interrupted` (a live driver's
        next heartbeat makes its task `running` again). When this is a new coordinator rather than one
        Ray restarted in the same cluster, their progress is counted again from the committed results:
        what their (now gone) drivers reported last can be behind or ahead of them."""
        reconstructed = ray.get_runtime_context().was_current_actor_reconstructed
        for task_id in self.index.task_ids():
            pointer = self.index.read_json(task_id, "task.json") or {}
            try:
                record = ResultsStore(pointer["output"]).read_json(task_id, "task.json")
            except (KeyError, OSError) as e:
                log.warning("cannot reload task %s: %s", task_id, e)
                continue
            if record:
                if record["state"] not in TERMINAL:
                    record["state"] = "interrupted"
                    if not reconstructed:  # a new coordinator (a new cluster): the drivers it knew are gone
                        self._recount(record)
                self.tasks[task_id] = record

    def _recount(self, record: TaskRecord) -> None:
        """An unfinished task's progress, counted again from its committed results (mode custom keeps
        its count: each pair is reported only once its outcome is stored)."""
        from rayeval.store.resume import committed_counts

        if record.get("mode") == "custom":
            return

        try:  # files being replaced (`_new-`, `_old-`) are left to the task's restart to settle
            counts = committed_counts(ResultsStore(record["output"]), record["task_id"])
        except OSError as e:
            log.warning("cannot count the results of task %s: %s", record["task_id"], e)
            return
        for model, sets in record.get("progress", {}).items():
            for eval_set, p in sets.items():
                p.update(counts.get((model, eval_set), {"done": 0, "errors": 0}))

    def _persist(self, task_id: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_persist.get(task_id, 0.0) < _PERSIST_EVERY_S:
            self._dirty.add(task_id)
            return
        record = self.tasks[task_id]
        record["updated_at"] = time.time()
        ResultsStore(record["output"]).write_json(task_id, "task.json", record)
        self._last_persist[task_id] = now
        self._dirty.discard(task_id)

    def flush(self) -> None:
        """Persist every record with unsaved progress."""
        for task_id in list(self._dirty):
            self._persist(task_id, force=True)

    # -- registry --------------------------------------------------------------------------
    def register(self, record: TaskRecord) -> dict[str, Any]:
        """Give a run of a task its lease: add the task record (it must hold task_id, output and progress
        totals), or, for a task run again, replace it keeping its creation time and counting the run.

        Returns {"epoch", "runs"} for the run now holding the lease, or {"refused": why, "held_by": record}
        when another run of the task is alive (its driver sent a heartbeat within HEARTBEAT_STALE_S). The
        epoch the earlier run held is sealed with the number of files it was allowed to commit: any later
        file of that epoch is a fenced run's, which readers ignore."""
        task_id = record["task_id"]
        earlier = self.tasks.get(task_id)
        if earlier is not None and earlier.get("state") in ACTIVE and not driver_gone(earlier):
            age = time.time() - earlier.get("heartbeat_at", time.time())
            return {
                "refused": (
                    f"task {task_id} is {earlier['state']} in run {earlier.get('runs', 1)}, whose driver reported "
                    f"{age:.0f} s ago; stop it first (`rayeval stop {task_id}`), or wait for it "
                    f"(`rayeval restart --if-running wait`); a driver that was killed or frozen counts as gone "
                    f"after {HEARTBEAT_STALE_S:.0f} s of silence"
                ),
                "held_by": earlier,
            }
        sealed: dict[str, int] = {}
        if earlier is not None:
            record["created_at"] = earlier.get("created_at", time.time())
            record["runs"] = earlier.get("runs", 1) + 1
            record["events"] = earlier.get("events", [])  # the log goes on across runs
            sealed = dict(earlier.get("sealed", {}))
            sealed[str(earlier.get("epoch", earlier.get("runs", 1)))] = earlier.get("commits", 0)
        record.setdefault("state", "pending")
        record.setdefault("created_at", time.time())
        record.setdefault("runs", 1)
        record["epoch"] = record["runs"]
        record["sealed"] = sealed
        record["commits"] = 0
        record["heartbeat_at"] = time.time()
        record["reported"] = {}  # this run's reports start from nothing
        self.tasks[task_id] = record
        self.index.write_json(task_id, "task.json", {"task_id": task_id, "output": record["output"]})
        self._persist(task_id, force=True)
        return {"epoch": record["epoch"], "runs": record["runs"]}

    def _current(self, task_id: str, epoch: int | None) -> TaskRecord | None:
        """The task's record, if `epoch` (None: unfenced caller) is the run holding its lease."""
        record = self.tasks.get(task_id)
        if record is None or (epoch is not None and record.get("epoch", 1) != epoch):
            return None
        return record

    def may_commit(self, task_id: str, epoch: int, seq: int) -> bool:
        """The writer of run `epoch` renamed its file number `seq` into place: it stays only if the run
        still holds the lease (False: the writer deletes it, and the run is over). Counted, so that the
        epoch is sealed with what it was allowed to commit when another run takes over."""
        self._calls[task_id]["may_commit"] += 1
        record = self._current(task_id, epoch)
        if record is None:
            return False
        record["commits"] = max(record.get("commits", 0), seq)
        self._persist(task_id, force=True)
        return True

    def report(self, task_id: str, entries: list[tuple[str, str, int, int]], epoch: int | None = None) -> str | None:
        """The items this run has evaluated so far: (model, eval_set, done, errors) per entry, counted from
        the run's start; returns the task's state (a driver seeing 'stopping' stops its stream), or
        'fenced' when run `epoch` no longer holds the task's lease.

        The counts are totals, not increments, so a report that was lost (this actor restarting) is made
        good by the next one, and one that arrives twice counts once."""
        self._calls[task_id]["report"] += 1
        record = self._current(task_id, epoch)
        if record is None:
            return "fenced" if task_id in self.tasks else None
        reported = record.setdefault("reported", {})
        for model, eval_set, run_done, run_errors in entries:
            p = record["progress"][model][eval_set]
            before = reported.setdefault(model, {}).get(eval_set, [0, 0])
            done, errors = run_done - before[0], run_errors - before[1]
            if done <= 0 and errors <= 0:
                continue
            p["done"] += done
            p["errors"] += errors
            reported[model][eval_set] = [run_done, run_errors]
            tags = self._export(task_id, model, eval_set, p)
            self._items.inc(done, tags=tags)
            if errors:
                self._errors.inc(errors, tags=tags)
        self._persist(task_id)
        return record["state"]

    def count_stage(
        self, task_id: str, stage: str, counts: list[tuple[str, str, int]], epoch: int | None = None
    ) -> None:
        """Items a stage (inferred, judged, scored) handled: (model, eval_set, items) increments from its actors,
        counted for the run holding the lease (`rayeval status` shows them beside what is stored). A batch an
        actor redid after a restart counts again: the figures say where the run's items are, not how many."""
        self._calls[task_id]["count_stage"] += 1
        record = self._current(task_id, epoch)
        if record is None:
            return
        stages = record.setdefault("stages", {})
        for model, eval_set, n in counts:
            entry = stages.setdefault(model, {}).setdefault(eval_set, {})
            entry[stage] = entry.get(stage, 0) + n
            self._stages.inc(n, tags={"task_id": task_id, "model": model, "eval_set": eval_set, "stage": stage})
        self._persist(task_id)

    def log_event(self, task_id: str, level: str, message: str, epoch: int | None = None) -> None:
        """Append to the task's event log (kept in its record; the oldest go past MAX_EVENTS)."""
        self._calls[task_id]["log_event"] += 1
        record = self._current(task_id, epoch)
        if record is None:
            return
        events = record.setdefault("events", [])
        events.append({"t": time.time(), "level": level, "message": message})
        if len(events) > MAX_EVENTS:
            del events[: len(events) - MAX_EVENTS]
        self._persist(task_id)

    def heartbeat(self, task_id: str, epoch: int | None = None) -> str | None:
        """The task's driver is alive (sent every few seconds while it runs); returns the task's state, or
        'fenced' when run `epoch` no longer holds the lease (a frozen driver, thawed: it must stop)."""
        self._calls[task_id]["heartbeat"] += 1
        record = self._current(task_id, epoch)
        if record is None:
            return "fenced" if task_id in self.tasks else None
        if record["state"] in TERMINAL:  # e.g. stopped while its driver was silent: nothing revives it
            return record["state"]
        record["heartbeat_at"] = time.time()
        if record["state"] == "interrupted":  # this coordinator was restarted under a live driver
            record["state"] = "running"
        self._persist(task_id)
        return record["state"]

    def request_stop(self, task_id: str, tags: list[str] | None = None) -> str | None:
        """Ask a running task to stop (its driver stops at its next report); returns the state now
        (None: no such task, or not visible to `tags`)."""
        record = self.tasks.get(task_id)
        if record is None or not visible(record, tags):
            return None
        if record["state"] not in TERMINAL and driver_gone(record):  # nothing runs it: stopped at once
            record["state"] = "stopped"
            record["finished_at"] = time.time()
            record.pop("waiting", None)
            self.log_event(task_id, "info", f"task {task_id} stopped: its driver was gone")
            self._persist(task_id, force=True)
        elif record["state"] in ("pending", "running"):  # a stopping task is on its way already
            record["state"] = "stopping"
            self._persist(task_id, force=True)
        return record["state"]

    def note_placement(self, task_id: str, stage: str, node_id: str, epoch: int | None = None) -> None:
        """An actor of a task's stage started on a node (`rayeval status` shows where each stage runs)."""
        self._calls[task_id]["note_placement"] += 1
        record = self._current(task_id, epoch)
        if record is None:
            return
        nodes = record.setdefault("placement", {}).setdefault(stage, [])
        if node_id not in nodes:
            nodes.append(node_id)
            self._persist(task_id)

    def set_waiting(self, task_id: str, waits: list[dict[str, Any]], epoch: int | None = None) -> None:
        """The stages of a task waiting for resources the cluster cannot give now (rayeval.cluster.waits)."""
        self._calls[task_id]["set_waiting"] += 1
        record = self._current(task_id, epoch)
        if record is not None:
            record["waiting"] = waits
            self._persist(task_id, force=True)

    def calls(self, task_id: str) -> dict[str, int]:
        """How many times each method was called for a task (its share of this actor's work)."""
        return dict(self._calls.get(task_id, {}))

    def node(self) -> str:
        """The node this coordinator runs on (where it keeps the records of tasks with a local output)."""
        return ray.get_runtime_context().get_node_id()

    def _export(self, task_id: str, model: str, eval_set: str, p: Progress) -> dict[str, str]:
        """Set the Ray metrics (dashboard, Prometheus) of one model x set of a task; returns their tags."""
        tags = {"task_id": task_id, "model": model, "eval_set": eval_set}
        self._gauge.set(min(1.0, p["done"] / p["total"]) if p["total"] else 0.0, tags=tags)
        self._remaining.set(max(0, p["total"] - p["done"]), tags=tags)
        self._reused.set(p.get("reused", 0), tags=tags)
        return tags

    def set_progress(self, task_id: str, progress: dict[str, dict[str, Progress]], epoch: int | None = None) -> None:
        """Replace progress with counts taken from the results store (the truth at the end)."""
        record = self._current(task_id, epoch)
        if record is None:
            return
        record["progress"] = progress
        for model, sets in progress.items():
            for eval_set, p in sets.items():
                self._export(task_id, model, eval_set, p)
        self._persist(task_id, force=True)

    def set_state(self, task_id: str, state: TaskState, epoch: int | None = None, **fields: Any) -> bool:
        """Move a task to a new state, with extra fields (error, summary, job_id...); False (nothing
        changed) when run `epoch` no longer holds the task's lease."""
        record = self._current(task_id, epoch)
        if record is None:
            return False
        record["state"] = state
        record.update(fields)
        if state == "running":
            record.setdefault("started_at", time.time())
        if state in TERMINAL:
            record["finished_at"] = time.time()
            record.pop("waiting", None)  # nothing waits for resources any more
        self._persist(task_id, force=True)
        return True

    def get(self, key: str, tags: list[str] | None = None) -> TaskRecord | None:
        """A task by id, or the newest task with that name, among those visible to `tags` (see `visible`)."""
        self.flush()
        return match_task(self.tasks.values(), key, tags)

    def list_tasks(self, tags: list[str] | None = None) -> list[TaskRecord]:
        """Every known task visible to `tags`, newest first."""
        self.flush()
        shown = [r for r in self.tasks.values() if visible(r, tags)]
        return sorted(shown, key=lambda r: r["created_at"], reverse=True)

    def set_deployment(self, task_id: str, model: str, epoch: int | None = None, **fields: Any) -> None:
        """Record a hosted model's deployment state in the task (app, state, message...)."""
        record = self._current(task_id, epoch)
        if record is None:
            return
        record.setdefault("deployments", {}).setdefault(model, {}).update(fields, updated_at=time.time())
        self._persist(task_id, force=True)

    # -- shared deployments ------------------------------------------------------------------
    def use_deployment(self, app: str, user: str) -> int:
        """Count `user` among the users of a Serve application; returns how many use it now."""
        users = self.deployment_users.setdefault(app, set())
        users.add(user)
        return len(users)

    def release_deployment(self, app: str, user: str) -> int:
        """`user` is done with the application; returns how many users remain (0: it may be deleted)."""
        users = self.deployment_users.get(app, set())
        users.discard(user)
        if not users:
            self.deployment_users.pop(app, None)
        return len(users)

    def forget(self, task_id: str, tags: list[str] | None = None) -> bool:
        """Drop a task from the registry (its results stay where they are); False when there is no such
        task visible to `tags`."""
        record = self.tasks.get(task_id)
        if record is None or not visible(record, tags):
            return False
        self.tasks.pop(task_id, None)
        self._dirty.discard(task_id)
        try:
            self.index.delete_task(task_id)
        except FileNotFoundError:  # its index entry went already (rayeval.actors.index.delete_task)
            pass
        return True


def _head_resources() -> dict[str, float]:
    resources = ray.cluster_resources()
    return {"node:__internal_head__": 0.001} if "node:__internal_head__" in resources else {}


def get_coordinator(create: bool = True, home: str | None = None) -> ray.actor.ActorHandle | None:
    """The cluster's coordinator, created on the head node on first use.

    Args:
        create: Create it when missing (else return None).
        home: Task index location for a new coordinator (default: `default_home()`).
    """
    try:
        return ray.get_actor(NAME, namespace=NAMESPACE)
    except ValueError:
        if not create:
            return None
    return Coordinator.options(
        name=NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        resources=_head_resources(),
    ).remote(home or default_home())


def report_placement(task_id: str, stage: str) -> None:
    """Tell the coordinator which node this actor of `stage` runs on; never fails the actor."""
    try:
        coordinator = ray.get_actor(NAME, namespace=NAMESPACE)
        coordinator.note_placement.remote(task_id, stage, ray.get_runtime_context().get_node_id())
    except Exception:  # no coordinator (a test of the actor alone), or it is restarting
        pass


_HANDLE: list[Any] = []  # this process's handle on the coordinator (report_stage, once per batch)


def report_stage(task_id: str, stage: str, models: list[str], sets: list[str], epoch: int | None) -> None:
    """Tell the coordinator how many items of each model and set a stage's batch handled (not waited for;
    never fails the actor: progress per stage is information, the stored rows are the truth)."""
    try:
        if not _HANDLE:
            _HANDLE.append(ray.get_actor(NAME, namespace=NAMESPACE))
        counts = collections.Counter(zip(models, sets))
        _HANDLE[0].count_stage.remote(task_id, stage, [(m, s, n) for (m, s), n in counts.items()], epoch)
    except Exception:  # no coordinator (a test of the actor alone), or it is restarting
        pass


def stop_task(key: str, *, tags: list[str] | None, wait: float | None) -> TaskRecord | None:
    """Ask the cluster's coordinator to stop a task (id, or name: the newest with it) and wait up to
    `wait` seconds for it to end; its record, or None when no such task is visible to `tags`."""
    coordinator = get_coordinator(create=False)
    record = ray.get(coordinator.get.remote(key, tags)) if coordinator is not None else None
    if record is None:
        return None
    task_id = record["task_id"]
    ray.get(coordinator.request_stop.remote(task_id, tags))
    deadline = None if wait is None else time.monotonic() + wait
    while deadline is not None and time.monotonic() < deadline:
        record = ray.get(coordinator.get.remote(task_id))
        if record["state"] in TERMINAL:
            break
        time.sleep(0.25)
    return record
