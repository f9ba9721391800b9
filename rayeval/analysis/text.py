"""Plain-text views of a task for terminals and job logs: its summary table, its results (leaderboard,
scores, usage, comparison), its progress per model and set with rate and ETA, and a one-line progress bar."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

from rayeval.analysis.board import Results
from rayeval.cluster.waits import StageWait
from rayeval.records import TaskRecord, progress_fraction, progress_totals

__all__ = [
    "LIST_HEADER",
    "list_line",
    "parameter_lines",
    "format_results",
    "format_summary",
    "progress_bar",
    "progress_lines",
    "progress_rows",
    "reuse_note",
    "STAGES",
    "waiting_line",
]


def format_summary(rows: list[dict[str, Any]], fmt: str = "table") -> str:
    """Render summary rows as an aligned table, JSON or CSV."""
    if fmt == "json":
        return json.dumps(rows, indent=2)
    fields = ["model", "eval_set", "metric", "value", "items", "scored", "errors"]
    if any(r.get("parse_failures") for r in rows):  # judge answers that gave no score, shown apart
        fields.append("parse_failures")
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().rstrip("\n")
    table = [fields] + [
        [str(r[f]) if f != "value" else ("n/a" if r[f] is None else f"{r[f]:.4f}") for f in fields] for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(fields))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _rate(evaluated: int, remaining: int, elapsed: float) -> str:
    """', 12.3 items/s, ETA 4m10s' from the items evaluated in `elapsed` seconds (', rate: starting' before any)."""
    if elapsed <= 0 or evaluated <= 0:
        return ", rate: starting" if remaining else ""
    rate = evaluated / elapsed
    eta = remaining / rate
    return f", {rate:.1f} items/s, ETA {int(eta // 60)}m{int(eta % 60):02d}s"


def _elapsed(record: TaskRecord, now: float) -> float | None:
    """Seconds the task has been running (None when it is not running)."""
    started = record.get("started_at")
    return now - started if started and record.get("state") == "running" else None


#: The stages whose counts a record may hold (`stages`), in the stream's order; `done` is what is stored.
STAGES = ("inferred", "judged", "scored")


def progress_rows(record: TaskRecord, now: float | None = None) -> list[tuple[str, str, int, int, str]]:
    """(model, set, done, total, facts) per model x set of a task record; `facts` says what each stage
    handled in this run (inferred, judged, scored: the one that lags is the bottleneck), errors, reused,
    remaining, and while it runs the rate of items evaluated in this run (not those skipped or reused)
    and the ETA."""
    elapsed = _elapsed(record, time.time() if now is None else now)
    rows = []
    for model, sets in record.get("progress", {}).items():
        for eval_set, p in sets.items():
            remaining = max(0, p["total"] - p["done"])
            stages = record.get("stages", {}).get(model, {}).get(eval_set, {})
            shown = [f"{stage} {stages[stage]}" for stage in STAGES if stage in stages]
            facts = ", ".join([*shown, f"{p['errors']} errors"])
            if p.get("reused"):
                facts += f", {p['reused']} reused"
            facts += f", {remaining} remaining"
            if elapsed is not None:
                facts += _rate(p["done"] - p.get("resumed", 0) - p.get("reused", 0), remaining, elapsed)
            rows.append((model, eval_set, p["done"], p["total"], facts))
    return rows


def progress_lines(record: TaskRecord, now: float | None = None) -> list[str]:
    """One line per model x set of a task record: 'm / s: 10/20 done, 0 errors, 10 remaining, ...'."""
    return [f"{m} / {s}: {done}/{total} done, {facts}" for m, s, done, total, facts in progress_rows(record, now)]


def progress_bar(record: TaskRecord, width: int = 30, now: float | None = None) -> str:
    """'[#####.....]  50.0%  10/20 entries, 0 errors, 3.1 items/s, ETA 0m03s' for the whole task (items
    skipped by a restart or reused are not counted in the rate)."""
    frac = progress_fraction(record)
    totals = progress_totals(record)
    done, total = totals["done"], totals["total"]
    filled = int(frac * width)
    line = f"[{'#' * filled}{'.' * (width - filled)}] {frac:6.1%}  {done}/{total} entries, {totals['errors']} errors"
    now = time.time() if now is None else now
    elapsed = _elapsed(record, now)
    if elapsed is not None:
        line += _rate(done - record.get("resumed", 0) - totals["reused"], max(0, total - done), elapsed)
    waiting = waiting_line(record, now)
    return f"{line}; {waiting}" if waiting else line


def waiting_line(record: TaskRecord, now: float | None = None) -> str | None:
    """'waiting for resources: 2 inference actors (each CPU 0.25, io 0.01) for 35 s' while a stage waits."""
    waits = record.get("waiting") or []
    if not waits or record.get("state") not in ("running", "pending"):
        return None
    return "waiting for resources: " + "; ".join(StageWait(**w).describe(now) for w in waits)


#: The header of `rayeval list`.
LIST_HEADER = f"{'TASK':<44} {'STATE':<12} {'PROGRESS':>8}  {'MODE':<25} {'CREATED':<16} {'CREATOR':<10} DETAILS"


def list_line(row: dict[str, Any], progress: float, created: str) -> str:
    """One task's line of `rayeval list` (a task record, or the server's row of one)."""
    details = f"models {','.join(row.get('models', []))}; sets {','.join(row.get('eval_sets', []))}"
    if row.get("tags"):
        details += f"; tags {','.join(row['tags'])}"
    for model, hosted in (row.get("resources") or {}).items():
        details += f"; {model} hosted: {hosted}"
    if row.get("remarks"):
        details += f"; {row['remarks']}"
    return (
        f"{row['task_id']:<44} {row['state']:<12} {progress:>8.1%}  {row.get('mode') or '':<25} "
        f"{created:<16} {row.get('creator') or '':<10} {details}"
    )


def parameter_lines(record: TaskRecord) -> list[str]:
    """The parameters each model runs each set with (task < set < model), one line per model and group of
    sets that share them; values left at their defaults are not repeated."""
    from rayeval.spec import Parameters

    defaults = Parameters().model_dump(mode="json", exclude_none=True)
    lines = []
    for model, by_set in (record.get("parameters") or {}).items():
        groups: dict[str, list[str]] = {}
        for eval_set, params in by_set.items():
            changed = {k: v for k, v in params.items() if defaults.get(k, object()) != v}
            text = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in sorted(changed.items()))
            groups.setdefault(text or "defaults", []).append(eval_set)
        for text, sets in groups.items():
            where = model if len(groups) == 1 else f"{model} / {', '.join(sets)}"
            lines.append(f"parameters of {where}: {text}")
    return lines


def reuse_note(record: TaskRecord) -> str | None:
    """'reused 40 items from earlier tasks: ID (40)' when the task took items from earlier tasks."""
    reused = record.get("reused") or {}
    if not reused.get("total"):
        return None
    sources = ", ".join(f"{t} ({n})" for t, n in reused["sources"].items())
    return f"reused {reused['total']} items from earlier tasks: {sources}"


def _cell(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header] + [[_cell(c) for c in row] for row in rows]
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
