"""Reuse of earlier tasks' results, per item, keyed on fingerprints.

When a task evaluates model M on set S and earlier tasks hold results for (M, S), every item
whose stored row has the same item fingerprint (`item_fp`: the model's identity and output
settings, the item's id and content, see rayeval.store.fingerprint) and no error is taken from the
newest such task instead of being sent to the model again. Scores come along for the metrics
whose configuration is unchanged (`metric_fps`); the others (a metric added later, a changed
prompt) are computed on the reused prediction.

How it runs, without a barrier and without holding rows in memory:

1. `plan_reuse`: a Ray Data pass over the set computes the fingerprints the task's items have
   now (8 bytes an item, per model); the candidate tasks' stored fingerprints are read
   (column `item_fp` only); each item is assigned to the newest task that has it.
2. The inference branch skips the reused items (like items a restart finds committed).
3. `reused_rows` reads the chosen tasks' result files and keeps the assigned rows, shaped as
   inference output, with the scores to carry in the `carried` column; this branch joins the
   stream before judging and scoring.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayeval.cluster.placement import is_shared, pinned
from rayeval.records import TaskRecord
from rayeval.schema import STREAM_SCHEMA, score_column, seconds_column
from rayeval.sets.plan import SetPlan
from rayeval.sets.read import read_items
from rayeval.spec import TaskSpec
from rayeval.store.fingerprint import fp64_array
from rayeval.store.results import ResultsStore
from rayeval.store.resume import DoneItems, id_hashes

if TYPE_CHECKING:
    import ray.data

__all__ = [
    "ReusePlan",
    "ReuseSource",
    "candidate_sources",
    "plan_reuse",
    "plan_task_reuse",
    "reusable_tasks",
    "reused_rows",
    "take_reused",
]


@dataclass(frozen=True)
class ReuseSource:
    """An earlier task results may come from."""

    task_id: str
    output: str


@dataclass
class ReusePlan:
    """Which items come from which earlier task.

    Attributes:
        take: (model, eval_set) -> [(source, sorted item_fp hashes to take from it)], newest source first.
        skip: model -> eval_set -> sorted id hashes of the items reused (the inference branch leaves them out).
        stale: (model, eval_set) -> items earlier tasks hold only as answers sent before the model service
            says its model was created (redeployed since): evaluated again.
    """

    take: dict[tuple[str, str], list[tuple[ReuseSource, np.ndarray]]] = field(default_factory=dict)
    skip: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    stale: dict[tuple[str, str], int] = field(default_factory=dict)

    def sources(self) -> dict[str, int]:
        """Every task that supplies items, with how many: task_id -> count."""
        found: dict[str, int] = {}
        for takes in self.take.values():
            for source, keys in takes:
                found[source.task_id] = found.get(source.task_id, 0) + len(keys)
        return found

    def total(self) -> int:
        return sum(self.sources().values())

    def counts(self) -> dict[tuple[str, str], int]:
        """(model, eval_set) -> items reused."""
        return {key: sum(len(k) for _, k in parts) for key, parts in self.take.items()}


def reusable_tasks(
    records: Iterable[TaskRecord], task_id: str, named: list[str] | None, tags: list[str] | None = None
) -> list[TaskRecord]:
    """Earlier tasks a task may take results from, newest first: never itself; only those `named`
    (by id or name) when the spec names some; with the task's `tags`, only tasks sharing one of them
    or carrying none."""
    mine = set(tags or [])
    return [
        r
        for r in sorted(records, key=lambda r: r.get("created_at", 0), reverse=True)
        if r["task_id"] != task_id
        and (named is None or r["task_id"] in named or r.get("name") in named)
        and (tags is None or not r.get("tags") or mine & set(r["tags"]))
    ]


def candidate_sources(
    records: Iterable[TaskRecord],
    task_id: str,
    model: str,
    eval_set: str,
    named: list[str] | None,
    model_fp: str | None = None,
    tags: list[str] | None = None,
) -> list[ReuseSource]:
    """Earlier tasks (`reusable_tasks`) that evaluated `model` on `eval_set`, newest first. With
    `model_fp`, only tasks that ran the model on that set with that fingerprint (recorded as
    `set_fps`, else `model_fps`): no other can hold a match."""
    return [
        ReuseSource(r["task_id"], r["output"])
        for r in reusable_tasks(records, task_id, named, tags)
        if eval_set in r.get("progress", {}).get(model, {})
        and (model_fp is None or _answers_fp(r, model, eval_set) == model_fp)
    ]


def _answers_fp(record: TaskRecord, model: str, eval_set: str) -> str | None:
    """The fingerprint of a task's answers of `model` on `eval_set`, as its record has it."""
    return ((record.get("set_fps") or {}).get(model) or {}).get(eval_set) or (record.get("model_fps") or {}).get(model)


