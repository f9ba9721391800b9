"""One item, step by step: what was asked, what was sent, what came back, and what every metric did
with it (preprocessing, judge prompt, raw judge answer, parsed score, postprocessing, errors)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as pads

from rayeval.errors import RayevalError
from rayeval.inference.client import item_system, prompt_fields
from rayeval.schema import score_column
from rayeval.spec import TaskSpec
from rayeval.store.results import ResultsStore

__all__ = ["ItemView", "Step", "format_item", "item_steps", "read_item_rows"]

#: The step of a metric's details, in the order they happen, with their labels.
_METRIC_STEPS = [
    ("preprocessed", "preprocessing output"),
    ("prompt", "judge prompt"),
    ("output", "raw judge answer"),
    ("parsed", "parsed score"),
    ("scored", "score before postprocessing"),
    ("postprocessed", "postprocessing output"),
    ("parse_failure", "parse failure"),
    ("error", "error"),
    ("attempts", "judge attempts"),
    ("latency_ms", "judge latency (ms)"),
]


@dataclass
class Step:
    """One step of an item's evaluation."""

    name: str
    value: Any


@dataclass
class ItemView:
    """One model's evaluation of one item."""

    task_id: str
    eval_set: str
    item_id: str
    model: str
    steps: list[Step]
    scores: dict[str, float | None]
    error: str | None
    reference: ItemView | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ItemView:
        """The view again from `to_dict`'s form (as `rayeval server` sends it)."""
        ref = data.get("reference")
        return cls(
            **{k: v for k, v in data.items() if k not in ("steps", "reference")},
            steps=[Step(**s) for s in data["steps"]],
            reference=cls.from_dict(ref) if ref else None,
        )


def _api(model: Any) -> str:
    if model.api:
        return model.api
    url = (model.url or "").rstrip("/")
    return "completions" if url.endswith("/completions") and not url.endswith("/chat/completions") else "chat"


def item_steps(spec: TaskSpec, row: dict[str, Any], outputs: dict[str, list[str]]) -> ItemView:
    """The steps of one stored row (`outputs`: metric name -> its output names, in the set's order)."""
    model = next((m for m in spec.models if m.name == row["model"]), None)
    steps = [Step("query", row.get("query"))]
    evaluation_set = next((s for s in spec.evaluation_sets if s.name == row["eval_set"]), None)
    if row.get("loglikelihoods"):  # each choice read as a continuation of the query (no prompt of its own)
        scored = json.loads(row["loglikelihoods"])
        steps.append(Step("choices (log-likelihood of each as a continuation of the query)", scored))
    elif spec.runs_inference and model is not None:
        system = item_system(row.get("fields"), evaluation_set.system_column if evaluation_set else None)
        params = spec.set_parameters(model, evaluation_set) if evaluation_set else spec.model_parameters(model)
        steps.append(Step("prompt sent", prompt_fields(_api(model), row.get("query") or "", params, system)))
    else:
        steps.append(Step("prompt sent", "none: the prediction was given in the evaluation set (Evaluation Only)"))
    steps.append(Step("response", row.get("prediction")))
    if row.get("samples"):
        steps.append(Step("samples", list(row["samples"])))
    inference = {
        k: row.get(k)
        for k in ("attempts", "latency_ms", "prompt_tokens", "completion_tokens", "finish_reason", "reused_from")
        if row.get(k) is not None
    }
    if inference:
        steps.append(Step("inference", inference))
    if row.get("error"):
        steps.append(Step("inference error", row["error"]))
    details = json.loads(row["details"]) if row.get("details") else {}
    scores: dict[str, float | None] = {}
    for metric, outs in outputs.items():
        d = details.get(metric) or {}
        for key, label in _METRIC_STEPS:
            if key in d:
                steps.append(Step(f"{metric}: {label}", d[key]))
        rest = {k: v for k, v in d.items() if k not in dict(_METRIC_STEPS)}
        if rest:
            steps.append(Step(f"{metric}: details", rest))
        for o in outs:
            scores[o] = row.get(score_column(o))
            steps.append(Step(f"{metric}: score {o}", scores[o]))
    return ItemView("", row["eval_set"], row["item_id"], row["model"], steps, scores, row.get("error"))


