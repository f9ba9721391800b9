"""The scoring stage: each set's metrics computed on the stream, per item, as predictions arrive."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from rayeval.actors.coordinator import report_placement, report_stage
from rayeval.schema import item_dict, score_column
from rayeval.spec import MetricRef

__all__ = ["ScoringActor"]


class ScoringActor:
    """Ray Data callable class: scores each item with its set's metrics.

    Each row also gets its fingerprints (`item_fp`, `metric_fps`: see rayeval.store.fingerprint), and a
    reused row keeps the scores it carries (`carried`) for the metrics whose configuration held.

    Args:
        task_id: The task.
        metrics_by_set: set name -> the checked metric references of that set.
        outputs: Every metric output of the task (one score column each, null where not applicable).
        model_fps: model name -> its inference fingerprint (GIVEN_PREDICTIONS in Evaluation Only mode).
        set_fps: model name -> set -> its inference fingerprint there, for sets whose own parameters change it.
        metric_fps: set name -> metric name -> the metric's fingerprint.
        given: Evaluation Only mode (the predictions are part of the item).
        epoch: The run (its counts of scored items go to its record only).
    """

    def __init__(
        self,
        task_id: str,
        metrics_by_set: dict[str, list[MetricRef]],
        outputs: list[str],
        model_fps: dict[str, str] | None = None,
        metric_fps: dict[str, dict[str, str]] | None = None,
        given: bool = False,
        epoch: int | None = None,
        likelihood_sets: tuple[str, ...] = (),
        set_fps: dict[str, dict[str, str]] | None = None,
    ):
        from rayeval.metrics import MetricSteps

        self.likelihood_sets = likelihood_sets
        self.task_id, self.epoch = task_id, epoch
        report_placement(task_id, "scoring")
        self.metrics = {s: [MetricSteps.from_ref(ref) for ref in refs] for s, refs in metrics_by_set.items()}
        self.outputs = outputs
        self.model_fps = model_fps or {}
        self.set_fps = set_fps or {}
        self.metric_fps = {s: json.dumps(fps, sort_keys=True) for s, fps in (metric_fps or {}).items()}
        self.given = given
        #: Threads that score several items at once, where a metric runs programs (code_pass): each
        #: waits for its program, and the sandbox bounds how many run (rayeval.metrics.sandbox).
        self._rows: ThreadPoolExecutor | None = None
        if any(steps.metric.runs_programs for steps_ in self.metrics.values() for steps in steps_):
            from rayeval.metrics.sandbox import parallelism

            self._rows = ThreadPoolExecutor(parallelism(), thread_name_prefix="rayeval-item")

    def _score_row(self, row: dict[str, Any]) -> tuple[dict[str, float | None], str | None]:
        values: dict[str, float | None] = {}
        details: dict[str, Any] = {}
        carried = json.loads(row.pop("carried", None) or "{}")
        if row["error"] is None:
            judging = json.loads(row.pop("judging", None) or "{}")
            item = item_dict(row)
            for steps in self.metrics.get(row["eval_set"], []):
                if steps.name in carried:
                    scores_, step_details = carried[steps.name]["scores"], carried[steps.name]["details"]
                else:
                    scores_, step_details = steps.run(item, judging.get(steps.name))
                values.update(scores_)
                if step_details:
                    details[steps.name] = step_details
        return values, json.dumps(details, ensure_ascii=False) if details else None

    def _fingerprints(self, batch: pa.Table) -> tuple[list[str | None], list[str | None]]:
        from rayeval.store.fingerprint import item_fp_column

        models, sets = batch.column("model").to_pylist(), batch.column("eval_set").to_pylist()
        # The fingerprint of each row's answer: its model's, or its model's on that set (own parameters).
        answers = [
            self.set_fps.get(m, {}).get(s) or self.model_fps.get(m) if m in self.model_fps else None
            for m, s in zip(models, sets)
        ]
        item_fps: list[str | None] = [None] * batch.num_rows
        for answer_fp in set(answers) - {None}:
            rows = [i for i, a in enumerate(answers) if a == answer_fp]
            part = batch.take(pa.array(rows)) if len(rows) < batch.num_rows else batch
            fps = item_fp_column(part, answer_fp, given=self.given, likelihood_sets=self.likelihood_sets)
            for i, fp in zip(rows, fps):
                item_fps[i] = fp
        return item_fps, [self.metric_fps.get(s) for s in sets]

    def __call__(self, batch: pa.Table) -> pa.Table:
        columns = ["eval_set", "model", "prediction", "reference", "query", "item_id", "fields", "samples", "error"]
        columns += [c for c in ("loglikelihoods",) if c in batch.schema.names]  # what log-likelihood metrics read
        extra = [c for c in ("judging", "carried") if c in batch.schema.names]
        rows = batch.select(columns + extra).to_pylist()
        if self._rows is not None and len(rows) > 1:  # metrics that wait on programs: items at once
            scored = list(self._rows.map(self._score_row, rows))
        else:
            scored = [self._score_row(row) for row in rows]
        scores = {out: [values.get(out) for values, _ in scored] for out in self.outputs}
        details = [d for _, d in scored]
        item_fps, metric_fps = self._fingerprints(batch)
        for out in self.outputs:
            batch = batch.append_column(pa.field(score_column(out), pa.float64()), pa.array(scores[out], pa.float64()))
        batch = batch.append_column(pa.field("details", pa.string()), pa.array(details, pa.string()))
        batch = batch.append_column(pa.field("item_fp", pa.string()), pa.array(item_fps, pa.string()))
        batch = batch.append_column(pa.field("metric_fps", pa.string()), pa.array(metric_fps, pa.string()))
        if extra:  # each judge step is in `details` now, and what was carried is in the scores
            batch = batch.drop_columns(extra)
        report_stage(self.task_id, "scored", [r["model"] for r in rows], [r["eval_set"] for r in rows], self.epoch)
        return batch
