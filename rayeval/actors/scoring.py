"""The scoring stage: rule metrics computed on the stream, per item, as predictions arrive."""

from __future__ import annotations

import json
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from rayeval.schema import score_column

__all__ = ["ScoringActor"]

REPORT_EVERY_S = 0.25


@dataclass
class _Steps:
    """One metric's steps on an item: optional preprocessing -> rule scoring -> optional postprocessing."""

    name: str
    metric: Any
    preprocess: Callable[..., Any] | None = None
    postprocess: Callable[..., Any] | None = None
    parser: Any = None  # a JudgeParser for judge metrics

    def run(self, row: dict[str, Any]) -> tuple[dict[str, float | None], dict[str, Any]]:
        """(scores by output, details of each step); a failing step nulls this metric's scores for the item."""
        from rayeval.metrics import run_script

        if self.parser is not None:
            return self._judged(row)
        nothing = dict.fromkeys(self.metric.outputs())
        details: dict[str, Any] = {}
        item = row
        if self.preprocess is not None:
            pre = run_script(self.preprocess, "preprocess", dict(row))
            if pre.error:
                return nothing, {"error": pre.error}
            item = pre.value
            details["preprocessed"] = {k: v for k, v in item.items() if row.get(k) != v}
        try:
            result = self.metric.score(item.get("prediction") or "", item.get("reference") or "", item)
        except Exception as e:  # a metric failing on one item must not stop the rest
            tb = traceback.extract_tb(e.__traceback__)[-1]
            return nothing, {**details, "error": f"{type(e).__name__}: {e} ({tb.filename}:{tb.lineno})"}
        scores = dict(result.scores)
        details.update(result.details or {})
        if self.postprocess is not None:
            (output,) = self.metric.outputs()
            details["scored"] = scores[output]
            scores[output], error = self._postprocessed(_as_text(scores[output]), item, details)
            if error:
                return nothing, {**details, "error": error}
        return scores, details

    def _judged(self, row: dict[str, Any]) -> tuple[dict[str, float | None], dict[str, Any]]:
        """A judge metric: the judging actor's stored answer, parsed, then postprocessed."""
        nothing = {self.name: None}
        step = dict(json.loads(row.get("judging") or "{}").get(self.name) or {"error": "the judge was not asked"})
        if step.get("error"):
            return nothing, step
        parsed = self.parser.parse(step.get("output"))
        if not parsed.ok:  # counted apart from the score: never a silent 0
            return nothing, {**step, "parse_failure": parsed.failure}
        step["parsed"] = score = parsed.score
        if self.postprocess is not None:
            item = {**row, **step.get("preprocessed", {})}
            score, error = self._postprocessed(step.get("output") or "", item, step)
            if error:
                return nothing, {**step, "error": error}
        return {self.name: score}, step

    def _postprocessed(self, text: str, item: dict[str, Any], details: dict[str, Any]) -> tuple[float | None, str]:
        """(score, error) from the postprocessing script; what it returned goes into `details`."""
        from rayeval.metrics import run_script

        post = run_script(self.postprocess, "postprocess", text, item)
        if post.error:
            return None, post.error
        details["postprocessed"] = post.value
        value = post.value.get("score") if isinstance(post.value, dict) else post.value
        return (None if value is None else float(value)), ""


def _as_text(score: float | None) -> str:
    return "" if score is None else f"{score:g}"


class ScoringActor:
    """Ray Data callable class: scores each item with its set's metrics and reports progress.

    Args:
        task_id: The task whose progress is reported to the coordinator.
        metrics_by_set: set name -> list of {"name", "options"} metric references.
        outputs: Every metric output of the task (one score column each, null where not applicable).
    """

    def __init__(self, task_id: str, metrics_by_set: dict[str, list[dict[str, Any]]], outputs: list[str]):
        from rayeval.actors.coordinator import get_coordinator
        from rayeval.metrics import JudgeParser, build_metric, compile_script

        def script(ref: dict[str, Any], kind: str) -> Any:
            source = ref.get(f"{kind}_source")
            return None if source is None else compile_script(source, ref[kind], kind)

        self.task_id = task_id
        self.metrics = {
            s: [
                _Steps(
                    ref["name"],
                    build_metric(ref),
                    None if ref.get("judge") else script(ref, "preprocess"),  # judges: done before asking
                    script(ref, "postprocess"),
                    JudgeParser.model_validate(ref["judge"]["parser"]) if ref.get("judge") else None,
                )
                for ref in refs
            ]
            for s, refs in metrics_by_set.items()
        }
        self.outputs = outputs
        self.coordinator = get_coordinator(create=False)
        self._done: Counter[tuple[str, str]] = Counter()
        self._errors: Counter[tuple[str, str]] = Counter()
        self._last_report = 0.0

    def _score_row(self, row: dict[str, Any], scores: dict[str, list[Any]]) -> str | None:
        values: dict[str, float | None] = {}
        details: dict[str, Any] = {}
        if row["error"] is None:
            for steps in self.metrics.get(row["eval_set"], []):
                scores_, step_details = steps.run(row)
                values.update(scores_)
                if step_details:
                    details[steps.name] = step_details
        for out in self.outputs:
            scores[out].append(values.get(out))
        return json.dumps(details, ensure_ascii=False) if details else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        columns = ["eval_set", "model", "prediction", "reference", "query", "item_id", "error"]
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
