"""Statistics of scores: seeded bootstrap over items (means, and corpus-level scores replayed per
resample), percentile intervals, the paired sign test."""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np

from rayeval.analysis.load import SetItems, per_item

__all__ = [
    "REPLAY_BUDGET",
    "REPLAY_RESAMPLES",
    "bootstrap_set",
    "index_chunks",
    "interval",
    "mean_replicates",
    "replay_corpus",
    "sign_test",
]

#: Replicates of a corpus-level score (recomputed from its items' statistics, so fewer), at most.
REPLAY_RESAMPLES = 200
#: Items x replicates replayed for a corpus-level score, at most.
REPLAY_BUDGET = 2_000_000

#: Most resampled values held at once (replicates x items x columns).
_CHUNK_VALUES = 4_000_000


def index_chunks(n: int, resamples: int, seed: int, key: str, columns: int = 1) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n items: (replicates, n) index arrays, `resamples` rows in all.

    The stream depends only on (seed, key, n): the same task, seed and set give the same intervals.
    """
    rng = np.random.default_rng([seed, zlib.crc32(key.encode()), n])
    per_chunk = max(1, min(resamples, _CHUNK_VALUES // max(1, n * columns)))
    done = 0
    while done < resamples:
        rows = min(per_chunk, resamples - done)
        yield rng.integers(0, n, size=(rows, n))
        done += rows


def mean_replicates(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Means of each column of `values` (items x columns, NaN = not scored) over each resample:
    (replicates, columns); NaN where a resample holds no scored item of a column."""
    taken = values[idx]  # (replicates, n, columns)
    scored = ~np.isnan(taken)
    totals = np.where(scored, taken, 0.0).sum(axis=1)
    counts = scored.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / counts, np.nan)


def interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float | None, float | None]:
    """The percentile interval of bootstrap replicates (None when there are none)."""
    r = replicates[~np.isnan(replicates)]
    if not len(r):
        return None, None
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(r, [tail, 100 - tail])
    return float(lo), float(hi)


def sign_test(wins: int, losses: int) -> float | None:
    """Two-sided exact sign test of wins against losses (ties left out): the chance of a split at
    least this uneven if neither model were better. None without wins or losses."""
    if wins + losses == 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(wins, wins + losses, 0.5).pvalue)


def replay_corpus(metric: Any, output: str, items: dict[int, Any], idx: np.ndarray) -> np.ndarray:
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


def bootstrap_set(
    eval_set: str,
    aligned: SetItems,
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
    mean_outs = [o for o, m in outs if per_item(m, o)]
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
                reps[(m, o)].append(replay_corpus(metric, o, aligned.details[(m, o)], part))
        done += len(idx)
    return {k: np.concatenate(v) for k, v in reps.items()}
