"""Running one task end to end on the connected Ray cluster.

validate (spec, metrics, sets, secrets, services) -> register with the coordinator -> stream
through Ray Data into the results store -> summarise -> final state. Nothing is written until
every check has passed.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray

from rayeval.actors.coordinator import HEARTBEAT_S, get_coordinator
from rayeval.actors.judge import judge_limiter_key
from rayeval.actors.limiter import create_limiter
from rayeval.actors.writer import new_run_id, writer_actor
from rayeval.client import check_service, resolve_endpoint, scrub
from rayeval.datasets import SetPlan, plan_sets, read_items
from rayeval.errors import MetricError, ServiceError, SpecError, TaskFailedError
from rayeval.fingerprint import GIVEN_PREDICTIONS, inference_fingerprint, metric_fingerprint, model_identity
from rayeval.jobs.pairwise import pairwise_rows, run_pairwise
from rayeval.jobs.pipeline import build_dataset
from rayeval.jobs.sink import write_stream
from rayeval.report import Summary, metric_outputs, summarize
from rayeval.resume import DoneItems, done_items, drop_failed_rows, recover_replacements
from rayeval.reuse import ReusePlan, candidate_sources, current_fps, item_hashes, plan_reuse
from rayeval.serve_apps.builtins import ModelSource, resolve_source
from rayeval.serve_apps.hosting import deploy, release
from rayeval.serve_apps.llm import check_engine
from rayeval.spec import TaskSpec, resolve_secret
from rayeval.store import ResultsStore
from rayeval.tasks import caller_tags

__all__ = ["PreparedTask", "new_task_id", "prepare", "run_prepared"]

log = logging.getLogger("rayeval")
#: Rows gathered per Parquet file (big row groups keep reading the results cheap), and the most
#: seconds a scored row waits before it is committed (what a crash can cost).
ROWS_PER_FILE = 4096
FLUSH_SECONDS = 10.0


def new_task_id(name: str) -> str:
    """A unique, sortable, readable task id."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


@dataclass
class PreparedTask:
    """A task that passed every check and is ready to run."""

    spec: TaskSpec
    task_id: str
    plans: list[SetPlan]
    metrics_by_set: dict[str, list[dict[str, Any]]]
    outputs: list[str]
    auth_values: dict[str, str | None]
    sources: dict[str, ModelSource] = field(default_factory=dict)

    @property
    def store(self) -> ResultsStore:
        """The task's results store."""
        return ResultsStore(self.spec.output)

    @functools.cached_property
    def model_fps(self) -> dict[str, str]:
        """model name -> the fingerprint of its answers (rayeval.fingerprint); computed once (a hosted
        checkpoint's files are listed for it)."""
        spec = self.spec
        if spec.mode == "evaluation_only":
            return {m.name: GIVEN_PREDICTIONS for m in spec.models}
        return {m.name: inference_fingerprint(m, spec.model_parameters(m), self._source(m.name)) for m in spec.models}

    @functools.cached_property
    def custom_fps(self) -> dict[str, str]:
        """Mode custom: configuration name -> the fingerprint of what decides its metrics."""
        from rayeval.custom.runner import config_fingerprint

        return {c.name: config_fingerprint(c) for c in self.spec.custom}

    @functools.cached_property
    def metric_fps(self) -> dict[str, dict[str, str]]:
        """set name -> metric name -> the fingerprint of the metric's configuration and judge."""
        judges = {j.name: model_identity(j, self._source(j.name)) for j in self.spec.judges}
        return {
            s: {ref["name"]: metric_fingerprint(ref, judges.get((ref.get("judge") or {}).get("model"))) for ref in refs}
            for s, refs in self.metrics_by_set.items()
        }

    def _source(self, name: str) -> str | None:
        source = self.sources.get(name)
        return source.source if source is not None else None

    def scrub(self, text: str) -> str:
        """Remove every resolved credential from a text."""
        return scrub(text, self.auth_values.values())


