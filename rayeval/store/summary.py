"""Summaries of stored results: per model x evaluation set x metric, streamed from Parquet."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from typing import Any, NamedTuple

from rayeval.schema import score_column
from rayeval.spec import TaskSpec
from rayeval.store.failures import failed_items
from rayeval.store.results import ResultsStore

__all__ = ["Summary", "error_kind", "metric_outputs", "pairwise_rows", "summarize"]


def metric_outputs(metrics_by_set: dict[str, list[dict[str, Any]]]) -> dict[str, list[tuple[str, Any]]]:
    """set -> [(output name, metric object)] for every metric of every set."""
    from rayeval.metrics import ref_outputs

    return {s: [out for ref in refs for out in ref_outputs(ref)] for s, refs in metrics_by_set.items()}


class Summary(NamedTuple):
    """What one scan of a task's results gives.

    Attributes:
        rows: {model, eval_set, metric, value, items, scored, errors, parse_failures} per model x set x
            metric (parse failures are judge answers that gave no score: part of `errors`, shown apart).
        counts: (model, eval_set) -> {"done", "errors", "reused"} as found in the store.
        error_kinds: Item errors by kind (first line, numbers other than HTTP statuses as N).
        retries: Requests sent beyond the first, over every item.
        reused_from: Earlier task id -> items of this task's results taken from it.
    """

    rows: list[dict[str, Any]]
    counts: dict[tuple[str, str], dict[str, int]]
    error_kinds: Counter[str]
    retries: int
    reused_from: Counter[str]


def error_kind(error: str) -> str:
    """An item error's kind: its first line, numbers (other than HTTP statuses) as N, at most 100 characters."""
    return re.sub(r"(?<!HTTP )\b\d+\b", "N", error.split("\n")[0])[:100]


def summarize(store: ResultsStore, task_id: str, metrics_by_set: dict[str, list[dict[str, Any]]]) -> Summary:
    """Aggregate a task's stored results without loading them whole (one pass over the files)."""
    from rayeval.metrics import corpus_inputs

    outputs = metric_outputs(metrics_by_set)
    aggregators: dict[tuple[str, str, str], Any] = {}
    parse_failures: dict[tuple[str, str, str], int] = defaultdict(int)
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"done": 0, "errors": 0, "reused": 0})
    reused_from: Counter[str] = Counter()
    all_outputs = sorted({o for outs in outputs.values() for o, _ in outs})
    error_kinds: Counter[str] = Counter()
    retries = 0
    # Outputs over part of a set (Metric.applies) count their own items, found by item id.
    scoped = {(s, o) for s, outs in outputs.items() for o, m in outs if m.scoped}
    applicable: dict[tuple[str, str, str], int] = defaultdict(int)
    columns = ["model", "eval_set", "error", "attempts", "details", "reused_from"] + (["item_id"] if scoped else [])
    columns += [score_column(o) for o in all_outputs]
    for batch in store.iter_results(task_id, columns):
        names = batch.schema.names
        model_col = batch.column(names.index("model")).to_pylist()
        set_col = batch.column(names.index("eval_set")).to_pylist()
        err_col = failed_items(batch)  # the row's error, or a failed metric step (rayeval.store.failures)
        error_kinds.update(error_kind(e) for e in batch.column(names.index("error")).drop_null().to_pylist())
        if "attempts" in names:
            attempts = [a for a in batch.column(names.index("attempts")).to_pylist() if a]
            retries += sum(attempts) - len(attempts)
        reused_col = (
            batch.column(names.index("reused_from")).to_pylist() if "reused_from" in names else [None] * batch.num_rows
        )
        reused_from.update(r for r in reused_col if r)
        details_col = (
            batch.column(names.index("details")).to_pylist() if "details" in names else [None] * len(model_col)
        )
        score_cols = {
            o: batch.column(names.index(score_column(o))).to_pylist() for o in all_outputs if score_column(o) in names
        }
        id_col = batch.column(names.index("item_id")).to_pylist() if scoped else None
        for i, (model, eval_set) in enumerate(zip(model_col, set_col)):
            c = counts[(model, eval_set)]
            c["done"] += 1
            c["errors"] += int(err_col[i])
            c["reused"] += reused_col[i] is not None
            details = json.loads(details_col[i]) if details_col[i] else {}
            for output, metric in outputs.get(eval_set, []):
                key = (model, eval_set, output)
                if id_col is not None and (eval_set, output) in scoped:
                    if not metric.applies(output, id_col[i]):
                        continue
                    applicable[key] += 1
                if key not in aggregators:
                    aggregators[key] = metric.aggregator(output)
                score = score_cols.get(output, [None] * len(model_col))[i]
                for value, d in corpus_inputs(aggregators[key], output, score, details.get(metric.name)):
                    aggregators[key].add(value, d)
                if isinstance(details.get(metric.name), dict) and "parse_failure" in details[metric.name]:
                    parse_failures[key] += 1
    rows = []
    for (model, eval_set), c in sorted(counts.items()):
        for output, _ in outputs.get(eval_set, []):
            agg = aggregators.get((model, eval_set, output))
            scored = agg.count if agg else 0
            part = (eval_set, output) in scoped
            items = applicable.get((model, eval_set, output), 0) if part else c["done"]
            if part and not items:  # a part of the set this run has no items of
                continue
            rows.append(
                {
                    "model": model,
                    "eval_set": eval_set,
                    "metric": output,
                    "value": agg.value() if agg else None,
                    "items": items,
                    "scored": scored,
                    "errors": items - scored,
                    "parse_failures": parse_failures.get((model, eval_set, output), 0),
                }
            )
    return Summary(rows, dict(counts), error_kinds, retries, reused_from)


def pairwise_rows(store: ResultsStore, task_id: str, spec: TaskSpec) -> list[dict[str, Any]]:
    """Summary rows of the pairwise metrics: value (mean of win 1, tie 0.5, loss 0), items, scored,
    errors, and the wins, losses, ties and inconsistent verdict pairs behind it."""
    rows = []
    for s in spec.evaluation_sets:
        for p in s.pairwise:
            for model in (m.name for m in spec.models if m.name != spec.reference_model):
                table = store.read_pairwise(task_id, p.name, model, s.name)
                if table is None:
                    continue
                outcomes = table.column("outcome").to_pylist()
                scores = [x for x in table.column("score").to_pylist() if x is not None]
                rows.append(
                    {
                        "model": model,
                        "eval_set": s.name,
                        "metric": p.name,
                        "value": sum(scores) / len(scores) if scores else None,
                        "items": table.num_rows,
                        "scored": len(scores),
                        "errors": table.num_rows - len(scores),
                        "parse_failures": 0,
                        "pairwise": {
                            "reference": spec.reference_model,
                            "wins": outcomes.count("win"),
                            "losses": outcomes.count("loss"),
                            "ties": outcomes.count("tie"),
                            "inconsistent": sum(table.column("inconsistent").to_pylist()),
                        },
                    }
                )
    return rows
