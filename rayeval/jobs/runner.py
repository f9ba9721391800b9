"""Running one task end to end on the connected Ray cluster.

prepare (rayeval.jobs.prepare) -> register with the coordinator -> stream through Ray Data into the
results store (rayeval.jobs.pipeline, .sink) within the run's session (.session) -> summarise ->
final state. Nothing is written until every check has passed.
"""

from __future__ import annotations

import datetime
import getpass
import logging
from collections.abc import Callable
from typing import Any

import ray

from rayeval.actors.coordinator import get_coordinator
from rayeval.actors.limiter import create_limiter
from rayeval.actors.writer import new_run_id, writer_actor
from rayeval.cluster.placement import output_node, pinned
from rayeval.cluster.resources import stage_options
from rayeval.cluster.waits import ResourceWatch
from rayeval.errors import RunSuperseded, SpecError, TaskFailedError, TooManyErrors
from rayeval.inference.client import resolve_endpoint
from rayeval.jobs.lease import drop_fenced_files, take_lease
from rayeval.jobs.pipeline import build_dataset
from rayeval.jobs.prepare import PreparedTask, stored_spec_data
from rayeval.jobs.session import EventLog, task_session
from rayeval.jobs.sink import write_stream
from rayeval.records import TaskRecord, caller_tags
from rayeval.scoring.judge import judge_limiter_key
from rayeval.scoring.pairwise import run_pairwise
from rayeval.spec import TaskSpec
from rayeval.store.resume import done_items, drop_failed_rows, recover_replacements
from rayeval.store.reuse import ReusePlan, plan_task_reuse
from rayeval.store.summary import Summary, pairwise_rows, summarize

__all__ = ["FLUSH_SECONDS", "ROWS_PER_FILE", "run_prepared"]

log = logging.getLogger("rayeval")
#: Rows gathered per Parquet file (big row groups keep reading the results cheap), and the most
#: seconds a scored row waits before it is committed (what a crash can cost).
ROWS_PER_FILE = 4096
FLUSH_SECONDS = 10.0


def _record(task: PreparedTask) -> TaskRecord:
    spec = task.spec
    if spec.is_custom:
        from rayeval.custom.runner import custom_progress

        return {
            **_base_record(task),
            "eval_sets": sorted({s for c in spec.custom for s in c.evaluation_sets}),
            "custom_fps": task.custom_fps,
            "progress": custom_progress(spec),
        }
    return {
        **_base_record(task),
        "eval_sets": [s.name for s in spec.evaluation_sets],
        "progress": {
            m.name: {p.spec.name: {"done": 0, "errors": 0, "reused": 0, "total": p.entries(m.name)} for p in task.plans}
            for m in spec.models
        },
    }


def _base_record(task: PreparedTask) -> TaskRecord:
    spec = task.spec
    return {
        "task_id": task.task_id,
        "name": spec.name,
        "remarks": spec.remarks,
        "tags": spec.tags,
        "mode": spec.mode,
        "models": [m.name for m in spec.models],
        "resources": {m.name: m.engine.describe() for m in [*spec.models, *spec.judges] if m.hosted},
        "output": spec.output,
        "creator": getpass.getuser(),
        "model_fps": task.model_fps,
        "set_fps": task.set_fps,
        "parameters": spec.effective_parameters() if spec.runs_inference else {},
        "job_id": _job_id(),
        "state": "pending",
    }


def _job_id() -> str | None:
    try:
        return ray.get_runtime_context().get_job_id()
    except Exception:  # not connected
        return None


def _stages(spec: TaskSpec) -> str:
    stages = ["read"] + (["inference"] if spec.runs_inference else [])
    if any(m.judge for s in spec.evaluation_sets for m in s.metrics):
        stages.append("judging")
    return " -> ".join([*stages, "scoring", "writer"])


def _service_created(task: PreparedTask) -> Callable[[str], float | None]:
    """model name -> when its service says the model was created (remote services only: a hosted
    checkpoint's identity covers its weights' content). Asked once per model and task."""
    from rayeval.inference.model_created import model_created

    spec = task.spec

    def created(name: str) -> float | None:
        if name not in task.created:
            m = next(m for m in spec.models if m.name == name)
            when = None
            if not m.hosted and not spec.predictions_given:
                timeout = spec.model_parameters(m).request_timeout
                when = model_created(resolve_endpoint(m, task.auth_values.get(name), timeout))
            task.created[name] = when
        return task.created[name]

    return created


def _when(seconds: float | None) -> str:
    return "?" if seconds is None else datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat()


