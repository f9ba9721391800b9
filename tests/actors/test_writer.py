"""The results writer: files per partition, committed whole (never half-written), flushed by size,
by age and at close."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq

from rayeval.actors.writer import ResultWriter
from rayeval.store.results import ResultsStore


def _block(model: str, eval_set: str, ids: range, error_every: int = 0) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "item_id": [f"i{i}" for i in ids],
            "model": [model] * n,
            "eval_set": [eval_set] * n,
            "error": pa.array([("boom" if error_every and i % error_every == 0 else None) for i in ids], pa.string()),
            "score__x": [1.0] * n,
        }
    )


def _files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_rows_are_committed_per_partition_by_size_and_at_close(tmp_path):
    w = ResultWriter(str(tmp_path), "t1", "run1", flush_rows=10, flush_seconds=3600)
    mixed = pa.concat_tables([_block("a", "s", range(0, 6)), _block("b", "s", range(0, 4), error_every=2)])
    received, committed = w.write(mixed)
    assert received == [("a", "s", 6, 0), ("b", "s", 4, 2)] and committed == []
    assert not (tmp_path / "t1").exists()  # nothing committed yet
    received, committed = w.write(_block("a", "s", range(6, 12)))
    assert committed == [("a", "s", 12, 0)]  # a reached flush_rows: one file of 12
    assert w.close() == [("b", "s", 4, 2)]
    files = _files(tmp_path / "t1" / "results")
    assert len(files) == 2 and all(f.split("/")[-1].startswith("part-run1-") for f in files)
    table = ResultsStore(str(tmp_path)).results_dataset("t1").to_table()
    assert sorted(zip(table["model"].to_pylist(), table["item_id"].to_pylist())) == sorted(
        [("a", f"i{i}") for i in range(12)] + [("b", f"i{i}") for i in range(4)]
    )
    one = pq.read_table(tmp_path / "t1" / "results" / files[0])  # a file read alone says whose rows it holds
    assert one.schema.names[0] == "task_id" and set(one.column("task_id").to_pylist()) == {"t1"}
    assert len(set(zip(one.column("model").to_pylist(), one.column("eval_set").to_pylist()))) == 1
    assert f"model={one.column('model')[0]}" in files[0]  # the same as its folder's name


def test_old_rows_are_committed_after_flush_seconds_and_slices_are_honoured(tmp_path):
    w = ResultWriter(str(tmp_path), "t1", "r", flush_rows=1000, flush_seconds=0.0)
    received, committed = w.write(_block("a", "s", range(10)), (2, 5))
    assert received == [("a", "s", 3, 0)] and committed == [("a", "s", 3, 0)]
    ids = ResultsStore(str(tmp_path)).results_dataset("t1").to_table()["item_id"].to_pylist()
    assert sorted(ids) == ["i2", "i3", "i4"]
    assert w.close() == []


def test_a_half_written_file_is_never_read(tmp_path):
    w = ResultWriter(str(tmp_path), "t1", "r", flush_rows=1)
    w.write(_block("a", "s", range(3)))
    folder = tmp_path / "t1" / "results" / "model=a" / "eval_set=s"
    (folder / "_tmp-part-r-crashed.parquet").write_bytes(b"PAR1 half a file")  # a writer killed mid-write
    assert ResultsStore(str(tmp_path)).results_dataset("t1").to_table().num_rows == 3


def test_started_at_is_stored_as_a_utc_timestamp_and_a_task_keeps_its_files_layout(tmp_path):
    import datetime

    from rayeval.schema import TIME_TYPE, seconds_column

    sent = 1_700_000_000.25
    block = _block("a", "s", range(3)).append_column("started_at", pa.array([sent, None, sent + 1], pa.float64()))
    w = ResultWriter(str(tmp_path), "new", "r", flush_rows=1, flush_seconds=0.0)
    w.write(block)
    table = ResultsStore(str(tmp_path)).results_dataset("new").to_table()
    assert table.schema.field("started_at").type == TIME_TYPE
    when = datetime.datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=datetime.timezone.utc)
    assert table.column("started_at").to_pylist() == [when, None, when + datetime.timedelta(seconds=1)]
    assert str(table.to_pandas()["started_at"].dtype) == "datetime64[us, UTC]"
    assert seconds_column(table.column("started_at")).to_pylist() == [sent, None, sent + 1]

    # a task an older rayeval began (Unix seconds in its files) goes on in that layout when it resumes
    old = tmp_path / "old" / "results" / "model=a" / "eval_set=s"
    old.mkdir(parents=True)
    pq.write_table(block, old / "part-r0-000001-x.parquet")
    w = ResultWriter(str(tmp_path), "old", "r1", flush_rows=1, flush_seconds=0.0)
    w.write(_block("a", "s", range(3, 5)).append_column("started_at", pa.array([sent, sent], pa.float64())))
    table = ResultsStore(str(tmp_path)).results_dataset("old").to_table()  # one dataset over both runs' files
    assert table.num_rows == 5 and table.schema.field("started_at").type == pa.float64()