def read_item_rows(store: ResultsStore, task_id: str, item_id: str, eval_set: str | None = None) -> list[dict]:
    """Every stored row of one item (one per model), read with a filter on the Parquet files."""
    if not store.has_results(task_id):
        return []
    condition = pc.field("item_id") == item_id
    if eval_set is not None:
        condition = condition & (pc.field("eval_set") == eval_set)
    dataset: pads.Dataset = store.results_dataset(task_id)
    return dataset.to_table(filter=condition).to_pylist()


def item_view(
    task: str,
    item_id: str,
    *,
    model: str | None = None,
    eval_set: str | None = None,
    reference: str | None = None,
    output: str | None = None,
    tags: list[str] | None = None,
) -> list[ItemView]:
    """One item's steps for each model (or `model`), each with the reference model's (`reference`,
    default the task's `reference_model`) response and scores beside it. `tags`: the tags you present
    (default $RAYEVAL_TAGS).

    Raises:
        TaskNotFoundError: no such task. RayevalError: no such item (or model) in its results.
    """
    from rayeval.actors.index import find_task
    from rayeval.analysis.load import stored_spec
    from rayeval.metrics import build_metric

    record = find_task(task, output=output, tags=tags)
    task_id = record["task_id"]
    store = ResultsStore(record["output"])
    spec = stored_spec(store, task_id)
    rows = read_item_rows(store, task_id, item_id, eval_set)
    if not rows:
        raise RayevalError(f"task {task_id} has no item '{item_id}'" + (f" in set '{eval_set}'" if eval_set else ""))
    sets = sorted({r["eval_set"] for r in rows})
    if len(sets) > 1:
        raise RayevalError(f"item '{item_id}' is in several sets ({', '.join(sets)}); choose one with --set")
    refs = next(s for s in spec.evaluation_sets if s.name == sets[0]).metrics
    outputs = {ref.name: build_metric(ref).outputs() for ref in refs}
    reference = reference or spec.reference_model
    views = {r["model"]: item_steps(spec, r, outputs) for r in rows}
    for v in views.values():
        v.task_id = task_id
        v.steps += _pairwise_steps(store, task_id, spec, v)
    if model is not None and model not in views:
        raise RayevalError(f"model '{model}' has no row for item '{item_id}' (models: {', '.join(sorted(views))})")
    chosen = (
        [views[model]] if model else [v for name, v in sorted(views.items()) if name != reference or len(views) == 1]
    )
    if reference in views:
        for v in chosen:
            if v.model != reference:
                v.reference = views[reference]
    return chosen


def _pairwise_steps(store: ResultsStore, task_id: str, spec: TaskSpec, view: ItemView) -> list[Step]:
    """The pairwise metrics' two asks and their outcome for this item (pairwise judging runs after scoring)."""

    evaluation_set = next((s for s in spec.evaluation_sets if s.name == view.eval_set), None)
    steps: list[Step] = []
    for p in evaluation_set.pairwise if evaluation_set is not None else []:
        table = store.read_pairwise(task_id, p.name, view.model, view.eval_set)
        if table is None:
            continue
        row = next((r for r in table.to_pylist() if r["item_id"] == view.item_id), None)
        if row is None:
            continue
        ref = spec.reference_model
        if row["first"]:
            steps.append(Step(f"{p.name}: first ask (A = {view.model})", json.loads(row["first"])))
        if row["second"]:
            steps.append(Step(f"{p.name}: second ask (A = {ref})", json.loads(row["second"])))
        steps.append(
            Step(
                f"{p.name}: outcome",
                {"outcome": row["outcome"], "inconsistent": row["inconsistent"], "score": row["score"]},
            )
        )
        if row["error"]:
            steps.append(Step(f"{p.name}: error", row["error"]))
        view.scores[p.name] = row["score"]
    return steps


def format_item(views: list[ItemView]) -> str:
    """The steps as text, the reference model's response and scores after each model's."""

    def show(value: Any) -> str:
        text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)
        return "\n".join("    " + line for line in str(text).splitlines()) or "    (empty)"

    out = []
    for v in views:
        out.append(f"== {v.eval_set} / {v.item_id} / model {v.model}")
        for i, step in enumerate(v.steps, 1):
            out.append(f"{i:>2}. {step.name}\n{show(step.value)}")
        if v.reference is not None:
            r = v.reference
            out.append(f"-- reference model {r.model}")
            out.append(f"    response\n{show(next((s.value for s in r.steps if s.name == 'response'), None))}")
            out.append(f"    scores\n{show(r.scores)}")
        out.append("")
    return "\n".join(out).rstrip()
