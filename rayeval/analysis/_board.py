"""A task's results as people read them: scores with bootstrap intervals, a weighted comprehensive
score per model and the ranking it gives, token usage and latency, and the comparison with a
reference model. Everything is computed from the stored per-item rows, so new weights or another
reference model need no evaluation again."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rayeval.analysis._stats import index_chunks, interval, mean_replicates, sign_test
from rayeval.errors import SpecError
from rayeval.metrics import MeanAggregator
from rayeval.report import metric_outputs, summarize
from rayeval.schema import score_column
from rayeval.spec import TaskSpec, parse_task
from rayeval.store import ResultsStore
from rayeval.weights import Weights, parse_weights

__all__ = ["Comparison", "Results", "ScoreRow", "Standing", "Usage", "compute_results", "format_results"]

#: Replicates of a corpus-level score (recomputed from its items' statistics, so fewer), at most.
REPLAY_RESAMPLES = 200
#: Items x replicates replayed for a corpus-level score, at most.
REPLAY_BUDGET = 2_000_000
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


# ----------------------------------------------------------------------------- loading


def _per_item(metric: Any, output: str) -> bool:
    """The output's value is the mean of its items' scores (else a corpus-level score, recomputed)."""
    return isinstance(metric.aggregator(output), MeanAggregator)


def _stored_spec(store: ResultsStore, task_id: str) -> TaskSpec:
    data = store.read_json(task_id, "spec.json")
    if data is None:
        raise SpecError(f"task {task_id} has no stored spec", field="task")
    return parse_task(data, source=f"{task_id}/spec.json")


class _SetItems:
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


def _load(
    store: ResultsStore, task_id: str, spec: TaskSpec, outputs: dict[str, list[tuple[str, Any]]]
) -> tuple[dict[str, _SetItems], dict[str, dict[str, Any]], dict[tuple[str, str], int]]:
    """Per-set aligned scores, per-model usage, and reused items per (model, set)."""
    sets: dict[str, _SetItems] = {}
    usage: dict[str, dict[str, Any]] = {}
    reused: dict[tuple[str, str], int] = defaultdict(int)
    for model in (m.name for m in spec.models):
        u = usage.setdefault(model, {"items": 0, "prompt_tokens": 0, "completion_tokens": 0, "latency": []})
        for eval_set, outs in outputs.items():
            aligned = sets.setdefault(eval_set, _SetItems())
            replayed = {o for o, m in outs if not _per_item(m, o)}
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


# ----------------------------------------------------------------------------- bootstrap


def _replay(metric: Any, output: str, items: dict[int, Any], idx: np.ndarray) -> np.ndarray:
    """A corpus-level score recomputed on each resample (its aggregator fed the resampled items)."""
    from rayeval.metrics import corpus_inputs

    out = np.full(len(idx), np.nan)
    for b, rows in enumerate(idx):
        agg = metric.aggregator(output)
        for i in rows:
            entry = items.get(int(i))
            if entry is not None:
                for value, d in corpus_inputs(agg, output, entry[0], entry[1]):
                    agg.add(value, d)
        v = agg.value()
        out[b] = np.nan if v is None else v
    return out


def _bootstrap_set(
    eval_set: str,
    aligned: _SetItems,
    models: list[str],
    outs: list[tuple[str, Any]],
    reference: str | None,
    seed: int,
    resamples: int,
) -> dict[tuple[str, ...], np.ndarray]:
    """Replicates of every (model, output) score of one set, and of every (model, output) mean
    difference against the reference: keys (model, output) and ("diff", model, output)."""
    n = len(aligned.ids)
    if n == 0:
        return {}
    mean_outs = [o for o, m in outs if _per_item(m, o)]
    keys: list[tuple[str, ...]] = [(m, o) for m in models for o in mean_outs]
    cols = [aligned.column(m, o) for m, o in keys]
    if reference is not None:
        for m in models:
            if m == reference:
                continue
            for o in mean_outs:
                keys.append(("diff", m, o))
                cols.append(aligned.column(m, o) - aligned.column(reference, o))  # NaN unless both scored
    matrix = np.column_stack(cols) if cols else np.empty((n, 0))
    reps: dict[tuple[str, ...], list[np.ndarray]] = defaultdict(list)
    replay = [(m, o, metric) for m in models for o, metric in outs if o not in mean_outs]
    replay_budget = min(resamples, REPLAY_RESAMPLES, max(20, REPLAY_BUDGET // n))
    done = 0
    for idx in index_chunks(n, resamples, seed, eval_set, columns=max(1, matrix.shape[1])):
        if matrix.shape[1]:
            means = mean_replicates(matrix, idx)
            for k, key in enumerate(keys):
                reps[key].append(means[:, k])
        if done < replay_budget:
            part = idx[: replay_budget - done]
            for m, o, metric in replay:
                reps[(m, o)].append(_replay(metric, o, aligned.details[(m, o)], part))
        done += len(idx)
    return {k: np.concatenate(v) for k, v in reps.items()}


# ----------------------------------------------------------------------------- the views


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
    from rayeval.tasks import find_task

    if resamples < 10:
        raise SpecError("resamples: use at least 10 (1000 is the default)", field="resamples")
    record = find_task(task, output=output, tags=tags)
    task_id = record["task_id"]
    store = ResultsStore(record["output"])
    spec = _stored_spec(store, task_id)
    w = spec.weights.merged(parse_weights(weights)) if weights is not None else spec.weights
    reference = reference or spec.reference_model
    models = [m.name for m in spec.models]
    if reference is not None and reference not in models:
        raise SpecError(f"reference model '{reference}' is not a model of task {task_id} ({', '.join(models)})")
    summary_rows = store.read_json(task_id, "summary.json")
    if spec.mode == "custom":
        return _custom_results(task_id, summary_rows or [], models, w, reference, seed, resamples)

    metrics_by_set = {s.name: [ref.model_dump() for ref in s.metrics] for s in spec.evaluation_sets}
    outputs = metric_outputs(metrics_by_set)
    if summary_rows is None:  # still running, or stopped before its summary: count what is stored
        summary_rows = summarize(store, task_id, metrics_by_set).rows
    sets, usage, reused = _load(store, task_id, spec, outputs)
    replicates: dict[tuple[str, str, str], np.ndarray] = {}
    diffs: dict[tuple[str, str, str], np.ndarray] = {}
    for eval_set, outs in outputs.items():
        reps = _bootstrap_set(eval_set, sets[eval_set], models, outs, reference, seed, resamples)
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
    from rayeval.jobs.pairwise import read_pairwise

    out = {}
    for s in spec.evaluation_sets:
        for p in s.pairwise:
            for model in (m.name for m in spec.models):
                table = read_pairwise(store, task_id, p.name, model, s.name)
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
    sets: dict[str, _SetItems],
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
            if not _per_item(m, o):
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
    return Results(task_id, rows, leaderboard, [], [], w, reference, seed, resamples, excluded)


# ----------------------------------------------------------------------------- text


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(wd) for c, wd in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * wd for wd in widths))
    return "\n".join(lines)


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2e}" if value < 1e-4 else f"{value:.4f}"


def _columns(items: list[Any], names: list[str]) -> list[list[Any]]:
    return [[getattr(x, n) for n in names] for x in items]


def format_results(results: Results, fmt: str = "table") -> str:
    """The results as text tables (leaderboard, scores, usage, comparison), JSON, or CSV (scores)."""
    if fmt == "json":
        return json.dumps(results.to_dict(), indent=2)
    if fmt == "csv":
        return results.to_csv("scores").rstrip("\n")
    board = _columns(results.leaderboard, ["rank", "model", "score", "ci_low", "ci_high", "components"])
    for row, s in zip(board, results.leaderboard):
        row.append("CI overlaps the next: the order of these two is not settled" if s.overlaps_next else "")
    parts = [
        "Leaderboard (comprehensive score: weighted mean of the values below, 95% bootstrap CI)",
        _table(["rank", "model", "score", "ci_low", "ci_high", "parts", "note"], board),
    ]
    if results.excluded:
        parts.append("left out of the score (not on [0, 1]; give `ranges`): " + ", ".join(results.excluded))
    names = ["model", "eval_set", "metric", "value", "ci_low", "ci_high", "weight", "items", "errors", "reused"]
    if any(r.parse_failures for r in results.rows):  # judge answers that gave no score (part of errors)
        names.append("parse_failures")
    parts += ["", _table(names, _columns(results.rows, names))]
    for r in results.rows:
        if r.pairwise:
            pw = r.pairwise
            parts.append(
                f"pairwise {r.metric}: {r.model} against {pw['reference']} on {r.eval_set}: {pw['wins']} wins, "
                f"{pw['losses']} losses, {pw['ties']} ties ({pw['inconsistent']} of them verdicts that changed "
                "with the order of the answers)"
            )
    if any(u.prompt_tokens or u.completion_tokens or u.latency_p50_ms is not None for u in results.usage):
        names = ["model", "items", "prompt_tokens", "completion_tokens", "latency_p50_ms", "latency_p95_ms"]
        parts += ["", "Usage (answered items)", _table(names, _columns(results.usage, names))]
    if results.comparison:
        names = ["model", "eval_set", "metric", "wins", "losses", "ties", "mean_diff", "ci_low", "ci_high"]
        rows = [row + [_p(c.p_value)] for row, c in zip(_columns(results.comparison, names), results.comparison)]
        parts += [
            "",
            f"Against the reference model {results.reference} (per item; exact sign test p-value)",
            _table([*names, "p_value"], rows),
        ]
    return "\n".join(parts)
