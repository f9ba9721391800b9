"""The fence between a task's runs, as readers see it: files a run committed after it lost the task's
lease (its epoch sealed, its file number past what it was allowed) are not results."""

from __future__ import annotations

import pyarrow as pa
import pytest

from rayeval.actors.writer import ResultWriter
from rayeval.store.fence import fenced_out, result_file_name
from rayeval.store.results import ResultsStore
from rayeval.store.resume import done_items


def test_names_carry_the_epoch_and_the_file_number():
    name = result_file_name(3, "abcd1234", 7, "ffff0000")
    assert name == "part-e3-abcd1234-000007-ffff0000.parquet"
    assert not fenced_out(name, None) and not fenced_out(name, {})
    assert not fenced_out(name, {"3": 7})  # allowed: the seventh file was confirmed before the seal
    assert fenced_out(name, {"3": 6})  # renamed after the seal
    assert not fenced_out(name, {"2": 0})  # another epoch's seal
    # Files of writers outside a lease, and of rayeval before fencing, always count.
    assert not fenced_out(result_file_name(None, "abcd1234", 9, "ffff0000"), {"1": 0})
    assert not fenced_out("part-abcd1234-000009-ffff0000.parquet", {"1": 0})


def _block(ids):
    n = len(ids)
    return pa.table(
        {
            "item_id": [f"i{i}" for i in ids],
            "model": ["m"] * n,
            "eval_set": ["s"] * n,
            "error": pa.array([None] * n, pa.string()),
        }
    )


@pytest.fixture
def store(tmp_path, monkeypatch):
    """Run 1 committed 3 files of 2 rows each; the task's record seals epoch 1 after its second file."""
    # Each file stands as it would for a run holding the lease: these tests are about the readers, so the
    # writer asks no coordinator, even where this test process is a Ray driver with one (tests in one
    # process share it; under pytest-xdist a Ray test may have run here first).
    monkeypatch.setattr(ResultWriter, "_confirmed", lambda self, seq: True)
    w = ResultWriter(str(tmp_path), "t", "r1", flush_rows=2, epoch=1)
    for start in (0, 2, 4):
        w.write(_block([start, start + 1]))
    w.close()
    s = ResultsStore(str(tmp_path))
    s.write_json("t", "task.json", {"task_id": "t", "sealed": {"1": 2}})
    return s


def test_readers_skip_what_a_superseded_run_committed_late(store):
    ids = sorted(store.results_dataset("t").to_table(columns=["item_id"])["item_id"].to_pylist())
    assert ids == ["i0", "i1", "i2", "i3"]
    rows = [r for b in store.iter_results("t", ["item_id"]) for r in b.column(0).to_pylist()]
    assert sorted(rows) == ids
    assert done_items(store, "t").total() == 4
    assert len(store.result_files("t")) == 2
    late = store.fenced_files("t")
    assert len(late) == 1 and late[0].split("/")[-1].startswith("part-e1-r1-000003-")


def test_unsealed_epochs_count_whole(store):
    store.write_json("t", "task.json", {"task_id": "t", "sealed": {}})
    assert store.results_dataset("t").count_rows() == 6 and store.fenced_files("t") == []
