"""Reading a task's stored results for analysis: its spec as stored, and every set's per-item scores
aligned across models, with usage and reuse counts."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import numpy as np

from rayeval.errors import SpecError
from rayeval.metrics import MeanAggregator
from rayeval.schema import score_column
from rayeval.spec import TaskSpec, parse_task
from rayeval.store.results import ResultsStore, spec_part

__all__ = ["SetItems", "load_items", "per_item", "stored_spec"]


def per_item(metric: Any, output: str) -> bool:
    """The output's value is the mean of its items' scores (else a corpus-level score, recomputed)."""
    return isinstance(metric.aggregator(output), MeanAggregator)


def stored_spec(store: ResultsStore, task_id: str) -> TaskSpec:
    """The spec a task ran with, as stored beside its results (literal credentials redacted)."""
    data = store.read_json(task_id, "spec.json")
    if data is None:
        raise SpecError(f"task {task_id} has no stored spec", field="task")
    return parse_task(spec_part(data), source=f"{task_id}/spec.json")


class SetItems:
    """One evaluation set's items, aligned across models: per-item scores (NaN: not scored)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.scores: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
        self.details: dict[tuple[str, str], dict[int, Any]] = defaultdict(dict)

    def index(self, item_id: str) -> int:
        return self.ids.setdefault(item_id, len(self.ids))

    def column(self, model: str, output: str) -> np.ndarray:
        values = np.full(len(self.ids), np.nan)
        for i, v in self.scores[(model, output)].items():
            values[i] = v
        return values


def load_items(
    store: ResultsStore, task_id: str, spec: TaskSpec, outputs: dict[str, list[tuple[str, Any]]]
) -> tuple[dict[str, SetItems], dict[str, dict[str, Any]], dict[tuple[str, str], int]]:
    """Per-set aligned scores, per-model usage, and reused items per (model, set)."""
    sets: dict[str, SetItems] = {}
    usage: dict[str, dict[str, Any]] = {}
    reused: dict[tuple[str, str], int] = defaultdict(int)
    for model in (m.name for m in spec.models):
        u = usage.setdefault(model, {"items": 0, "prompt_tokens": 0, "completion_tokens": 0, "latency": []})
        for eval_set, outs in outputs.items():
            aligned = sets.setdefault(eval_set, SetItems())
            replayed = {o for o, m in outs if not per_item(m, o)}
            metric_of = {o: m for o, m in outs}
            columns = ["item_id", "error", "prompt_tokens", "completion_tokens", "latency_ms", "reused_from"]
            columns += [score_column(o) for o, _ in outs] + (["details"] if replayed else [])
            for batch in store.iter_results(task_id, columns, partition=(model, eval_set)):
                data = {name: batch.column(i).to_pylist() for i, name in enumerate(batch.schema.names)}
                details = data.get("details")
                score_cols = {o: data.get(score_column(o)) for o, _ in outs}
                for r, item_id in enumerate(data["item_id"]):
                    i = aligned.index(item_id)
                    reused[(model, eval_set)] += data["reused_from"][r] is not None
                    if data["error"][r] is None:
                        u["items"] += 1
                        u["prompt_tokens"] += data["prompt_tokens"][r] or 0
                        u["completion_tokens"] += data["completion_tokens"][r] or 0
                        if data["latency_ms"][r] is not None:
                            u["latency"].append(data["latency_ms"][r])
                    parsed = json.loads(details[r]) if details and details[r] else {}
                    for o, _ in outs:
                        value = score_cols[o][r] if score_cols[o] is not None else None
                        if value is not None:
                            aligned.scores[(model, o)][i] = float(value)
                        if o in replayed:
                            aligned.details[(model, o)][i] = (value, parsed.get(metric_of[o].name))
    return sets, usage, reused