def _note_reuse(task: PreparedTask, coordinator: Any, reuse: ReusePlan) -> None:
    """Log what earlier tasks supply, and show it in the task's progress."""
    sources = ", ".join(f"{t}: {n}" for t, n in sorted(reuse.sources().items(), key=lambda kv: -kv[1]))
    log.info("task %s: %d items reused from earlier tasks (%s)", task.task_id, reuse.total(), sources)
    record = ray.get(coordinator.get.remote(task.task_id))
    progress = record["progress"]
    for (model, eval_set), n in reuse.counts().items():
        progress[model][eval_set]["reused"] = progress[model][eval_set].get("reused", 0) + n
    ray.get(coordinator.set_progress.remote(task.task_id, progress, task.epoch))


def _log_outcome(task: PreparedTask, summary: Summary, state: str) -> None:
    """The end of a run in the event log: items, errors by kind (the most frequent five), retries."""
    items = sum(c["done"] for c in summary.counts.values())
    errors = sum(c["errors"] for c in summary.counts.values())
    log.info(
        "task %s %s: %d items stored, %d with errors, %d retries", task.task_id, state, items, errors, summary.retries
    )
    for kind, n in summary.error_kinds.most_common(5):
        log.warning("task %s: %d items failed with: %s", task.task_id, n, kind)


def run_prepared(
    task: PreparedTask,
    *,
    on_progress: Callable[[TaskRecord], None] | None = None,
    progress_every: float = 1.0,
    resume: str | None = None,
    submitted: bool = False,
    tags: Any = None,
    if_running: str = "refuse",
) -> TaskRecord:
    """Run a prepared task to its end on the connected cluster; returns its final record.

    A failed item never stops the rest; a failure of the pipeline itself marks the task failed
    and re-raises. What was written stays in the store.

    Args:
        resume: Run the task again under its id: 'unfinished' skips every item already committed,
            'failed' first takes the failed rows out of the results so that those items run again.
        submitted: This driver is a Ray job submitted by `rayeval submit` (its id is the task id).
        tags: The caller's tags (default $RAYEVAL_TAGS): results are reused only from tasks visible to them.
        if_running: When another run of the task is alive: 'refuse' (RunRefused) or 'wait' for it to end.

    Raises:
        RunRefused: another run of the task holds its lease.
        RunSuperseded: this run lost the lease to a restart (its driver was silent): it stopped.
    """
    spec, store = task.spec, task.store
    coordinator = get_coordinator()
    try:  # before anything is written: a local output must be on this driver's and the coordinator's disk
        task.output_node = output_node(spec.output, ray.get(coordinator.node.remote()))
    except SpecError as e:
        raise e.with_source(spec.source) from None
    record = _record(task)
    record["submitted"] = submitted
    lease = take_lease(coordinator, record, wait=if_running == "wait")
    task.epoch = lease["epoch"]
    store.write_json(task.task_id, "spec.json", stored_spec_data(spec))
    done, dropped, fenced = None, 0, 0
    if resume is not None:
        fenced = drop_fenced_files(store, task.task_id)
    if resume is not None and spec.is_custom:
        from rayeval.custom.runner import resumed_progress

        record["progress"] = resumed_progress(store, task.task_id, spec)
    elif resume is not None:
        recover_replacements(store, task.task_id)
        if resume == "failed":
            dropped = drop_failed_rows(store, task.task_id)
        done = done_items(store, task.task_id)
        for (model, eval_set), counts in done.counts.items():
            if eval_set in record["progress"].get(model, {}):
                record["progress"][model][eval_set].update(counts, resumed=counts["done"])
    if resume is not None:
        ray.get(coordinator.set_progress.remote(task.task_id, record["progress"], task.epoch))
    resumed = done.total() if done is not None else 0
    ray.get(coordinator.set_state.remote(task.task_id, "pending", task.epoch, resumed=resumed))
    events = EventLog(coordinator, task.task_id, task.scrub, task.epoch)
    log.addHandler(events)
    level = log.level
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)  # the event log takes INFO; console handlers keep their own levels
    try:
        if fenced:
            log.warning(
                "task %s run %d: %d result file(s) an earlier run committed after it had lost its lease were deleted",
                task.task_id,
                task.epoch,
                fenced,
            )
        if done is not None:
            log.info(
                "task %s run %d: %d items already committed are skipped%s",
                task.task_id,
                task.epoch,
                done.total(),
                f"; {dropped} failed rows taken out to run again" if resume == "failed" else "",
            )
        if spec.is_custom:
            return _run_custom(task, coordinator, resume is not None, caller_tags(tags), on_progress, progress_every)
        return _run_registered(task, coordinator, done, caller_tags(tags), on_progress, progress_every)
    finally:
        log.removeHandler(events)
        log.setLevel(level)


