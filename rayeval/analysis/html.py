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

__all__ = ["DEFAULT_ITEMS", "MAX_ERROR_ITEMS", "finite", "render_report", "report_data"]

#: Items per evaluation set the report holds by default (every model's row of each).
DEFAULT_ITEMS = 200


#: Most items with an error a report holds per set (beyond its sample): enough for any run worth reading.
MAX_ERROR_ITEMS = 5000


def _chosen(
    store: ResultsStore, task_id: str, spec: Any, s: Any, outputs: dict[str, list[str]], limit: int
) -> tuple[set[str] | None, int, int]:
    """The ids of set `s` the report holds: the first `limit`, every item with an error for any model (up to
    MAX_ERROR_ITEMS), and the `limit` lowest-scoring items of each model and output (so that the page's
    'errors only' and 'lowest scores' filters see every item of the set, not only the sample); with the
    items stored and the errors left out past the cap. None: every item (`limit` 0)."""
    import heapq

    if not limit:
        return None, 0, 0
    first: set[str] = set()
    errors: set[str] = set()
    left_out = 0  # errors past MAX_ERROR_ITEMS (counted once per model that failed them)
    lowest: dict[tuple[str, str], list[tuple[float, str]]] = {}  # a max-heap of the lowest, by -score
    stored = 0  # items stored: a model's rows (each item is stored once per model)
    scores = [f"score__{o}" for outs in outputs.values() for o in outs]
    for model in (m.name for m in spec.models):
        rows = 0
        for batch in store.iter_results(task_id, ["item_id", "error", *scores], partition=(model, s.name)):
            names = set(batch.schema.names)
            ids, failed = batch.column("item_id").to_pylist(), batch.column("error").to_pylist()
            data = {c: batch.column(c).to_pylist() for c in scores if c in names}
            rows += len(ids)
            for i, item_id in enumerate(ids):
                if len(first) < limit:
                    first.add(item_id)
                if failed[i] is not None and item_id not in errors:
                    if len(errors) < MAX_ERROR_ITEMS:
                        errors.add(item_id)
                    else:
                        left_out += 1
                for c, values in data.items():
                    if values[i] is not None:
                        heap = lowest.setdefault((model, c), [])
                        entry = (-float(values[i]), item_id)
                        if len(heap) < limit:
                            heapq.heappush(heap, entry)
                        elif entry > heap[0]:
                            heapq.heapreplace(heap, entry)
        stored = max(stored, rows)
    kept = first | errors | {i for heap in lowest.values() for _, i in heap}
    return kept, stored, left_out


def _items(
    store: ResultsStore, task_id: str, spec: Any, limit: int
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int], dict[str, int]]:
    """set -> the items the report holds (`_chosen`), each with its query and every model's steps; set ->
    items stored; set -> items with errors left out (past MAX_ERROR_ITEMS)."""
    from rayeval.metrics import build_metric

    items: dict[str, dict[str, dict[str, Any]]] = {}
    totals: dict[str, int] = {}
    left_out: dict[str, int] = {}
    for s in spec.evaluation_sets:
        outputs = {ref.name: build_metric(ref).outputs() for ref in s.metrics}
        chosen, totals[s.name], left_out[s.name] = _chosen(store, task_id, spec, s, outputs, limit)
        kept = items.setdefault(s.name, {})
        ids: set[str] = set()
        for model in (m.name for m in spec.models):
            for batch in store.iter_results(task_id, None, partition=(model, s.name)):
                for row in batch.to_pylist():
                    ids.add(row["item_id"])
                    if chosen is not None and row["item_id"] not in chosen:
                        continue
                    new = {"id": row["item_id"], "query": row.get("query"), "models": {}}
                    entry = kept.setdefault(row["item_id"], new)
                    view = item_steps(spec, row, outputs)
                    entry["models"][model] = {
                        "steps": [{"name": st.name, "value": st.value} for st in view.steps],
                        "scores": view.scores,
                        "error": view.error,
                    }
        if chosen is None:
            totals[s.name] = len(ids)
    return {k: list(v.values()) for k, v in items.items()}, totals, left_out


def report_data(results: Results, store: ResultsStore, *, items: int = DEFAULT_ITEMS) -> dict[str, Any]:
    """Everything the page shows, as JSON-able data."""
    spec = stored_spec(store, results.task_id)
    if spec.is_custom:
        sets, rows, totals, left_out = [c.name for c in spec.custom], {}, {}, {}
    else:
        sets = [s.name for s in spec.evaluation_sets]
        rows, totals, left_out = _items(store, results.task_id, spec, items)
    return {
        "results": {**results.to_dict(), "replicates": results.replicates},
        "mode": spec.mode,
        "models": [m.name for m in spec.models],
        "sets": sets,
        "items": rows,
        "items_total": totals,
        "items_sample": items,
        "errors_left_out": left_out,
        "part_outputs": results.parts,
        "written": time.strftime("%Y-%m-%d %H:%M"),
    }


def finite(value: Any) -> Any:
    """`value` with NaN and infinities as None, at any depth (JSON has neither): the report's data and
    what `rayeval server` answers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
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
    text = json.dumps(finite(data), ensure_ascii=False, default=str, allow_nan=False)
    text = text.replace("</", "<\\/")  # nothing in the data can close the script element
    template = resources.files("rayeval.analysis").joinpath("report.html").read_text(encoding="utf-8")
    return template.replace("__TITLE__", html.escape(results.task_id)).replace("__DATA__", text)
