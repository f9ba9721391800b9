"""A task's results as people read them: scores with bootstrap intervals, a weighted comprehensive
score per model and the ranking it gives, token usage and latency, and the comparison with a
reference model. Everything is computed from the stored per-item rows, so new weights or another
reference model need no evaluation again."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rayeval.analysis.bootstrap import bootstrap_set, index_chunks, interval, mean_replicates, sign_test
from rayeval.analysis.load import SetItems, load_items, per_item, stored_spec
from rayeval.errors import SpecError
from rayeval.spec import TaskSpec
from rayeval.spec.weights import Weights, parse_weights
from rayeval.store.results import ResultsStore
from rayeval.store.summary import metric_outputs, summarize

__all__ = ["REPORT_REPLICATES", "Comparison", "Results", "ScoreRow", "Standing", "Usage", "compute_results"]

#: Replicates of each score kept with the results (for intervals under other weights).
REPORT_REPLICATES = 200


@dataclass
class ScoreRow:
    """One model x evaluation set x metric output."""

    model: str
    eval_set: str
    metric: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    items: int
    scored: int
    errors: int
    parse_failures: int = 0
    reused: int = 0
    weight: float = 0.0
    normalised: float | None = None
    #: Pairwise metrics: the reference, wins, losses, ties and inconsistent verdict pairs behind the value.
    pairwise: dict[str, Any] | None = None


@dataclass
class Standing:
    """A model's place on the leaderboard."""

    rank: int
    model: str
    score: float | None
    ci_low: float | None
    ci_high: float | None
    overlaps_next: bool
    components: int


@dataclass
class Usage:
    """What a model's answers cost: tokens and latency over its answered items."""

    model: str
    items: int
    prompt_tokens: int
    completion_tokens: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None


@dataclass
class Comparison:
    """A model against the reference model on one set x metric, item by item."""

    model: str
    reference: str
    eval_set: str
    metric: str
    paired: int
    wins: int
    losses: int
    ties: int
    mean_diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None


