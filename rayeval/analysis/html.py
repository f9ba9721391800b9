"""The browser report: one self-contained HTML file (no network needed to open it) with the
leaderboard and live weight controls, the scores and their intervals, a chart, the item browser
with its filters and step-by-step view, and the comparison with the reference model."""

from __future__ import annotations

import html
import json
import math
import time
from importlib import resources
from typing import Any

from rayeval.analysis.board import Results, compute_results
from rayeval.analysis.item import item_steps
from rayeval.analysis.load import stored_spec
from rayeval.store.results import ResultsStore

__all__ = ["DEFAULT_ITEMS", "render_report", "report_data"]

#: Items per evaluation set the report holds by default (every model's row of each).
DEFAULT_ITEMS = 200


def _items(
    store: ResultsStore, task_id: str, spec: Any, limit: int
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """set -> the first `limit` items (0: all), each with every model's steps; and set -> items stored."""
    from rayeval.metrics import build_metric

    items: dict[str, dict[str, dict[str, Any]]] = {}
    seen: dict[str, set[str]] = {}
    for s in spec.evaluation_sets:
        outputs = {ref.name: build_metric(ref).outputs() for ref in s.metrics}
        kept = items.setdefault(s.name, {})
        ids = seen.setdefault(s.name, set())
        for model in (m.name for m in spec.models):
            for batch in store.iter_results(task_id, None, partition=(model, s.name)):
                for row in batch.to_pylist():
                    ids.add(row["item_id"])
                    if row["item_id"] not in kept:
                        if limit and len(kept) >= limit:
                            continue
                        kept[row["item_id"]] = {"id": row["item_id"], "models": {}}
                    view = item_steps(spec, row, outputs)
                    kept[row["item_id"]]["models"][model] = {
                        "steps": [{"name": st.name, "value": st.value} for st in view.steps],
                        "scores": view.scores,
                        "error": view.error,
                    }
    return {k: list(v.values()) for k, v in items.items()}, {k: len(v) for k, v in seen.items()}


def report_data(results: Results, store: ResultsStore, *, items: int = DEFAULT_ITEMS) -> dict[str, Any]:
    """Everything the page shows, as JSON-able data."""
    spec = stored_spec(store, results.task_id)
    if spec.is_custom:
        sets, rows, totals = [c.name for c in spec.custom], {}, {}
    else:
        sets = [s.name for s in spec.evaluation_sets]
        rows, totals = _items(store, results.task_id, spec, items)
    return {
        "results": {**results.to_dict(), "replicates": results.replicates},
        "mode": spec.mode,
        "models": [m.name for m in spec.models],
        "sets": sets,
        "items": rows,
        "items_total": totals,
        "part_outputs": results.parts,
        "written": time.strftime("%Y-%m-%d %H:%M"),
    }


def _finite(value: Any) -> Any:
    """NaN and infinities as null (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def render_report(
    task: str,
    *,
    weights: Any = None,
    reference: str | None = None,
    seed: int = 0,
    resamples: int = 1000,
    items: int = DEFAULT_ITEMS,
    output: str | None = None,
    tags: list[str] | None = None,
) -> str:
    """The report of a task as one HTML document (see `compute_results` for the arguments; `items`:
    items per set it holds, 0 for all)."""
    from rayeval.actors.index import find_task

    record = find_task(task, output=output, tags=tags)
    results = compute_results(
        record["task_id"], weights=weights, reference=reference, seed=seed, resamples=resamples,
        output=record["output"], tags=tags,
    )  # fmt: skip
    data = report_data(results, ResultsStore(record["output"]), items=items)
    text = json.dumps(_finite(data), ensure_ascii=False, default=str, allow_nan=False)
    text = text.replace("</", "<\\/")  # nothing in the data can close the script element
    template = resources.files("rayeval.analysis").joinpath("report.html").read_text(encoding="utf-8")
    return template.replace("__TITLE__", html.escape(results.task_id)).replace("__DATA__", text)
