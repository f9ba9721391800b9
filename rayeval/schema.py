"""Column layouts of the stream: items, inference outputs, and stored results."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "INFERENCE_FIELDS",
    "ITEM_SCHEMA",
    "RESULT_BASE_SCHEMA",
    "STREAM_SCHEMA",
    "TIME_TYPE",
    "item_dict",
    "seconds_column",
    "stored_times",
    "score_column",
    "with_inference_columns",
]

ITEM_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("eval_set", pa.string()),
        ("query", pa.string()),
        ("reference", pa.string()),
        ("prediction", pa.string()),
        # The item's other columns (JSON object), for prompt placeholders, scripts and metrics.
        ("fields", pa.string()),
        # Several responses to the query (INFERENCE_COUNT > 1, or a list of strings in the prediction
        # column); `prediction` is then the first of them. Null for one response.
        ("samples", pa.list_(pa.string())),
    ]
)

#: Columns inference adds (or Evaluation Only fills with nulls), beside ITEM_SCHEMA.
INFERENCE_FIELDS = [
    pa.field("model", pa.string()),
    # Unix seconds of the first attempt in the stream; stored as TIME_TYPE (`stored_times`).
    pa.field("started_at", pa.float64()),
    pa.field("latency_ms", pa.float64()),
    pa.field("prompt_tokens", pa.int64()),
    pa.field("completion_tokens", pa.int64()),
    pa.field("finish_reason", pa.string()),
    pa.field("attempts", pa.int64()),
    pa.field("error", pa.string()),
    # Log-likelihood sets: every choice's summed log-probability, token count and greedy flag (JSON list,
    # rayeval.inference.loglikelihood); `prediction` is then the index of the most likely choice.
    pa.field("loglikelihoods", pa.string()),
    # The earlier task this row was taken from (rayeval.store.reuse), or null.
    pa.field("reused_from", pa.string()),
    # Reused rows only: metric name -> {"scores", "details"} still valid (JSON); the scoring stage
    # keeps them instead of computing them again, and drops the column.
    pa.field("carried", pa.string()),
]

#: The stream between inference and judging/scoring: items with their inference columns.
STREAM_SCHEMA = pa.schema(list(ITEM_SCHEMA) + INFERENCE_FIELDS)

#: Stored rows: the stream's columns but `carried`, the steps, and the fingerprints (rayeval.store.fingerprint);
#: then one `score__<output>` column per metric output.
RESULT_BASE_SCHEMA = pa.schema(
    [f for f in STREAM_SCHEMA if f.name != "carried"]
    + [pa.field("details", pa.string()), pa.field("item_fp", pa.string()), pa.field("metric_fps", pa.string())]
)


#: How stored files hold `started_at`: a UTC timestamp (files of tasks created before it hold Unix seconds
#: as float64; a task keeps the type its first file had, and readers take both: `seconds_column`).
TIME_TYPE = pa.timestamp("us", tz="UTC")


def stored_times(table: pa.Table) -> pa.Table:
    """The stream's rows as stored: `started_at` (Unix seconds in the stream) as a UTC timestamp."""
    idx = table.schema.get_field_index("started_at")
    if idx < 0 or table.schema.field(idx).type == TIME_TYPE:
        return table
    seconds = table.column(idx).cast(pa.float64())
    micros = pc.cast(pc.round(pc.multiply(seconds, 1e6)), pa.int64())
    return table.set_column(idx, pa.field("started_at", TIME_TYPE), micros.cast(TIME_TYPE))


def seconds_column(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A stored `started_at` column (a timestamp, or float64 Unix seconds in older files) as float64 seconds."""
    if pa.types.is_timestamp(column.type):
        unit = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[column.type.unit]
        return pc.divide(column.cast(pa.timestamp(column.type.unit)).cast(pa.int64()).cast(pa.float64()), unit)
    return column.cast(pa.float64())


def score_column(output: str) -> str:
    """Name of the stored column holding a metric output's per-item score."""
    return f"score__{output}"


def with_inference_columns(items: pa.Table, model: str, columns: dict[str, list]) -> pa.Table:
    """Items plus the inference columns (missing ones as nulls), typed as INFERENCE_FIELDS."""
    n = items.num_rows
    table = items
    for f in INFERENCE_FIELDS:
        values = [model] * n if f.name == "model" else columns.get(f.name, [None] * n)
        table = table.append_column(f, pa.array(values, type=f.type))
    for name, type_ in (("prediction", pa.string()), ("samples", pa.list_(pa.string()))):
        if name in columns:
            idx = table.schema.get_field_index(name)
            table = table.set_column(idx, name, pa.array(columns[name], type=type_))
    return table


def item_dict(row: dict) -> dict:
    """The item as metrics, scripts and prompts see it: its other columns, then the core columns."""
    import json

    extra = json.loads(row["fields"]) if row.get("fields") else {}
    return {**extra, **{k: v for k, v in row.items() if k != "fields"}}
