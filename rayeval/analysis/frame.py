"""The per-item results as a pandas DataFrame, with the JSON columns spread into columns of their own.

Stored rows keep two columns as JSON text, so that any set and any metric fit one schema: `fields` (the
item's other columns) and `details` (each metric's steps: preprocessing output, judge prompt and answer,
parsed score...). `expand_json` turns them into ordinary columns, `fields.<name>` and
`details.<metric>.<step>`, for pandas, duckdb or a notebook.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

__all__ = ["JSON_COLUMNS", "expand_json"]

#: Stored columns that hold a JSON object per row.
JSON_COLUMNS = ("fields", "details")


def _parsed(value: Any) -> dict[str, Any]:
    if value is None or (isinstance(value, float) and value != value):  # null, or pandas' NaN for it
        return {}
    parsed = json.loads(value) if isinstance(value, str) else value
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def expand_json(frame: Any, columns: Iterable[str] = JSON_COLUMNS) -> Any:
    """`frame` (a pandas DataFrame, or a pyarrow Table) with each JSON column in `columns` replaced by one
    column per key, nested keys joined by '.' (`details.exact_match.score`); a row without a key has NaN."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        frame = frame.to_pandas()
    out = frame
    for name in columns:
        if name not in out.columns:
            continue
        spread = pd.json_normalize([_parsed(v) for v in out[name]], sep=".")
        spread.columns = [f"{name}.{c}" for c in spread.columns]
        spread.index = out.index
        at = list(out.columns).index(name)
        out = pd.concat([out.iloc[:, :at], spread, out.iloc[:, at + 1 :]], axis=1)
    return out
