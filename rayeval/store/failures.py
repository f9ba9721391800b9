"""Which stored items failed: one definition for the progress line, the summary and `rayeval status`.

An item failed when its row holds an error (inference, or anything before scoring), or when a step of
one of its metrics did (a pre/post-processing script, the metric itself, the judge, or a judge answer
that gave no score): its `details` then hold that metric's `error` or `parse_failure`.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

__all__ = ["failed_items", "step_failed"]


def step_failed(details: str | None) -> bool:
    """Whether a row's `details` (JSON: metric -> its steps) record a failed metric step."""
    if not details or ('"error"' not in details and '"parse_failure"' not in details):
        return False  # the common case, without parsing
    try:
        steps: Any = json.loads(details)
    except ValueError:
        return False
    return isinstance(steps, dict) and any(
        isinstance(s, dict) and (s.get("error") or s.get("parse_failure")) for s in steps.values()
    )


def failed_items(table: pa.Table | pa.RecordBatch) -> list[bool]:
    """Per row: the item failed (its `error`, or a failed metric step in its `details`)."""
    names = table.schema.names
    errors = table.column(names.index("error")).is_valid().to_pylist() if "error" in names else [False] * len(table)
    if "details" not in names:
        return errors
    details = table.column(names.index("details")).to_pylist()
    return [bool(e) or step_failed(d) for e, d in zip(errors, details)]