def _check_metrics(spec: TaskSpec) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    metrics_by_set = {s.name: [ref.model_dump() for ref in s.metrics] for s in spec.evaluation_sets}
    outputs: set[str] = set()
    for i, s in enumerate(spec.evaluation_sets):
        try:
            outs = [o for o, _ in metric_outputs({s.name: metrics_by_set[s.name]})[s.name]]
        except MetricError as e:
            raise MetricError(e.message, field=f"evaluation_sets.{i}.metrics") from None
        dupes = sorted({o for o in outs if outs.count(o) > 1})
        if dupes:
            raise MetricError(
                f"metrics of set '{s.name}' produce the same output twice ({', '.join(dupes)}); list each once",
                field=f"evaluation_sets.{i}.metrics",
            )
        outputs.update(outs)
        for j, ref in enumerate(metrics_by_set[s.name]):
            _check_metric_steps(ref, field=f"evaluation_sets.{i}.metrics.{j}")
    return metrics_by_set, sorted(outputs)


def _check_metric_steps(ref: dict[str, Any], *, field: str) -> None:
    """Check a metric's judge prompt and pre/post-processing scripts now (a broken one fails the task
    before it runs), and carry the scripts' source to the actors, which may run on nodes without the files."""
    from rayeval.metrics import MeanAggregator, build_metric, checked_source, placeholders

    if ref.get("judge"):
        try:
            placeholders(ref["judge"]["prompt"])
        except ValueError as e:
            raise MetricError(f"judge prompt is not a valid template: {e}", field=f"{field}.judge.prompt") from None

    for kind in ("preprocess", "postprocess"):
        path = ref.get(kind)
        if path is None:
            continue
        ref[f"{kind}_source"] = checked_source(path, kind, field=f"{field}.{kind}")
    if ref.get("postprocess"):
        metric = build_metric(ref)
        outs = metric.outputs()
        if len(outs) != 1 or not isinstance(metric.aggregator(outs[0]), MeanAggregator):
            raise MetricError(
                f"postprocess applies to a metric with one per-item score; '{ref['name']}' has "
                f"{'outputs ' + ', '.join(outs) if len(outs) > 1 else 'a corpus-level score'}",
                field=f"{field}.postprocess",
            )


#: Placeholders every item has, whatever its set's columns.
CORE_PLACEHOLDERS = {"item_id", "eval_set", "query", "reference", "prediction", "model"}


def _check_placeholders(plans: list[Any], metrics_by_set: dict[str, list[dict[str, Any]]]) -> None:
    """A judge prompt's placeholders must name columns of the set (unless a preprocessing script adds them)."""
    from rayeval.metrics import placeholders

    for i, plan in enumerate(plans):
        c = plan.spec.columns
        renamed = {c.id: "item_id", c.query: "query", c.reference: "reference"}
        sources = [src for src in [plan.shared, *plan.per_model.values()] if src is not None]
        have = set.intersection(*(src.columns() for src in sources)) if sources else set()
        for j, ref in enumerate(metrics_by_set[plan.spec.name]):
            if not ref.get("judge") or ref.get("preprocess"):
                continue
            for name in placeholders(ref["judge"]["prompt"]):
                if name in CORE_PLACEHOLDERS or (name in have and name not in renamed):
                    continue
                hint = (
                    f"column '{name}' is mapped to the item's {renamed[name]}: write {{{renamed[name]}}}"
                    if name in renamed
                    else f"the set's columns are {', '.join(sorted(have - set(renamed))) or 'only the mapped ones'}; "
                    "fix the prompt, or add the column with a preprocessing script"
                )
                raise MetricError(
                    f"judge prompt of metric '{ref['name']}' (set '{plan.spec.name}') has placeholder {{{name}}}, "
                    f"which no row provides: {hint}",
                    field=f"evaluation_sets.{i}.metrics.{j}.judge.prompt",
                )


def _check_output(location: str) -> None:
    """A local output location must be a folder we can create or write (URIs are checked on write)."""
    if "://" in location:
        return
    path = Path(location)
    if path.exists() and not path.is_dir():
        raise SpecError(f"output '{location}' is a file; give a folder", field="output")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SpecError(f"output '{location}' cannot be created: '{probe}' is not writable", field="output")


