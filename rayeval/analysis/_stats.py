"""Statistics of scores: seeded bootstrap over items, percentile intervals, the paired sign test."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np

__all__ = ["index_chunks", "interval", "mean_replicates", "sign_test"]

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