def _unique(parts: list[np.ndarray]) -> np.ndarray:
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.uint64)


def stored_fps(
    source: ReuseSource, model: str, eval_set: str, not_before: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted item_fp hashes of a task's stored rows of (model, eval_set) that have no error: (those to
    take, those whose answer was sent before `not_before`, Unix seconds: stale)."""
    store = ResultsStore(source.output)
    fresh, stale = [], []
    columns = ["item_fp", "error"] + (["started_at"] if not_before is not None else [])
    for batch in store.iter_results(source.task_id, columns, partition=(model, eval_set)):
        if "item_fp" not in batch.schema.names:  # results from before fingerprints were stored
            continue
        ok = pc.and_(pc.is_valid(batch.column("item_fp")), pc.is_null(batch.column("error")))
        rows = batch.filter(ok)
        fps = fp64_array(rows.column("item_fp").to_pylist())
        if not_before is None:
            fresh.append(fps)
            continue
        sent = seconds_column(rows.column("started_at")) if "started_at" in rows.schema.names else None
        # An answer without a send time cannot be shown fresh: stale, like one sent before.
        if sent is None:
            old = np.ones(len(fps), dtype=bool)
        else:
            old = np.asarray(pc.fill_null(pc.less(sent, not_before), True), dtype=bool)
        fresh.append(fps[~old])
        stale.append(fps[old])
    return _unique(fresh), _unique(stale)


def plan_reuse(
    current: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]],
    sources: dict[tuple[str, str], list[ReuseSource]],
    not_before: dict[str, float] | None = None,
) -> ReusePlan:
    """Assign each current item (id hash, item_fp hash) to the newest source that stored it without error
    (and, for a model in `not_before`, sent it no earlier than that: model -> Unix seconds)."""
    plan = ReusePlan()
    for key, (ids, fps) in current.items():
        left = np.ones(len(fps), dtype=bool)
        stale = np.zeros(len(fps), dtype=bool)
        for source in sources.get(key, []):
            if not left.any():
                break
            stored, old = stored_fps(source, *key, not_before=(not_before or {}).get(key[0]))
            stale |= left & np.isin(fps, old)
            hit = left & np.isin(fps, stored)
            if not hit.any():
                continue
            left &= ~hit
            plan.take.setdefault(key, []).append((source, np.unique(fps[hit])))
        if (stale & left).any():
            plan.stale[key] = int((stale & left).sum())
        if not left.all():
            model, eval_set = key
            plan.skip.setdefault(model, {})[eval_set] = np.unique(ids[~left])
    return plan


def take_reused(
    batch: pa.Table,
    *,
    keys: np.ndarray,
    model: str,
    eval_set: str,
    source: str,
    metric_fps: dict[str, str],
    metric_outputs: dict[str, list[str]],
) -> pa.Table:
    """Ray Data map function over a source task's stored rows of (model, eval_set): keep the rows
    assigned to it (`keys`: sorted item_fp hashes), shaped as inference output (STREAM_SCHEMA),
    with the scores of unchanged metrics in `carried`.

    Args:
        metric_fps: metric name -> its fingerprint in this task.
        metric_outputs: metric name -> its output names (score columns).
    """
    n = batch.num_rows
    if not n:
        return STREAM_SCHEMA.empty_table()
    fps = fp64_array(batch.column("item_fp").to_pylist())
    pos = np.searchsorted(keys, fps)
    pos[pos == len(keys)] = 0
    mask = (keys[pos] == fps) if len(keys) else np.zeros(n, dtype=bool)
    mask &= pc.is_null(batch.column("error")).to_numpy(zero_copy_only=False)
    rows = batch.filter(pa.array(mask))
    names = rows.schema.names
    carried = []
    stored_fps_col = rows.column("metric_fps").to_pylist() if "metric_fps" in names else [None] * rows.num_rows
    details_col = rows.column("details").to_pylist() if "details" in names else [None] * rows.num_rows
    scores = {
        out: rows.column(score_column(out)).to_pylist()
        for outs in metric_outputs.values()
        for out in outs
        if score_column(out) in names
    }
    for i in range(rows.num_rows):
        stored = json.loads(stored_fps_col[i]) if stored_fps_col[i] else {}
        details = json.loads(details_col[i]) if details_col[i] else {}
        keep = {}
        for metric, fp in metric_fps.items():
            step = details.get(metric)
            if stored.get(metric) != fp or _failed(step):
                continue  # changed or failed: computed again on the reused prediction
            outs = metric_outputs.get(metric, [])
            if any(out not in scores for out in outs):
                continue
            keep[metric] = {"scores": {out: scores[out][i] for out in outs}, "details": step}
        carried.append(json.dumps(keep, ensure_ascii=False) if keep else None)
    columns = []
    for f in STREAM_SCHEMA:
        if f.name == "model":
            col = pa.array([model] * rows.num_rows, f.type)
        elif f.name == "eval_set":
            col = pa.array([eval_set] * rows.num_rows, f.type)
        elif f.name == "reused_from":
            col = pa.array([source] * rows.num_rows, f.type)
        elif f.name == "carried":
            col = pa.array(carried, f.type)
        elif f.name == "started_at" and f.name in names:
            col = seconds_column(rows.column(f.name))  # a timestamp, or Unix seconds in older files
        elif f.name in names:
            col = rows.column(f.name).cast(f.type)
        else:
            col = pa.nulls(rows.num_rows, f.type)
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=STREAM_SCHEMA)


def _failed(step: Any) -> bool:
    """A metric's stored step (or one of its samples' steps) ended in an error."""
    if not isinstance(step, dict):
        return False
    return bool(step.get("error")) or any(_failed(s) for s in step.get("samples") or [])


def reused_rows(
    plan: ReusePlan,
    metric_fps: dict[str, dict[str, str]],
    metric_outputs: dict[str, dict[str, list[str]]],
    num_cpus: float,
    local_node: str | None = None,
) -> list[ray.data.Dataset]:
    """The reused rows, one lazy dataset per (model, set, source), read from the sources' results.

    Args:
        metric_fps: set -> metric name -> fingerprint in this task.
        metric_outputs: set -> metric name -> output names.
        local_node: The node whose disk holds results stored in a local folder (their read tasks run there).
    """
    import ray.data

    parts = []
    for (model, eval_set), takes in plan.take.items():
        for source, keys in takes:
            store = ResultsStore(source.output)
            files = store.result_files(source.task_id, partition=(model, eval_set))
            if not files:
                continue
            where = {} if is_shared(source.output) else pinned(local_node)
            ds = ray.data.read_parquet(
                files, filesystem=store.fs, partitioning=None, num_cpus=num_cpus, ray_remote_args=where
            )
            parts.append(
                ds.map_batches(
                    take_reused,
                    fn_kwargs={
                        "keys": keys,
                        "model": model,
                        "eval_set": eval_set,
                        "source": source.task_id,
                        "metric_fps": metric_fps.get(eval_set, {}),
                        "metric_outputs": metric_outputs.get(eval_set, {}),
                    },
                    batch_format="pyarrow",
                    num_cpus=num_cpus,
                )
            )
    return parts


def current_fps(ds: ray.data.Dataset) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Gather a stream of (model, eval_set, id_hash, fp) rows into arrays per (model, eval_set)."""
    found: dict[tuple[str, str], tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=65536):
        models = batch.column("model").to_pylist()
        sets = batch.column("eval_set").to_pylist()
        ids = batch.column("id_hash").to_numpy()
        fps = batch.column("fp").to_numpy()
        for key in set(zip(models, sets)):
            rows = np.array([i for i, k in enumerate(zip(models, sets)) if k == key])
            ids_parts, fps_parts = found.setdefault(key, ([], []))
            ids_parts.append(ids[rows])
            fps_parts.append(fps[rows])
    return {k: (np.concatenate(i), np.concatenate(f)) for k, (i, f) in found.items()}