def prepare(spec: TaskSpec, task_id: str | None = None, *, check_services: bool = True) -> PreparedTask:
    """Validate everything a task needs before anything is written.

    Raises:
        SpecError: bad metrics, sets or secrets (DatasetError/MetricError are SpecErrors).
        ServiceError: a model service is unreachable or refuses the credentials.
    """
    try:
        metrics_by_set, outputs = _check_metrics(spec)
        plans = plan_sets(spec)  # none in mode custom: its programs read their own data
        _check_placeholders(plans, metrics_by_set)
        auth_values = {
            m.name: resolve_secret(m.auth_header_value, field=f"models.{i}.auth_header_value")
            for i, m in enumerate(spec.models)
        }
        auth_values.update(
            {
                j.name: resolve_secret(j.auth_header_value, field=f"judges.{i}.auth_header_value")
                for i, j in enumerate(spec.judges)
            }
        )
        _check_output(spec.output)
        sources = _resolve_sources(spec)
    except SpecError as e:
        raise e.with_source(spec.source) from None
    if check_services:
        models = spec.models if spec.mode != "evaluation_only" else []
        for m in [*models, *spec.judges]:
            if m.hosted:  # checked once deployed
                continue
            endpoint = resolve_endpoint(m, auth_values[m.name], spec.model_parameters(m).request_timeout)
            report = check_service(endpoint, tiny_request=False)
            if not report.ok:
                raise ServiceError(
                    f"model '{m.name}' at {endpoint.base_url}: {report.failure()}; "
                    f"run `rayeval check-service {endpoint.base_url} --model {endpoint.model_id}` for details"
                )
    task_id = task_id or new_task_id(spec.name)
    return PreparedTask(spec, task_id, plans, metrics_by_set, outputs, auth_values, sources)


def _resolve_sources(spec: TaskSpec) -> dict[str, ModelSource]:
    """Where each hosted model's weights come from (checked now: a bad path fails before anything runs)."""
    sources = {}
    for m in spec.hosted_models():
        group, i = ("judges", spec.judges.index(m)) if m in spec.judges else ("models", spec.models.index(m))
        where = f"{group}.{i}"
        try:
            sources[m.name] = resolve_source(m, field=f"{where}.path" if m.kind == "checkpoint" else f"{where}.builtin")
            check_engine(m, sources[m.name], field=f"{where}.engine.max_model_len")
        except ServiceError as e:
            raise ServiceError(f"{where} ({m.name}): {e.message}") from None
    return sources


def _reuse_sources(task: PreparedTask, records: list[dict[str, Any]]) -> dict[tuple[str, str], list[Any]]:
    """(model, set) -> earlier tasks that may supply items, newest first. A task that carries tags
    supplies only tasks sharing one of them (an untagged task supplies any)."""
    spec = task.spec
    found = {}
    fps = task.model_fps
    for m in spec.models:
        for plan in task.plans:
            sources = candidate_sources(
                records, task.task_id, m.name, plan.spec.name, spec.reuse.tasks, model_fp=fps[m.name], tags=spec.tags
            )
            if sources:
                found[(m.name, plan.spec.name)] = sources
    return found


