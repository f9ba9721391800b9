"""The scoring stage: each set's metrics computed on the stream, per item, as predictions arrive."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from rayeval.schema import item_dict, score_column

__all__ = ["ScoringActor"]


class ScoringActor:
    """Ray Data callable class: scores each item with its set's metrics.

    Args:
        task_id: The task.
        metrics_by_set: set name -> list of {"name", "options"} metric references.
        outputs: Every metric output of the task (one score column each, null where not applicable).
    """

    def __init__(self, task_id: str, metrics_by_set: dict[str, list[dict[str, Any]]], outputs: list[str]):
        from rayeval.metrics import MetricSteps

        self.task_id = task_id
        self.metrics = {s: [MetricSteps.from_ref(ref) for ref in refs] for s, refs in metrics_by_set.items()}
        self.outputs = outputs

    def _score_row(self, row: dict[str, Any], scores: dict[str, list[Any]]) -> str | None:
        values: dict[str, float | None] = {}
        details: dict[str, Any] = {}
        if row["error"] is None:
            judging = json.loads(row.pop("judging", None) or "{}")
            item = item_dict(row)
            for steps in self.metrics.get(row["eval_set"], []):
                scores_, step_details = steps.run(item, judging.get(steps.name))
                values.update(scores_)
                if step_details:
                    details[steps.name] = step_details
        for out in self.outputs:
            scores[out].append(values.get(out))
        return json.dumps(details, ensure_ascii=False) if details else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        columns = ["eval_set", "model", "prediction", "reference", "query", "item_id", "fields", "samples", "error"]
        rows = batch.select(columns + (["judging"] if "judging" in batch.schema.names else [])).to_pylist()
        scores: dict[str, list[Any]] = {out: [] for out in self.outputs}
        details = [self._score_row(row, scores) for row in rows]
        for out in self.outputs:
            batch = batch.append_column(pa.field(score_column(out), pa.float64()), pa.array(scores[out], pa.float64()))
        batch = batch.append_column(pa.field("details", pa.string()), pa.array(details, pa.string()))
        if "judging" in batch.schema.names:  # each judge step is in `details` now
            batch = batch.drop_columns(["judging"])
        return batch