def item_hashes(
    batch: pa.Table, model_fps: dict[str, str], given: bool, likelihood_sets: tuple[str, ...] = ()
) -> pa.Table:
    """Ray Data map function: (model, eval_set, id_hash, fp) for each item and model of `model_fps`."""
    from rayeval.store.fingerprint import item_fp_column

    ids = id_hashes(batch.column("item_id").to_pylist())
    out = []
    for model, fp in model_fps.items():
        fps = fp64_array(item_fp_column(batch, fp, given=given, likelihood_sets=likelihood_sets))
        out.append(
            pa.table(
                {
                    "model": pa.array([model] * batch.num_rows, pa.string()),
                    "eval_set": batch.column("eval_set"),
                    "id_hash": pa.array(ids, pa.uint64()),
                    "fp": pa.array(fps, pa.uint64()),
                }
            )
        )
    return pa.concat_tables(out) if out else pa.table({"model": [], "eval_set": [], "id_hash": [], "fp": []})


def _reuse_sources(
    spec: TaskSpec,
    plans: list[SetPlan],
    task_id: str,
    fps: Callable[[str, str], str],
    records: list[TaskRecord],
) -> dict[tuple[str, str], list[ReuseSource]]:
    """(model, set) -> earlier tasks that may supply items, newest first. A task that carries tags
    supplies only tasks sharing one of them (an untagged task supplies any)."""
    found = {}
    for m in spec.models:
        for plan in plans:
            fp = fps(m.name, plan.spec.name)
            sources = candidate_sources(
                records, task_id, m.name, plan.spec.name, spec.reuse.tasks, model_fp=fp, tags=spec.tags
            )
            if sources:
                found[(m.name, plan.spec.name)] = sources
    return found


