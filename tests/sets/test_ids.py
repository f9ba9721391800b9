"""Item ids repeat nowhere: a set whose ids repeat is refused before anything runs, naming them and
their lines, in every format; rows without an id column are told apart by their content."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayeval.errors import DatasetError
from rayeval.sets.plan import plan_sets
from rayeval.spec import parse_task


def _spec(tmp_path, path, columns):
    return parse_task(
        {
            "name": "ids",
            "mode": "evaluation_only",
            "output": str(tmp_path / "out"),
            "models": [{"name": "m"}],
            "evaluation_sets": [
                {"name": "s", "path": str(path), "columns": columns, "predictions": {"m": "pred"}, "metrics": ["f1"]}
            ],
        }
    )


def _rows(ids):
    return [{"id": i, "query": f"q{n}", "reference": "r", "pred": "p"} for n, i in enumerate(ids)]


def test_repeated_ids_in_jsonl_are_named_with_their_lines(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows(["a", "b", "a", 7, "c", "7", "a"])))
    with pytest.raises(DatasetError) as e:
        plan_sets(_spec(tmp_path, path, {"id": "id"}))
    text = str(e.value)
    assert "set 's' repeats item ids" in text and "evaluation_sets.0.path" in text
    assert "'a' at line 1, line 3, line 7 of" in text and "'7' at line 4, line 6 of" in text  # 7 and "7": one id
    assert "make the `id` column unique" in text


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
def test_repeated_ids_in_other_formats(tmp_path, fmt):
    rows = _rows(["x1", "x2", "x1"])
    path = tmp_path / f"set.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "csv":
        path.write_text("id,query,reference,pred\n" + "".join(f"{r['id']},{r['query']},r,p\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DatasetError, match="repeats item ids.*'x1' at"):
        plan_sets(_spec(tmp_path, path, {"id": "id"}))


def test_identical_rows_without_an_id_column_are_refused_and_distinct_ones_pass(tmp_path):
    path = tmp_path / "set.jsonl"
    same = {"query": "q", "reference": "r", "pred": "p"}
    path.write_text(json.dumps(same) + "\n" + json.dumps({**same, "query": "other"}) + "\n" + json.dumps(same) + "\n")
    with pytest.raises(DatasetError, match="line 1, line 3 of .*give the set an id column"):
        plan_sets(_spec(tmp_path, path, {}))
    path.write_text("".join(json.dumps({**same, "query": f"q{i}"}) + "\n" for i in range(50)))
    (plan,) = plan_sets(_spec(tmp_path, path, {}))
    assert plan.entries("m") == 50


def test_a_set_that_is_one_50_mb_line_is_read(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"id": "only", "query": "x" * 50_000_000, "reference": "r", "pred": "p"}) + "\n")
    (plan,) = plan_sets(_spec(tmp_path, path, {"id": "id"}))
    assert plan.entries("m") == 1


def test_generate_ids_numbers_repeated_rows_by_their_lines(tmp_path):
    from rayeval.sets.read import head_items

    path = tmp_path / "set.jsonl"
    same = json.dumps({"query": "q", "reference": "r", "pred": "p"})
    path.write_text(f"{same}\n\n{same}\n{same}\n")  # a blank line keeps the numbering of the file
    spec = _spec(tmp_path, path, {})
    spec = spec.model_copy(
        update={"evaluation_sets": [spec.evaluation_sets[0].model_copy(update={"generate_ids": True})]}
    )
    (plan,) = plan_sets(spec)
    assert [i["item_id"] for i in head_items(plan, "m", 10)] == ["set.jsonl:1", "set.jsonl:3", "set.jsonl:4"]
    big = tmp_path / "big.jsonl"
    big.write_text(f"{same}\n" * 3000)  # several shards: each knows the line it starts at
    spec = spec.model_copy(update={"evaluation_sets": [spec.evaluation_sets[0].model_copy(update={"path": str(big)})]})
    (plan,) = plan_sets(spec)
    assert len(plan.shared.shards) > 1
    ids = [i["item_id"] for i in head_items(plan, "m", 3000)]
    assert ids == [f"big.jsonl:{n}" for n in range(1, 3001)]


def test_generate_ids_is_refused_where_it_cannot_apply(tmp_path):
    from rayeval.errors import SpecError

    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows(["a", "b"])))
    with pytest.raises(SpecError, match="generate_ids makes ids from where each row is"):
        parse_task(
            {
                "name": "ids",
                "mode": "evaluation_only",
                "models": [{"name": "m"}],
                "evaluation_sets": [
                    {
                        "name": "s",
                        "path": str(path),
                        "columns": {"id": "id"},
                        "predictions": {"m": "pred"},
                        "metrics": ["f1"],
                        "generate_ids": True,
                    }
                ],
            }
        )
    csv = tmp_path / "set.csv"
    csv.write_text("query,reference,pred\nq,r,p\n")
    spec = _spec(tmp_path, csv, {})
    spec = spec.model_copy(
        update={"evaluation_sets": [spec.evaluation_sets[0].model_copy(update={"generate_ids": True})]}
    )
    with pytest.raises(DatasetError, match="generate_ids works for JSONL and JSON files, not csv"):
        plan_sets(spec)
