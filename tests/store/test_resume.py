"""What a task already has: committed item ids, failed rows taken out, interrupted file replacements."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayeval.actors.writer import ResultWriter
from rayeval.store.results import ResultsStore
from rayeval.store.resume import (
    NEW_PREFIX,
    OLD_PREFIX,
    done_items,
    drop_failed_rows,
    recover_replacements,
    skip_done,
)


def _block(model, eval_set, ids, failed=()):
    return pa.table(
        {
            "item_id": [f"i{i}" for i in ids],
            "model": [model] * len(ids),
            "eval_set": [eval_set] * len(ids),
            "error": pa.array([("boom" if i in failed else None) for i in ids], pa.string()),
        }
    )


@pytest.fixture
def store(tmp_path):
    w = ResultWriter(str(tmp_path), "t", "r1", flush_rows=5)
    w.write(_block("m", "s", range(0, 5), failed={1, 3}))
    w.write(_block("m", "s", range(5, 10)))
    w.write(_block("m2", "s", range(0, 3), failed={0, 1, 2}))
    w.close()
    return ResultsStore(str(tmp_path))


def test_done_items_counts_and_matches_ids(store):
    done = done_items(store, "t")
    assert done.counts == {("m", "s"): {"done": 10, "errors": 2}, ("m2", "s"): {"done": 3, "errors": 3}}
    mask = done.contains(("m", "s"), ["i0", "i9", "i10", None])
    assert mask.tolist() == [True, True, False, False]
    assert not done.contains(("other", "s"), ["i0"]).any()


def test_skip_done_drops_committed_items_of_its_model_only(store):
    done = done_items(store, "t")
    batch = pa.table({"item_id": ["i0", "i10", "i3"], "eval_set": ["s", "s", "s"]})
    assert skip_done(batch, done.for_model("m"))["item_id"].to_pylist() == ["i10"]
    assert skip_done(batch, done.for_model("m3")).num_rows == 3


def test_failed_rows_are_taken_out_and_their_items_become_not_done(store):
    assert drop_failed_rows(store, "t") == 5
    done = done_items(store, "t")
    assert done.counts == {("m", "s"): {"done": 8, "errors": 0}}  # m2's only file held failures only
    assert done.contains(("m", "s"), ["i1", "i3", "i0"]).tolist() == [False, False, True]
    assert recover_replacements(store, "t") == 0  # nothing left half-done


@pytest.mark.parametrize("step", ["new written", "old moved aside", "new in place", "emptied, old moved aside"])
def test_an_interrupted_replacement_ends_with_exactly_one_version(store, step):
    folder = store.results_path("t") + "/model=m/eval_set=s"
    name = sorted(os.listdir(folder))[0]
    final, old, new = f"{folder}/{name}", f"{folder}/{OLD_PREFIX}{name}", f"{folder}/{NEW_PREFIX}{name}"
    original = pq.read_table(final)
    replacement = original.slice(0, 2)
    if step == "new written":
        pq.write_table(replacement, new)
        expected = original
    elif step == "old moved aside":
        pq.write_table(replacement, new)
        os.rename(final, old)
        expected = replacement
    elif step == "new in place":
        os.rename(final, old)
        pq.write_table(replacement, final)
        expected = replacement
    else:
        os.rename(final, old)
        expected = None
    assert recover_replacements(store, "t") == 1
    assert not any(n.startswith((OLD_PREFIX, NEW_PREFIX)) for n in os.listdir(folder))
    if expected is None:
        assert name not in os.listdir(folder)
    else:
        assert pq.read_table(final).equals(expected)