@dataclass
class Results:
    """Every view of a task's results (see `compute_results`)."""

    task_id: str
    rows: list[ScoreRow]
    leaderboard: list[Standing]
    usage: list[Usage]
    comparison: list[Comparison]
    weights: Weights
    reference: str | None
    seed: int
    resamples: int
    excluded: list[str] = field(default_factory=list)
    #: "model|set|metric" -> bootstrap replicates of that score (the first REPORT_REPLICATES), for
    #: intervals recomputed under other weights (the browser report).
    replicates: dict[str, list[float]] = field(default_factory=dict, repr=False)
    #: Metric outputs that count 0 unless weighted: parts of a whole (BFCL's categories) and pairwise metrics.
    parts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form of every view."""
        return {
            "task_id": self.task_id,
            "leaderboard": [asdict(s) for s in self.leaderboard],
            "scores": [asdict(r) for r in self.rows],
            "usage": [asdict(u) for u in self.usage],
            "comparison": [asdict(c) for c in self.comparison],
            "reference": self.reference,
            "weights": self.weights.model_dump(mode="json"),
            "seed": self.seed,
            "resamples": self.resamples,
            "excluded": self.excluded,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Results:
        """The results again from `to_dict`'s form (as `rayeval server` sends them)."""
        return cls(
            data["task_id"],
            [ScoreRow(**r) for r in data["scores"]],
            [Standing(**s) for s in data["leaderboard"]],
            [Usage(**u) for u in data["usage"]],
            [Comparison(**c) for c in data["comparison"]],
            Weights.model_validate(data["weights"]),
            data.get("reference"),
            data["seed"],
            data["resamples"],
            data.get("excluded", []),
        )

    def to_csv(self, view: str = "scores") -> str:
        """One view (`scores`, `leaderboard`, `usage` or `comparison`) as CSV."""
        data = self.to_dict()[view]
        if not data:
            return ""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(data[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(data)
        return buf.getvalue()


def compute_results(
    task: str,
    *,
    weights: Any = None,
    reference: str | None = None,
    seed: int = 0,
    resamples: int = 1000,
    output: str | None = None,
    tags: list[str] | None = None,
) -> Results:
    """Every view of a finished (or stopped) task's results.

    Args:
        task: Task id or name.
        weights: Weights on top of the task's own (`weights:` in its spec): a Weights, a dict, a YAML/JSON
            file, or `set=w,metric:NAME=w`.
        reference: The model the others are compared with item by item (default: the task's
            `reference_model`, if any).
        seed: Seed of the bootstrap: the same seed gives the same intervals.
        resamples: Bootstrap resamples (corpus-level scores use at most REPLAY_RESAMPLES).
        output: Also look for the task in this output location.
        tags: The tags you present (default $RAYEVAL_TAGS): a task carrying none of them is not found.

    Raises:
        TaskNotFoundError: no such task. SpecError: bad weights, an unknown reference model.
    """
    from rayeval.actors.index import find_task

    if resamples < 10:
        raise SpecError("resamples: use at least 10 (1000 is the default)", field="resamples")
    record = find_task(task, output=output, tags=tags)
    task_id = record["task_id"]
    store = ResultsStore(record["output"])
    spec = stored_spec(store, task_id)
    extra = parse_weights(weights) if weights is not None else None
    w = spec.weights.merged(extra) if extra is not None else spec.weights
    reference = reference or spec.reference_model
    models = [m.name for m in spec.models]
    if reference is not None and reference not in models:
        raise SpecError(f"reference model '{reference}' is not a model of task {task_id} ({', '.join(models)})")
    summary_rows = store.read_json(task_id, "summary.json")
    if spec.is_custom:
        if extra is not None:
            extra.check_names({c.name for c in spec.custom}, {r["metric"] for r in summary_rows or []}, task_id)
        return _custom_results(task_id, summary_rows or [], models, w, reference, seed, resamples)

    metrics_by_set = {s.name: s.metrics for s in spec.evaluation_sets}
    outputs = metric_outputs(metrics_by_set)
    if extra is not None:
        names = {o for outs in outputs.values() for o, _ in outs} | {
            p.name for s in spec.evaluation_sets for p in s.pairwise
        }
        extra.check_names({s.name for s in spec.evaluation_sets}, names, task_id)
    if summary_rows is None:  # still running, or stopped before its summary: count what is stored
        summary_rows = summarize(store, task_id, metrics_by_set).rows
    sets, usage, reused = load_items(store, task_id, spec, outputs)
    replicates: dict[tuple[str, str, str], np.ndarray] = {}
    diffs: dict[tuple[str, str, str], np.ndarray] = {}
    for eval_set, outs in outputs.items():
        reps = bootstrap_set(eval_set, sets[eval_set], models, outs, reference, seed, resamples)
        for key, r in reps.items():
            if key[0] == "diff":
                diffs[(key[1], eval_set, key[2])] = r
            else:
                replicates[(key[0], eval_set, key[1])] = r
    replicates.update(_pairwise_replicates(store, task_id, spec, seed, resamples))
    # Parts of a whole (BFCL's categories) and pairwise metrics (the reference has none) count 0 unless weighted.
    scoped = {(s, o) for s, outs in outputs.items() for o, m in outs if m.scoped and o != m.name}
    scoped |= {(s.name, p.name) for s in spec.evaluation_sets for p in s.pairwise}
    rows = []
    for r in summary_rows:
        key = (r["model"], r["eval_set"], r["metric"])
        lo, hi = interval(replicates[key]) if key in replicates else (None, None)
        default = 0.0 if (r["eval_set"], r["metric"]) in scoped else 1.0  # a category of a whole: not counted twice
        weight = w.weight(r["eval_set"], r["metric"], default)
        rows.append(
            ScoreRow(
                r["model"], r["eval_set"], r["metric"], r["value"], lo, hi, r["items"], r["scored"], r["errors"],
                r.get("parse_failures", 0), reused.get((r["model"], r["eval_set"]), 0), weight,
                w.normalise(r["metric"], r["value"]), r.get("pairwise"),
            )
        )  # fmt: skip
    leaderboard, excluded = _leaderboard(rows, replicates, w, models)
    comparison = _compare(sets, outputs, models, reference, diffs) if reference else []
    use = [
        Usage(
            m, u["items"], u["prompt_tokens"], u["completion_tokens"],
            float(np.percentile(u["latency"], 50)) if u["latency"] else None,
            float(np.percentile(u["latency"], 95)) if u["latency"] else None,
        )
        for m, u in usage.items()
    ]  # fmt: skip
    kept = {
        f"{m}|{st}|{o}": [None if np.isnan(x) else round(float(x), 6) for x in r[:REPORT_REPLICATES]]
        for (m, st, o), r in replicates.items()
    }
    parts = sorted({o for _, o in scoped})
    return Results(task_id, rows, leaderboard, use, comparison, w, reference, seed, resamples, excluded, kept, parts)


def _pairwise_replicates(
    store: ResultsStore, task_id: str, spec: TaskSpec, seed: int, resamples: int
) -> dict[tuple[str, str, str], np.ndarray]:
    """Bootstrap replicates of the pairwise metrics (win 1, tie 0.5, loss 0 per judged item)."""

    out = {}
    for s in spec.evaluation_sets:
        for p in s.pairwise:
            for model in (m.name for m in spec.models):
                table = store.read_pairwise(task_id, p.name, model, s.name)
                if table is None or not table.num_rows:
                    continue
                values = np.array([np.nan if x is None else x for x in table.column("score").to_pylist()])
                chunks = [mean_replicates(values[:, None], idx)[:, 0] for idx in
                          index_chunks(len(values), resamples, seed, f"{s.name}/{p.name}")]  # fmt: skip
                out[(model, s.name, p.name)] = np.concatenate(chunks)
    return out


def _leaderboard(
    rows: list[ScoreRow], replicates: dict[tuple[str, str, str], np.ndarray], w: Weights, models: list[str]
) -> tuple[list[Standing], list[str]]:
    """Comprehensive score per model (weighted mean of normalised values), its interval, and ranks."""
    excluded = sorted(
        {f"{r.eval_set}/{r.metric}" for r in rows if r.weight > 0 and r.value is not None and r.normalised is None}
    )
    scores: dict[str, tuple[float | None, tuple[float | None, float | None], int]] = {}
    for model in models:
        parts = [r for r in rows if r.model == model and r.weight > 0 and r.normalised is not None]
        if not parts:
            scores[model] = (None, (None, None), 0)
            continue
        total = sum(r.weight for r in parts)
        score = sum(r.weight * r.normalised for r in parts) / total
        arrays = [_normalised_array(w, r.metric, replicates.get((model, r.eval_set, r.metric))) for r in parts]
        lengths = [len(a) for a in arrays if a is not None]
        ci: tuple[float | None, float | None] = (None, None)
        if lengths:  # values without items (custom metrics) count as fixed
            n = min(lengths)
            combined = sum(
                r.weight * (a[:n] if a is not None else np.full(n, r.normalised)) for r, a in zip(parts, arrays)
            )
            ci = interval(combined / total)
        scores[model] = (score, ci, len(parts))
    order = sorted(models, key=lambda m: (scores[m][0] is None, -(scores[m][0] or 0.0), m))
    standings = []
    for k, model in enumerate(order):
        score, (lo, hi), n = scores[model]
        nxt = scores[order[k + 1]] if k + 1 < len(order) else None
        overlaps = bool(
            nxt is not None and None not in (lo, hi, nxt[1][0], nxt[1][1]) and lo <= nxt[1][1] and nxt[1][0] <= hi
        )
        standings.append(Standing(k + 1, model, score, lo, hi, overlaps, n))
    return standings, excluded


def _normalised_array(w: Weights, metric: str, reps: np.ndarray | None) -> np.ndarray | None:
    if reps is None:
        return None
    if metric in w.ranges:
        worst, best = w.ranges[metric]
        return np.clip((reps - worst) / (best - worst), 0.0, 1.0)
    return reps


def _compare(
    sets: dict[str, SetItems],
    outputs: dict[str, list[tuple[str, Any]]],
    models: list[str],
    reference: str,
    diffs: dict[tuple[str, str, str], np.ndarray],
) -> list[Comparison]:
    """Each model against the reference, item by item, on every per-item score."""
    out = []
    for eval_set, outs in outputs.items():
        aligned = sets[eval_set]
        for o, m in outs:
            if not per_item(m, o):
                continue
            ref = aligned.column(reference, o)
            for model in models:
                if model == reference:
                    continue
                d = aligned.column(model, o) - ref
                d = d[~np.isnan(d)]
                wins, losses = int((d > 0).sum()), int((d < 0).sum())
                lo, hi = interval(diffs[(model, eval_set, o)]) if (model, eval_set, o) in diffs else (None, None)
                out.append(
                    Comparison(
                        model, reference, eval_set, o, len(d), wins, losses, len(d) - wins - losses,
                        float(d.mean()) if len(d) else None, lo, hi, sign_test(wins, losses),
                    )
                )  # fmt: skip
    return out


def _custom_results(
    task_id: str,
    summary_rows: list[dict[str, Any]],
    models: list[str],
    w: Weights,
    reference: str | None,
    seed: int,
    resamples: int,
) -> Results:
    """Mode custom: one value per configuration x model x metric, no items to resample."""
    rows = [
        ScoreRow(
            r["model"], r["eval_set"], r["metric"], r["value"], None, None, r["items"], r["scored"], r["errors"],
            0, 1 if r.get("reused_from") else 0, w.weight(r["eval_set"], r["metric"]) if r["value"] is not None else 0,
            w.normalise(r["metric"], r["value"]),
        )
        for r in summary_rows
    ]  # fmt: skip
    leaderboard, excluded = _leaderboard(rows, {}, w, models)
    # What each model's programs asked through the task's gateway: each pair once (its rows are per metric);
    # `items` counts requests here. Pairs whose programs called the model directly (`direct`) say nothing.
    pairs = {(r["model"], r["eval_set"]): r for r in summary_rows if r.get("requests") is not None}
    totals: dict[str, list[int]] = {}
    for (model, _), r in pairs.items():
        t = totals.setdefault(model, [0, 0, 0])
        t[0] += r["requests"]
        t[1] += r.get("prompt_tokens") or 0
        t[2] += r.get("completion_tokens") or 0
    use = [Usage(m, n, p, c, None, None) for m, (n, p, c) in totals.items()]
    return Results(task_id, rows, leaderboard, use, [], w, reference, seed, resamples, excluded)