def _plan_reuse(task: PreparedTask, records: list[dict[str, Any]], done: DoneItems | None) -> ReusePlan | None:
    """Which items earlier tasks supply (None: reuse off, or no earlier task has any of them)."""
    spec = task.spec
    if not spec.reuse.enabled:
        return None
    sources = _reuse_sources(task, records)
    if not sources:
        return None

    fps, cpus = task.model_fps, spec.resources.actor_num_cpus
    parts = []
    for plan in task.plans:
        models = {m: fps[m] for m, s in sources if s == plan.spec.name}
        if not models:
            continue
        if spec.mode == "evaluation_only":  # each model's predictions are part of its items
            reads = [(read_items(plan, m), {m: fp}) for m, fp in models.items()]
        else:
            reads = [(read_items(plan, None), models)]
        for ds, model_fps in reads:
            kwargs = {"model_fps": model_fps, "given": spec.mode == "evaluation_only"}
            parts.append(ds.map_batches(item_hashes, fn_kwargs=kwargs, batch_format="pyarrow", num_cpus=cpus))
    current = current_fps(parts[0] if len(parts) == 1 else parts[0].union(*parts[1:]))
    if done is not None:  # this task's own committed items are neither run nor taken again
        for key, (ids, item_fps) in list(current.items()):
            own = done.hashes.get(key)
            if own is not None and len(own):
                keep = ~np.isin(ids, own)
                current[key] = (ids[keep], item_fps[keep])
    return plan_reuse(current, sources)


def _record(task: PreparedTask) -> dict[str, Any]:
    spec = task.spec
    if spec.mode == "custom":
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


def _base_record(task: PreparedTask) -> dict[str, Any]:
    spec = task.spec
    return {
        "task_id": task.task_id,
        "name": spec.name,
        "remarks": spec.remarks,
        "tags": spec.tags,
        "mode": spec.mode,
        "models": [m.name for m in spec.models],
        "output": spec.output,
        "creator": getpass.getuser(),
        "model_fps": task.model_fps,
        "job_id": _job_id(),
        "state": "pending",
    }


def _job_id() -> str | None:
    try:
        return ray.get_runtime_context().get_job_id()
    except Exception:  # not connected
        return None


def _deploy(task: PreparedTask, model: Any, coordinator: Any) -> Any:
    """Deploy one hosted model, recording each step in the task record (visible in `rayeval status`)."""

    def on_event(event: dict[str, Any]) -> None:
        log.info("model %s: %s (%s)", model.name, event["state"], event.get("message", ""))
        ray.get(coordinator.set_deployment.remote(task.task_id, model.name, **event))

    return deploy(model, user=task.task_id, coordinator=coordinator, on_event=on_event, source=task.sources[model.name])


def _stages(spec: TaskSpec) -> str:
    stages = ["read"] + (["inference"] if spec.mode == "inference_and_evaluation" else [])
    if any(m.judge for s in spec.evaluation_sets for m in s.metrics):
        stages.append("judging")
    return " -> ".join([*stages, "scoring", "writer"])


def _note_reuse(task: PreparedTask, coordinator: Any, reuse: ReusePlan) -> None:
    """Log what earlier tasks supply, and show it in the task's progress."""
    sources = ", ".join(f"{t}: {n}" for t, n in sorted(reuse.sources().items(), key=lambda kv: -kv[1]))
    log.info("task %s: %d items reused from earlier tasks (%s)", task.task_id, reuse.total(), sources)
    record = ray.get(coordinator.get.remote(task.task_id))
    progress = record["progress"]
    for (model, eval_set), n in reuse.counts().items():
        progress[model][eval_set]["reused"] = progress[model][eval_set].get("reused", 0) + n
    ray.get(coordinator.set_progress.remote(task.task_id, progress))


def _log_outcome(task: PreparedTask, summary: Summary, state: str) -> None:
    """The end of a run in the event log: items, errors by kind (the most frequent five), retries."""
    items = sum(c["done"] for c in summary.counts.values())
    errors = sum(c["errors"] for c in summary.counts.values())
    log.info(
        "task %s %s: %d items stored, %d with errors, %d retries", task.task_id, state, items, errors, summary.retries
    )
    for kind, n in summary.error_kinds.most_common(5):
        log.warning("task %s: %d items failed with: %s", task.task_id, n, kind)


class _EventLog(logging.Handler):
    """Forwards rayeval's log records of a running task to its event log (`rayeval logs`), secrets scrubbed."""

    def __init__(self, coordinator: Any, task_id: str, scrub: Callable[[str], str]):
        super().__init__(level=logging.INFO)
        self.coordinator, self.task_id, self.scrub = coordinator, task_id, scrub

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.coordinator.log_event.remote(self.task_id, record.levelname.lower(), self.scrub(record.getMessage()))
        except Exception:  # the event log must never break a run
            pass


