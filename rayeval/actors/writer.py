"""The results writer: an actor that turns scored blocks into Parquet files, each committed atomically.

The driver hands it the scored stream's blocks (object refs: the rows never pass through the
driver). It buffers rows per (model, evaluation set) and commits a file when a partition holds
`flush_rows` rows, when its oldest row waited `flush_seconds`, and when the driver closes it
(end of the stream, or a stop). A file is written under a name the results reader ignores
(`_tmp-*`) and renamed into place, so a crash leaves either a whole file or none: every stored
item is stored exactly once, and what was only buffered is simply evaluated again on restart.

Each file is then confirmed with the coordinator: it stays only while this run holds the task's
lease (rayeval.store.fence). A writer whose run was superseded deletes the file it just renamed,
drops its buffer and refuses everything after (`RunSuperseded`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rayeval.errors import RunSuperseded
from rayeval.schema import TIME_TYPE, stored_times
from rayeval.store.failures import failed_items
from rayeval.store.fence import result_file_name
from rayeval.store.results import ResultsStore, join_uri

__all__ = ["ResultWriter", "Committed"]

#: (model, eval_set, rows, errors) of one committed file.
Committed = tuple[str, str, int, int]


class ResultWriter:
    """Buffers scored rows per partition and commits them as Parquet files (use as a Ray actor).

    Args:
        location: The task's output location.
        task_id: The task.
        run_id: This run of the task (part of every file name; a restart is a new run).
        flush_rows: Rows that make a partition's file.
        flush_seconds: Most seconds a row waits in the buffer.
        epoch: The run's epoch, from its lease (None: no fencing, for a writer used on its own).
    """

    def __init__(
        self,
        location: str,
        task_id: str,
        run_id: str,
        flush_rows: int = 4096,
        flush_seconds: float = 10.0,
        epoch: int | None = None,
    ):
        from rayeval.actors.coordinator import report_placement

        report_placement(task_id, "writer")
        self.store = ResultsStore(location)
        self.root = self.store.results_path(task_id)  # a path on self.store.fs
        self.task_id, self.run_id, self.epoch = task_id, run_id, epoch
        self.superseded: str | None = None  # why this run may commit nothing more
        self._coordinator: Any = None
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self._buffers: dict[tuple[str, str], list[pa.Table]] = {}
        self._since: dict[tuple[str, str], float] = {}
        self._files = 0
        self._timestamps: bool | None = None  # store started_at as TIME_TYPE (decided at the first commit)
        self._writes = 0
        self._rows = 0

    def write(self, block: pa.Table, rows: tuple[int, int] | None = None) -> tuple[list[Committed], list[Committed]]:
        """Take one scored block (or its rows [start, end)); returns (received, committed), both lists of
        (model, eval_set, rows, errors).

        Raises:
            RunSuperseded: the run lost its lease; nothing more is committed.
        """
        self._writes += 1
        if self.superseded:
            raise RunSuperseded(self.superseded)
        if rows is not None:
            block = block.slice(rows[0], rows[1] - rows[0])
        self._rows += block.num_rows
        if block.num_rows == 0:  # e.g. every item of a restarted task was done already
            return [], self._flush(force=False)
        received = []
        for key, part in _partitions(block):
            self._buffers.setdefault(key, []).append(part)
            self._since.setdefault(key, time.monotonic())
            received.append((*key, part.num_rows, _errors(part)))
        return received, self._flush(force=False)

    def stats(self) -> dict[str, int]:
        """Calls taken (one a block), rows received and files committed so far."""
        return {"writes": self._writes, "rows": self._rows, "files": self._files}

    def close(self) -> list[Committed]:
        """Commit everything buffered (end of the stream, or a stop).

        Raises:
            RunSuperseded: the run lost its lease; nothing more is committed.
        """
        if self.superseded:
            raise RunSuperseded(self.superseded)
        return self._flush(force=True)

    def _flush(self, *, force: bool) -> list[Committed]:
        now = time.monotonic()
        committed = []
        for key in list(self._buffers):
            rows = sum(t.num_rows for t in self._buffers[key])
            if force or rows >= self.flush_rows or now - self._since[key] >= self.flush_seconds:
                table = pa.concat_tables(self._buffers.pop(key), promote_options="default")
                del self._since[key]
                self._commit(key, table)
                committed.append((*key, table.num_rows, _errors(table)))
        return committed

    def _commit(self, key: tuple[str, str], table: pa.Table) -> None:
        model, eval_set = key
        local = join_uri(self.root, f"model={model}", f"eval_set={eval_set}")
        fs = self.store.fs
        fs.create_dir(local, recursive=True)
        self._files += 1
        name = result_file_name(self.epoch, self.run_id, self._files, uuid.uuid4().hex[:8])
        tmp, final = f"{local}/_tmp-{name}", f"{local}/{name}"
        if self._timestamps is None:
            self._timestamps = self._stored_as_timestamps()
        if self._timestamps:
            table = stored_times(table)
        pq.write_table(_self_describing(table, self.task_id), tmp, filesystem=fs)
        fs.move(tmp, final)
        if self.epoch is not None and not self._confirmed(self._files):
            try:
                fs.delete_file(final)
            except FileNotFoundError:  # the run that took over deleted it already
                pass
            self._buffers.clear()
            self._since.clear()
            self.superseded = str(RunSuperseded.of(self.task_id, self.epoch))
            raise RunSuperseded(self.superseded)

    def _stored_as_timestamps(self) -> bool:
        """Whether this task's files hold started_at as a timestamp: yes, unless files an older rayeval
        wrote (Unix seconds) are there already; a task's files keep one layout, so that a dataset over
        them reads as one table."""
        files = self.store.result_files(self.task_id)
        if not files:
            return True
        schema = pq.read_schema(files[0], filesystem=self.store.fs)
        return "started_at" not in schema.names or schema.field("started_at").type == TIME_TYPE

    def _confirmed(self, seq: int) -> bool:
        """Whether the coordinator lets file `seq` of this run stand (the run still holds the lease)."""
        import ray

        from rayeval.actors.coordinator import get_coordinator

        if not ray.is_initialized():  # a writer used on its own, outside Ray
            return True
        if self._coordinator is None:
            self._coordinator = get_coordinator(create=False)
        if self._coordinator is None:  # a writer used on its own
            return True
        return bool(ray.get(self._coordinator.may_commit.remote(self.task_id, self.epoch, seq)))


def _self_describing(table: pa.Table, task_id: str) -> pa.Table:
    """A file's rows with the task's id first: each file says whose rows it holds on its own (model and
    eval_set stay in the file too, besides the folder names), for readers that open one file."""
    if "task_id" in table.schema.names:
        table = table.drop_columns(["task_id"])
    return table.add_column(0, pa.field("task_id", pa.string()), pa.array([task_id] * table.num_rows, pa.string()))


def _partitions(block: pa.Table) -> list[tuple[tuple[str, str], pa.Table]]:
    """The block's rows grouped by (model, eval_set), in order of first appearance."""
    keys = list(zip(block.column("model").to_pylist(), block.column("eval_set").to_pylist()))
    distinct = list(dict.fromkeys(keys))
    if len(distinct) == 1:
        return [(distinct[0], block)]
    out = []
    for model, eval_set in distinct:
        mask = pc.and_(pc.equal(block.column("model"), model), pc.equal(block.column("eval_set"), eval_set))
        out.append(((model, eval_set), block.filter(mask)))
    return out


def _errors(table: pa.Table) -> int:
    return sum(failed_items(table))


def new_run_id() -> str:
    """A short id for one run of a task (files of a run share it)."""
    return uuid.uuid4().hex[:8]


def writer_actor(num_cpus: float) -> Any:
    """The ResultWriter as a Ray actor class with these resources."""
    import ray

    return ray.remote(num_cpus=num_cpus)(ResultWriter)