def plan_task_reuse(
    spec: TaskSpec,
    plans: list[SetPlan],
    task_id: str,
    model_fps: dict[str, str],
    records: list[TaskRecord],
    done: DoneItems | None,
    created: Callable[[str], float | None] | None = None,
    set_fps: dict[str, dict[str, str]] | None = None,
) -> ReusePlan | None:
    """Which items of a task earlier tasks supply (None: reuse off, or no earlier task has any of them).

    Args:
        spec, plans, task_id: The task and its checked sets.
        model_fps: model name -> the fingerprint of its answers.
        set_fps: model name -> set -> the fingerprint of its answers there, for sets with their own parameters.
        records: The earlier tasks the caller may see.
        done: This task's own committed items (a restart): neither run nor taken again.
        created: model name -> when its service says the model was created (None: it does not say);
            asked only for models earlier tasks have items of. Answers sent before are not taken.
    """
    if not spec.reuse.enabled:
        return None

    def answers_fp(model: str, eval_set: str) -> str:
        return (set_fps or {}).get(model, {}).get(eval_set) or model_fps[model]

    sources = _reuse_sources(spec, plans, task_id, answers_fp, records)
    if not sources:
        return None
    not_before = {}
    if created is not None:
        for model in sorted({m for m, _ in sources}):
            when = created(model)
            if when is not None:
                not_before[model] = when

    cpus = spec.resources.actor_num_cpus
    likelihood = tuple(p.spec.name for p in plans if p.spec.loglikelihood)
    parts = []
    for plan in plans:
        models = {m: answers_fp(m, s) for m, s in sources if s == plan.spec.name}
        if not models:
            continue
        if spec.predictions_given:  # each model's predictions are part of its items
            reads = [(read_items(plan, m), {m: fp}) for m, fp in models.items()]
        else:
            reads = [(read_items(plan, None), models)]
        for ds, model_fps in reads:
            kwargs = {"model_fps": model_fps, "given": spec.predictions_given, "likelihood_sets": likelihood}
            parts.append(ds.map_batches(item_hashes, fn_kwargs=kwargs, batch_format="pyarrow", num_cpus=cpus))
    current = current_fps(parts[0] if len(parts) == 1 else parts[0].union(*parts[1:]))
    if done is not None:  # this task's own committed items are neither run nor taken again
        for key, (ids, item_fps) in list(current.items()):
            own = done.hashes.get(key)
            if own is not None and len(own):
                keep = ~np.isin(ids, own)
                current[key] = (ids[keep], item_fps[keep])
    return plan_reuse(current, sources, not_before)
