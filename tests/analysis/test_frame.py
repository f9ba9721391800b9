"""Stored results as a DataFrame: the JSON columns (`fields`, `details`) spread into ordinary columns, read
back from real Parquet files committed by the writer."""

from __future__ import annotations

import json

import pyarrow as pa

from rayeval.actors.writer import ResultWriter
from rayeval.analysis.frame import expand_json
from rayeval.store.results import ResultsStore


def test_json_columns_become_a_column_per_key(tmp_path):
    rows = [
        {
            "item_id": f"i{i}",
            "model": "m",
            "eval_set": "s",
            "fields": json.dumps({"topic": "math" if i else "art", "level": i}),
            "details": json.dumps({"exact_match": {"prediction": f"p{i}", "score": float(i % 2)}}) if i != 2 else None,
            "error": None,
        }
        for i in range(3)
    ]
    writer = ResultWriter(str(tmp_path), "t1", "r", flush_rows=100, flush_seconds=3600)
    writer.write(pa.Table.from_pylist(rows))
    writer.close()
    frame = expand_json(ResultsStore(str(tmp_path)).results_dataset("t1").to_table()).sort_values("item_id")
    assert set(frame["task_id"]) == {"t1"} and set(frame["model"]) == {"m"}
    assert "fields" not in frame.columns and "details" not in frame.columns
    assert list(frame["fields.topic"]) == ["art", "math", "math"] and list(frame["fields.level"]) == [0, 1, 2]
    assert list(frame["details.exact_match.prediction"])[:2] == ["p0", "p1"]
    assert frame["details.exact_match.score"].isna().tolist() == [False, False, True]  # no details: NaN
    assert list(frame.columns).index("fields.topic") < list(frame.columns).index("details.exact_match.score")
