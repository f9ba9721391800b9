"""The Ray Data graph of a task: read -> (inference) -> scoring, one stream, no barrier.

Branches (one per model, or per model x set in Evaluation Only mode) are unioned before the
scoring stage; the caller writes the stream to the results store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rayeval.cluster.resources import request_actor_options, scoring_actor_options
from rayeval.inference.client import HostedEndpoint
from rayeval.inference.stage import InferenceActor
from rayeval.metrics import ref_outputs
from rayeval.scoring.judge import JudgeActor, judge_connections, judging_limits
from rayeval.scoring.stage import ScoringActor
from rayeval.sets.plan import SetPlan
from rayeval.sets.read import read_items
from rayeval.spec import MetricRef, TaskSpec
from rayeval.store.resume import DoneItems, skip_done
from rayeval.store.reuse import ReusePlan, reused_rows

if TYPE_CHECKING:
    import ray.data

__all__ = ["build_dataset"]

MiB = 1024 * 1024


def _union(parts: list[ray.data.Dataset]) -> ray.data.Dataset:
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


def build_dataset(
    spec: TaskSpec,
    plans: list[SetPlan],
    task_id: str,
    *,
    auth_values: dict[str, str | None],
    metrics_by_set: dict[str, list[MetricRef]],
    outputs: list[str],
    hosted: dict[str, HostedEndpoint] | None = None,
    done: DoneItems | None = None,
    reuse: ReusePlan | None = None,
    model_fps: dict[str, str] | None = None,
    metric_fps: dict[str, dict[str, str]] | None = None,
    local_node: str | None = None,
    epoch: int | None = None,
    set_fps: dict[str, dict[str, str]] | None = None,
) -> ray.data.Dataset:
    """The lazy, scored stream of every (model, item) of the task.

    `hosted` maps the name of each model rayeval deployed to its endpoint.
    `done` holds the items already committed (a restart): they are left out in the read stage.
    `reuse` says which items come from earlier tasks: they are left out of the read stage too, and
    their stored rows join the stream before judging and scoring (rayeval.store.reuse).
    `model_fps`, `set_fps` (a model's on a set with its own parameters) and `metric_fps` are the
    fingerprints stored with each row (rayeval.store.fingerprint).
    `local_node` is where stored results on a local folder are read (rayeval.cluster.placement).
    `epoch` is the run's lease: its limiters are its own (rayeval.actors.limiter).
    """

    def skipped(model: str) -> dict[str, Any]:
        mine = dict(done.for_model(model)) if done is not None else {}
        for s, ids in (reuse.skip.get(model, {}) if reuse is not None else {}).items():
            mine[s] = np.union1d(mine[s], ids) if s in mine else ids
        return mine

    def unfinished(items: ray.data.Dataset, model: str) -> ray.data.Dataset:
        mine = skipped(model)
        if not mine:
            return items
        return items.map_batches(
            skip_done, fn_kwargs={"done": mine}, batch_format="pyarrow", num_cpus=res.actor_num_cpus
        )

    hosted = hosted or {}

    res = spec.resources
    system_columns = {p.spec.name: p.spec.columns.system for p in plans if p.spec.columns.system}
    choice_columns = {p.spec.name: p.spec.columns.choices for p in plans if p.spec.loglikelihood}
    secrets = [v for v in auth_values.values() if v]  # masked in every answer and error (rayeval.redaction)
    branches = []
    for model in spec.models:
        if spec.predictions_given:  # the read tasks give rows ready to score
            branches.extend(unfinished(read_items(plan, model.name), model.name) for plan in plans)
            continue
        # One batch per block into inference: an inference task's answers move on (to judging, scoring
        # and the writer) only when its whole block is answered, and its batches run one after the
        # other in the task's thread (rayeval.inference.loop), so a block of several batches would hold
        # its first batch's answers back behind its last.
        items = unfinished(_union([read_items(plan, None) for plan in plans]), model.name).repartition(
            target_num_rows_per_block=res.batch_size
        )
        params = spec.model_parameters(model)
        own = {s.name: spec.set_parameters(model, s) for s in spec.evaluation_sets if s.parameters is not None}
        branches.append(
            items.map_batches(
                InferenceActor,
                fn_constructor_kwargs={
                    "task_id": task_id,
                    "model": model.model_copy(update={"auth_header_value": None}),  # the credential: auth_value
                    "parameters": params,
                    "auth_value": auth_values.get(model.name),
                    "hosted": hosted.get(model.name),
                    "system_columns": system_columns,
                    "choice_columns": choice_columns,
                    "epoch": epoch,
                    "secrets": secrets,
                    "set_parameters": own,
                },
                **request_actor_options(res, "inference"),
            )
        )
    if reuse is not None and reuse.take:
        outputs_by_metric = {
            s: {ref.name: [o for o, _ in ref_outputs(ref)] for ref in refs} for s, refs in metrics_by_set.items()
        }
        branches.extend(reused_rows(reuse, metric_fps or {}, outputs_by_metric, res.actor_num_cpus, local_node))
    stream = _union(branches)
    judge_metrics = {
        s: [ref for ref in refs if ref.judge is not None]
        for s, refs in metrics_by_set.items()
        if any(r.judge is not None for r in refs)
    }
    if judge_metrics:  # judged on the same stream, as soon as each prediction exists
        stream = stream.map_batches(
            JudgeActor,
            fn_constructor_kwargs={
                "task_id": task_id,
                "judge_metrics": judge_metrics,
                "judges": judge_connections(spec.judges, auth_values, hosted),
                "epoch": epoch,
                "secrets": secrets,
                **judging_limits(spec.parameters),
                "set_retries": {
                    s.name: spec.parameters.merged(s.parameters).max_judging_retry_per_q
                    for s in spec.evaluation_sets
                    if s.parameters is not None
                },
            },
            **request_actor_options(res, "judging"),
        )
    scored = stream.map_batches(
        ScoringActor,
        fn_constructor_kwargs={
            "task_id": task_id,
            "metrics_by_set": metrics_by_set,
            "outputs": outputs,
            "model_fps": model_fps,
            "metric_fps": metric_fps,
            "given": spec.predictions_given,
            "epoch": epoch,
            "likelihood_sets": tuple(choice_columns),
            "set_fps": set_fps,
        },
        **scoring_actor_options(res),
    )
    if res.data_memory_mb is not None:
        # Blocks wait in the object store when one stage outruns the next; a fixed budget keeps
        # that queue (and the memory of the run) the same size for any size of set.
        limits = scored.context.execution_options.resource_limits
        scored.context.execution_options.resource_limits = limits.copy(object_store_memory=res.data_memory_mb * MiB)
    return scored