def _run_registered(
    task: PreparedTask,
    coordinator: Any,
    done: Any,
    tags: list[str] | None,
    on_progress: Callable[[TaskRecord], None] | None,
    progress_every: float,
) -> TaskRecord:
    spec, store = task.spec, task.store
    ray.get(coordinator.set_state.remote(task.task_id, "running", task.epoch))
    log.info("task %s running: %d model(s) x %d set(s)", task.task_id, len(spec.models), len(task.plans))
    for m in spec.models:
        for note in spec.model_parameters(m).notes():
            log.warning("task %s: model %s: %s", task.task_id, m.name, note)
        for s in [s for s in spec.evaluation_sets if s.parameters is not None]:
            for note in set(spec.set_parameters(m, s).notes()) - set(spec.model_parameters(m).notes()):
                log.warning("task %s: model %s on set %s: %s", task.task_id, m.name, s.name, note)
    try:
        records = ray.get(coordinator.list_tasks.remote(tags))
        reuse = plan_task_reuse(
            spec, task.plans, task.task_id, task.model_fps, records, done, _service_created(task), task.set_fps
        )
    except Exception as e:
        error = task.scrub(f"{type(e).__name__}: {e}")[:4000]
        ray.get(coordinator.set_state.remote(task.task_id, "failed", task.epoch, error=f"planning reuse: {error}"))
        raise TaskFailedError(f"task {task.task_id} failed while planning reuse of earlier results: {error}") from e
    if reuse is not None and reuse.total():
        _note_reuse(task, coordinator, reuse)
    for (model, eval_set), n in (reuse.stale if reuse is not None else {}).items():
        log.warning(
            "task %s: model %s, set %s: %d answers earlier tasks hold were sent before the service's model was "
            "created (its /v1/models says %s): evaluated again, not reused",
            task.task_id, model, eval_set, n, _when(task.created.get(model)),
        )  # fmt: skip
    concurrency = {m.name: spec.model_parameters(m).max_concurrency for m in spec.models} if spec.runs_inference else {}
    concurrency.update({judge_limiter_key(j.name): spec.parameters.max_judging_concurrency for j in spec.judges})
    limiter_keys = list(concurrency)
    # Registered by name at once; their processes start while the pipeline does (the request actors'
    # first call to them waits for that), not before it.
    limiters = [create_limiter(task.task_id, key, limit, task.epoch) for key, limit in concurrency.items()]
    with task_session(task, coordinator, on_progress, progress_every, limiters) as hosted:
        ds = build_dataset(
            spec,
            task.plans,
            task.task_id,
            auth_values=task.auth_values,
            metrics_by_set=task.metrics_by_set,
            outputs=task.outputs,
            hosted=hosted,
            done=done,
            reuse=reuse,
            model_fps=task.model_fps,
            set_fps=task.set_fps,
            metric_fps=task.metric_fps,
            local_node=task.output_node,
            epoch=task.epoch,
        )
        placed = {**pinned(task.output_node), **stage_options(spec.resources, "writer")}
        writer = (
            writer_actor(spec.resources.actor_num_cpus)
            .options(**placed)
            .remote(spec.output, task.task_id, new_run_id(), ROWS_PER_FILE, FLUSH_SECONDS, task.epoch)
        )
        log.info("task %s: pipeline started (%s)", task.task_id, _stages(spec))
        watch = _resource_watch(task, coordinator)
        outcome = write_stream(ds, writer, coordinator, task.task_id, epoch=task.epoch, check=watch.poll)
        costs = {
            "writer": ray.get(writer.stats.remote()),
            "limiters": dict(zip(limiter_keys, ray.get([lim.calls.remote() for lim in limiters]))),
        }
        ray.kill(writer)
        if outcome.stopped:
            log.warning("task %s: stopped on request; what was evaluated is kept", task.task_id)
        elif any(s.pairwise for s in spec.evaluation_sets):
            log.info("task %s: pairwise judging against the reference model %s", task.task_id, spec.reference_model)
            run_pairwise(task, hosted)
    summary = summarize(store, task.task_id, task.metrics_by_set)
    record = ray.get(coordinator.get.remote(task.task_id))
    progress = record["progress"]
    for (model, eval_set), c in summary.counts.items():
        progress[model][eval_set].update(c)
    final_state = "stopped" if outcome.stopped else "succeeded"
    too_many = None if outcome.stopped else _too_many_errors(task, summary)
    if too_many:
        final_state = "failed"
    _log_outcome(task, summary, final_state)
    reused = {"total": sum(summary.reused_from.values()), "sources": dict(summary.reused_from)}
    rows = summary.rows + pairwise_rows(store, task.task_id, spec)
    costs["coordinator"] = ray.get(coordinator.calls.remote(task.task_id))
    final = _finish(task, coordinator, rows, progress, final_state, reused, on_progress, costs, error=too_many)
    if too_many:
        raise TooManyErrors(f"task {task.task_id} failed: {too_many}", final)
    return final