class _Heartbeat(threading.Thread):
    """Tells the coordinator every HEARTBEAT_S that this driver is alive (a silent one died: restartable)."""

    def __init__(self, coordinator: Any, task_id: str):
        super().__init__(daemon=True, name="rayeval-heartbeat")
        self.coordinator, self.task_id = coordinator, task_id
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            self.coordinator.heartbeat.remote(self.task_id)


class _ProgressMonitor(threading.Thread):
    """Polls the coordinator and hands the task record to a callback until stopped."""

    def __init__(self, coordinator: Any, task_id: str, callback: Callable[[dict[str, Any]], None], every: float):
        super().__init__(daemon=True, name="rayeval-progress")
        self.coordinator, self.task_id, self.callback, self.every = coordinator, task_id, callback, every
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                record = ray.get(self.coordinator.get.remote(self.task_id), timeout=10)
            except Exception:  # coordinator restarting: try again next tick
                continue
            if record:
                self.callback(record)


def run_prepared(
    task: PreparedTask,
    *,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    progress_every: float = 1.0,
    resume: str | None = None,
    submitted: bool = False,
    tags: Any = None,
) -> dict[str, Any]:
    """Run a prepared task to its end on the connected cluster; returns its final record.

    A failed item never stops the rest; a failure of the pipeline itself marks the task failed
    and re-raises. What was written stays in the store.

    Args:
        resume: Run the task again under its id: 'unfinished' skips every item already committed,
            'failed' first takes the failed rows out of the results so that those items run again.
        submitted: This driver is a Ray job submitted by `rayeval submit` (its id is the task id).
        tags: The caller's tags (default $RAYEVAL_TAGS): results are reused only from tasks visible to them.
    """
    spec, store = task.spec, task.store
    coordinator = get_coordinator()
    store.write_json(task.task_id, "spec.json", spec.redacted())
    record = _record(task)
    record["submitted"] = submitted
    done, dropped = None, 0
    if resume is not None and spec.mode == "custom":
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
    record["resumed"] = done.total() if done is not None else 0
    runs = ray.get(coordinator.register.remote(record))["runs"]
    events = _EventLog(coordinator, task.task_id, task.scrub)
    log.addHandler(events)
    level = log.level
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)  # the event log takes INFO; console handlers keep their own levels
    try:
        if done is not None:
            log.info(
                "task %s run %d: %d items already committed are skipped%s",
                task.task_id,
                runs,
                done.total(),
                f"; {dropped} failed rows taken out to run again" if resume == "failed" else "",
            )
        if spec.mode == "custom":
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
    on_progress: Callable[[dict[str, Any]], None] | None,
    progress_every: float,
) -> dict[str, Any]:
    spec, store = task.spec, task.store
    ray.get(coordinator.set_state.remote(task.task_id, "running"))
    log.info("task %s running: %d model(s) x %d set(s)", task.task_id, len(spec.models), len(task.plans))
    try:
        reuse = _plan_reuse(task, ray.get(coordinator.list_tasks.remote(tags)), done)
    except Exception as e:
        error = task.scrub(f"{type(e).__name__}: {e}")[:4000]
        ray.get(coordinator.set_state.remote(task.task_id, "failed", error=f"planning reuse: {error}"))
        raise TaskFailedError(f"task {task.task_id} failed while planning reuse of earlier results: {error}") from e
    if reuse is not None and reuse.total():
        _note_reuse(task, coordinator, reuse)
    limiters = []
    if spec.mode == "inference_and_evaluation":
        limiters = [create_limiter(task.task_id, m.name, spec.model_parameters(m).max_concurrency) for m in spec.models]
    judging = spec.parameters.max_judging_concurrency
    limiters += [create_limiter(task.task_id, judge_limiter_key(j.name), judging) for j in spec.judges]
    ray.get([lim.leases.remote() for lim in limiters])
    with _session(task, coordinator, on_progress, progress_every, limiters) as hosted:
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
            metric_fps=task.metric_fps,
        )
        writer = writer_actor(spec.resources.actor_num_cpus).remote(
            spec.output, task.task_id, new_run_id(), ROWS_PER_FILE, FLUSH_SECONDS
        )
        log.info("task %s: pipeline started (%s)", task.task_id, _stages(spec))
        outcome = write_stream(ds, writer, coordinator, task.task_id)
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
    _log_outcome(task, summary, final_state)
    reused = {"total": sum(summary.reused_from.values()), "sources": dict(summary.reused_from)}
    rows = summary.rows + pairwise_rows(store, task.task_id, spec)
    return _finish(task, coordinator, rows, progress, final_state, reused, on_progress)


