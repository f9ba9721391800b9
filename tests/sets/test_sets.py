"""Evaluation-set sources: checks before anything runs, and lazy Ray Data reading of every format."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayeval.errors import DatasetError
from rayeval.sets.plan import plan_sets
from rayeval.sets.read import read_items, row_id
from rayeval.spec import parse_task


def _spec(path, mode="inference_and_evaluation", **set_over):
    s = {"name": "s", "path": str(path), "metrics": ["exact_match"], **set_over}
    models = [{"name": "m", "url": "http://127.0.0.1:9/v1"}] if mode != "evaluation_only" else [{"name": "m"}]
    return parse_task({"name": "t", "mode": mode, "evaluation_sets": [s], "models": models})


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def mixed_folder(tmp_path):
    d = tmp_path / "set"
    d.mkdir()
    _jsonl(d / "a.jsonl", [{"query": f"q{i}", "reference": f"r{i}"} for i in range(5)])
    (d / "b.json").write_text(json.dumps([{"query": "j1", "reference": "x"}, {"query": "j2", "reference": 3}]))
    (d / "c.csv").write_text("query,reference\nc1,007\nc2,y\n", encoding="utf-8")
    pq.write_table(pa.table({"query": ["p1", "p2", "p3"], "reference": ["u", "v", "w"]}), d / "d.parquet")
    (d / "notes.txt").write_text("ignored")
    return d


def test_plan_counts_every_format_in_a_folder(mixed_folder):
    (plan,) = plan_sets(_spec(mixed_folder))
    assert plan.shared.rows == 5 + 2 + 2 + 3
    assert sorted(sh.fmt for sh in plan.shared.shards) == ["csv", "json", "jsonl", "parquet"]


def test_read_items_streams_all_formats_with_stable_ids(ray_cluster, mixed_folder):
    (plan,) = plan_sets(_spec(mixed_folder))
    rows = read_items(plan, None).take_all()
    assert sorted(r["query"] for r in rows) == sorted(
        [f"q{i}" for i in range(5)] + ["j1", "j2", "c1", "c2", "p1", "p2", "p3"]
    )
    by_query = {r["query"]: r for r in rows}
    assert by_query["c1"]["reference"] == "007"  # CSV read as text, not as the number 7
    assert by_query["j2"]["reference"] == "3"
    assert by_query["q0"]["item_id"] == row_id({"query": "q0", "reference": "r0"})
    again = {r["query"]: r["item_id"] for r in read_items(plan, None).take_all()}
    assert again == {q: r["item_id"] for q, r in by_query.items()}
    assert len(set(again.values())) == len(rows)


def test_given_id_column_is_used(ray_cluster, tmp_path):
    _jsonl(tmp_path / "x.jsonl", [{"qid": 10 + i, "q": "hi", "a": "ho"} for i in range(3)])
    spec = _spec(tmp_path / "x.jsonl", columns={"id": "qid", "query": "q", "reference": "a"})
    ids = sorted(r["item_id"] for r in read_items(plan_sets(spec)[0], None).take_all())
    assert ids == ["10", "11", "12"]


def test_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="does not exist") as e:
        plan_sets(_spec(tmp_path / "nope"))
    assert e.value.field == "evaluation_sets.0.path"


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no .jsonl, .json, .csv or .parquet file"):
        plan_sets(_spec(tmp_path / "empty"))


def test_rows_missing_query_column_name_the_line(tmp_path):
    _jsonl(tmp_path / "x.jsonl", [{"query": "a", "reference": "b"}, {"question": "a", "reference": "b"}])
    with pytest.raises(DatasetError, match=r"line 2: row has no column 'query'"):
        plan_sets(_spec(tmp_path / "x.jsonl"))


def test_csv_missing_column(tmp_path):
    (tmp_path / "x.csv").write_text("question,reference\na,b\n")
    with pytest.raises(DatasetError, match="header: row has no column 'query'"):
        plan_sets(_spec(tmp_path / "x.csv"))


def test_non_utf8_file(tmp_path):
    (tmp_path / "x.jsonl").write_bytes(b'{"query": "caf\xe9", "reference": "b"}\n')
    with pytest.raises(DatasetError, match="not UTF-8"):
        plan_sets(_spec(tmp_path / "x.jsonl"))


def test_invalid_json_line(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"query": "a", "reference": "b"}\n{"query": \n')
    with pytest.raises(DatasetError, match="line 2: invalid JSON"):
        plan_sets(_spec(tmp_path / "x.jsonl"))


def test_prediction_columns_are_checked_in_evaluation_only(tmp_path):
    _jsonl(tmp_path / "x.jsonl", [{"query": "a", "reference": "b", "out": "b"}])
    with pytest.raises(DatasetError, match="no column 'pred'"):
        plan_sets(_spec(tmp_path / "x.jsonl", mode="evaluation_only", predictions={"m": "pred"}))
    (plan,) = plan_sets(_spec(tmp_path / "x.jsonl", mode="evaluation_only", predictions={"m": "out"}))
    assert plan.source_for("m").prediction_column == "out"


def test_big_jsonl_is_cut_into_byte_range_shards_read_exactly_once(ray_cluster, tmp_path):
    rows = [{"query": f"q{i} é", "reference": str(i)} for i in range(5000)]
    _jsonl(tmp_path / "big.jsonl", rows)
    (plan,) = plan_sets(_spec(tmp_path / "big.jsonl"))
    shards = plan.shared.shards
    assert len(shards) >= 8 and sum(sh.rows for sh in shards) == 5000
    assert all(a.end == b.start for a, b in zip(shards, shards[1:]))
    ds = read_items(plan, None)
    assert ds.materialize().num_blocks() >= len(shards)
    got = sorted(r["reference"] for r in ds.take_all())
    assert got == sorted(str(i) for i in range(5000))


def test_limit_takes_the_first_rows_in_file_order_across_shards(ray_cluster, tmp_path):
    _jsonl(tmp_path / "a.jsonl", [{"query": f"a{i}", "reference": str(i)} for i in range(1500)])
    _jsonl(tmp_path / "b.jsonl", [{"query": f"b{i}", "reference": str(i)} for i in range(700)])
    (plan,) = plan_sets(_spec(tmp_path, limit=1600))  # all of a.jsonl (several shards), then part of b.jsonl
    assert len(plan.shared.shards) >= 4
    for _ in range(3):  # whichever read task finishes first, the same items
        got = sorted(r["query"] for r in read_items(plan, None).take_all())
        assert got == sorted([f"a{i}" for i in range(1500)] + [f"b{i}" for i in range(100)])


def test_non_utf8_byte_deep_in_a_file_names_the_line(tmp_path):
    good = "".join(json.dumps({"query": f"q{i}", "reference": "r"}) + "\n" for i in range(3000))
    (tmp_path / "x.jsonl").write_bytes(good.encode() + b'{"query": "\xff", "reference": "r"}\n')
    with pytest.raises(DatasetError, match="line 3001 is not UTF-8"):
        plan_sets(_spec(tmp_path / "x.jsonl"))


def test_other_columns_travel_in_fields_in_every_format(ray_cluster, tmp_path):
    d = tmp_path / "set"
    d.mkdir()
    _jsonl(d / "a.jsonl", [{"q": "q1", "a": "r1", "topic": "geo", "choices": ["x", "y"]}])
    (d / "b.csv").write_text("q,a,topic\nq2,r2,math\n", encoding="utf-8")
    pq.write_table(pa.table({"q": ["q3"], "a": ["r3"], "topic": ["art"]}), d / "c.parquet")
    spec = _spec(d, columns={"query": "q", "reference": "a"})
    (plan,) = plan_sets(spec)
    assert plan.shared.columns() == {"q", "a", "topic"}  # what every file has
    rows = {r["query"]: r for r in read_items(plan, None).take_all()}
    assert json.loads(rows["q1"]["fields"]) == {"topic": "geo", "choices": ["x", "y"]}
    assert json.loads(rows["q2"]["fields"]) == {"topic": "math"}
    assert json.loads(rows["q3"]["fields"]) == {"topic": "art"}
    assert all(r["samples"] is None for r in rows.values())


def test_a_list_of_strings_as_prediction_is_several_samples(ray_cluster, tmp_path):
    rows = [
        {"query": "q1", "reference": "r", "m1": ["a", "b", "c"], "m2": "one"},
        {"query": "q2", "reference": "r", "m1": [{"call": "f"}], "m2": "two"},  # structured: one prediction
    ]
    _jsonl(tmp_path / "x.jsonl", rows)
    spec = parse_task(
        {
            "name": "t",
            "mode": "evaluation_only",
            "models": [{"name": "a"}, {"name": "b"}],
            "evaluation_sets": [
                {
                    "name": "s",
                    "path": str(tmp_path / "x.jsonl"),
                    "predictions": {"a": "m1", "b": "m2"},
                    "metrics": ["f1"],
                }
            ],
        }
    )
    (plan,) = plan_sets(spec)
    got = {r["query"]: r for r in read_items(plan, "a").take_all()}
    assert got["q1"]["samples"] == ["a", "b", "c"] and got["q1"]["prediction"] == "a"
    assert got["q2"]["samples"] is None and json.loads(got["q2"]["prediction"]) == [{"call": "f"}]
    assert got["q1"]["fields"] is None  # the models' prediction columns are not item fields