def _too_many_errors(task: PreparedTask, summary: Summary) -> str | None:
    """Why a task that ran to its end counts as failed: more of its items failed than max_error_rate allows,
    or every one did (None: it succeeded)."""
    items = sum(c["done"] for c in summary.counts.values())
    failed = sum(c["errors"] for c in summary.counts.values())
    limit = task.spec.max_error_rate
    if not items or not failed or (failed < items if limit is None else failed / items <= limit):
        return None
    allowed = "none of them succeeded" if limit is None else f"more than max_error_rate {limit:g}"
    return (
        f"{failed} of its {items} items failed ({failed / items:.0%}), {allowed}; the results are stored "
        f"(`rayeval results {task.task_id}`, `rayeval logs {task.task_id}` for the errors by kind)"
    )


def _resource_watch(task: PreparedTask, coordinator: Any) -> ResourceWatch:
    """The watch that says what the task's actors wait for, and fails it past resources.wait_timeout_s."""
    res = task.spec.resources
    needs = {
        stage: {"CPU": res.actor_num_cpus, **res.stage_resources.get(stage, {})}
        for stage in ("inference", "judging", "scoring", "writer")
    }

    def report(waits: list[dict[str, Any]]) -> None:
        coordinator.set_waiting.remote(task.task_id, waits, task.epoch)

    def note(line: str) -> None:
        log.warning("task %s: %s", task.task_id, line)

    return ResourceWatch(needs, res.wait_timeout_s, report, note)


def _finish(
    task: PreparedTask,
    coordinator: Any,
    rows: list[dict[str, Any]],
    progress: dict[str, Any],
    state: str,
    reused: dict[str, Any],
    on_progress: Callable[[TaskRecord], None] | None,
    costs: dict[str, Any] | None = None,
    error: str | None = None,
) -> TaskRecord:
    """Store the summary, set the final progress and state (with what the run cost the cluster's
    singleton actors, `costs`); returns the final record.

    Raises:
        RunSuperseded: the run lost the task's lease (it writes no summary and sets no state).
    """
    if ray.get(coordinator.report.remote(task.task_id, [], task.epoch)) == "fenced":
        raise RunSuperseded.of(task.task_id, task.epoch)
    ray.get(coordinator.set_progress.remote(task.task_id, progress, task.epoch))
    task.store.write_json(task.task_id, "summary.json", rows)
    extra: dict[str, Any] = {"costs": costs} if costs is not None else {}
    if error:
        extra["error"] = error
    if not ray.get(coordinator.set_state.remote(task.task_id, state, task.epoch, summary=rows, reused=reused, **extra)):
        raise RunSuperseded.of(task.task_id, task.epoch)
    final = ray.get(coordinator.get.remote(task.task_id))
    if on_progress is not None:
        on_progress(final)
    return final


def _run_custom(
    task: PreparedTask,
    coordinator: Any,
    resume: bool,
    tags: list[str] | None,
    on_progress: Callable[[TaskRecord], None] | None,
    progress_every: float,
) -> TaskRecord:
    """Mode custom: every configuration x model pair's program (rayeval.custom.runner)."""
    from rayeval.custom.runner import custom_summary, run_pairs

    spec = task.spec
    ray.get(coordinator.set_state.remote(task.task_id, "running", task.epoch))
    log.info("task %s running: %d configuration(s) x %d model(s)", task.task_id, len(spec.custom), len(spec.models))
    records = ray.get(coordinator.list_tasks.remote(tags)) if spec.reuse.enabled else []
    with task_session(task, coordinator, on_progress, progress_every, []) as hosted:
        stopped = run_pairs(task, coordinator, hosted, resume=resume, records=records)
    rows, progress = custom_summary(task.store, task.task_id, spec)
    state = "stopped" if stopped else "succeeded"
    pairs = {(r["model"], r["eval_set"]) for r in rows}
    failed = {(r["model"], r["eval_set"]) for r in rows if r["value"] is None}
    log.info("task %s %s: %d pair(s) with metrics, %d without", task.task_id, state, len(pairs - failed), len(failed))
    sources: dict[str, int] = {}
    for r in rows:
        if r.get("reused_from"):
            sources[r["reused_from"]] = sources.get(r["reused_from"], 0) + 1
    reused = {"total": sum(p.get("reused", 0) for sets in progress.values() for p in sets.values()), "sources": sources}
    return _finish(task, coordinator, rows, progress, state, reused, on_progress)