def _finish(
    task: PreparedTask,
    coordinator: Any,
    rows: list[dict[str, Any]],
    progress: dict[str, Any],
    state: str,
    reused: dict[str, Any],
    on_progress: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    """Store the summary, set the final progress and state; returns the final record."""
    ray.get(coordinator.set_progress.remote(task.task_id, progress))
    task.store.write_json(task.task_id, "summary.json", rows)
    ray.get(coordinator.set_state.remote(task.task_id, state, summary=rows, reused=reused))
    final = ray.get(coordinator.get.remote(task.task_id))
    if on_progress is not None:
        on_progress(final)
    return final


@contextlib.contextmanager
def _session(
    task: PreparedTask,
    coordinator: Any,
    on_progress: Callable[[dict[str, Any]], None] | None,
    progress_every: float,
    limiters: list[Any],
) -> Iterator[dict[str, dict[str, Any]]]:
    """A task's run on the cluster: heartbeat and progress monitor going, hosted models deployed
    (yields their endpoints); a failure marks the task failed; everything is released at the end."""
    heartbeat = _Heartbeat(coordinator, task.task_id)
    heartbeat.start()
    monitor = None
    if on_progress is not None:
        monitor = _ProgressMonitor(coordinator, task.task_id, on_progress, progress_every)
        monitor.start()
    deployed: list[tuple[str, str, bool]] = []  # (model, Serve app, keep) to release at the end
    try:
        hosted = {}
        for m in task.spec.hosted_models():
            endpoint = _deploy(task, m, coordinator)
            deployed.append((m.name, endpoint.app, m.engine.keep))
            hosted[m.name] = endpoint.as_dict()
        yield hosted
    except BaseException as e:
        error = task.scrub(f"{type(e).__name__}: {e}")[:4000]
        log.error("task %s failed: %s", task.task_id, error)
        ray.get(coordinator.set_state.remote(task.task_id, "failed", error=error))
        if isinstance(e, Exception):
            raise TaskFailedError(f"task {task.task_id} failed: {error}") from e
        raise
    finally:
        heartbeat.stopped.set()
        if monitor is not None:
            monitor.stopped.set()
        for lim in limiters:
            ray.kill(lim)
        for name, app, keep in deployed:
            deleted = release(app, user=task.task_id, coordinator=coordinator, keep=keep)
            state = "deleted" if deleted else ("kept" if keep else "released (still used by another task)")
            ray.get(coordinator.set_deployment.remote(task.task_id, name, state=state, message=f"{state} at task end"))


def _run_custom(
    task: PreparedTask,
    coordinator: Any,
    resume: bool,
    tags: list[str] | None,
    on_progress: Callable[[dict[str, Any]], None] | None,
    progress_every: float,
) -> dict[str, Any]:
    """Mode custom: every configuration x model pair's program (rayeval.custom.runner)."""
    from rayeval.custom.runner import custom_summary, run_pairs

    spec = task.spec
    ray.get(coordinator.set_state.remote(task.task_id, "running"))
    log.info("task %s running: %d configuration(s) x %d model(s)", task.task_id, len(spec.custom), len(spec.models))
    records = ray.get(coordinator.list_tasks.remote(tags)) if spec.reuse.enabled else []
    with _session(task, coordinator, on_progress, progress_every, []) as hosted:
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
