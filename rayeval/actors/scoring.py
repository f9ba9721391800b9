"""The scoring stage: each set's metrics computed on the stream, per item, as predictions arrive."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pyarrow as pa

from rayeval.schema import item_dict, score_column

__all__ = ["ScoringActor"]

REPORT_EVERY_S = 0.25


class ScoringActor:
    """Ray Data callable class: scores each item with its set's metrics and reports progress.

    Args:
        task_id: The task whose progress is reported to the coordinator.
        metrics_by_set: set name -> list of {"name", "options"} metric references.
        outputs: Every metric output of the task (one score column each, null where not applicable).
    """

    def __init__(self, task_id: str, metrics_by_set: dict[str, list[dict[str, Any]]], outputs: list[str]):
        from rayeval.actors.coordinator import get_coordinator
        from rayeval.metrics import MetricSteps

        self.task_id = task_id
        self.metrics = {s: [MetricSteps.from_ref(ref) for ref in refs] for s, refs in metrics_by_set.items()}
        self.outputs = outputs
        self.coordinator = get_coordinator(create=False)
        self._done: Counter[tuple[str, str]] = Counter()
        self._errors: Counter[tuple[str, str]] = Counter()
        self._last_report = 0.0

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
        self._count(rows)
        return batch

    def _count(self, rows: list[dict[str, Any]]) -> None:
        """Add to the progress counts; send them to the coordinator at most every REPORT_EVERY_S.

        Whatever is still unsent when the stream ends is reconciled from the results store.
        """
        for r in rows:
            key = (r["model"], r["eval_set"])
            self._done[key] += 1
            self._errors[key] += r["error"] is not None
        now = time.monotonic()
        if self.coordinator is None or now - self._last_report < REPORT_EVERY_S:
            return
        report = [(m, s, n, self._errors[(m, s)]) for (m, s), n in self._done.items()]
        self.coordinator.report.remote(self.task_id, report)
        self._done.clear()
        self._errors.clear()
        self._last_report = now
