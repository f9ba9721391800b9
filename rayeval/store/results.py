"""The results store: per-task folders on any pyarrow filesystem (a local path or a URI).

Layout under the output location::

    {task_id}/spec.json          the task spec, secrets redacted (and `effective_parameters` beside it)
    {task_id}/task.json          the coordinator's record: state and progress
    {task_id}/results/model=M/eval_set=S/*.parquet   one row per item and model
    {task_id}/summary.json       the summary, written when the task ends
    {task_id}/pairwise/NAME/model=M/eval_set=S/part-0.parquet   one pairwise metric's verdicts per item
    {task_id}/custom/CONFIG/MODEL/   a Custom Evaluation program's outcome.json, program.log and output/
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from rayeval.store.fence import fenced_out

__all__ = ["EFFECTIVE_PARAMETERS", "ResultsStore", "custom_name", "join_uri", "spec_part"]

#: The key of spec.json holding each model's parameters on each set (task < set < model), for people to
#: read: not part of the spec.
EFFECTIVE_PARAMETERS = "effective_parameters"

PARTITIONING = pads.partitioning(pa.schema([("model", pa.string()), ("eval_set", pa.string())]), flavor="hive")


def join_uri(base: str, *parts: str) -> str:
    """Join path components onto a local path or URI."""
    return "/".join([base.rstrip("/"), *parts])


def spec_part(data: dict[str, Any]) -> dict[str, Any]:
    """spec.json's content less what is stored beside the spec (`EFFECTIVE_PARAMETERS`): the spec to parse."""
    return {k: v for k, v in data.items() if k != EFFECTIVE_PARAMETERS}


def custom_name(config: str, model: str, *parts: str) -> str:
    """Name, in a task's folder, of a Custom Evaluation pair's folder (or of something in it)."""
    return "/".join(["custom", config, model, *parts])


class ResultsStore:
    """Reads and writes one output location.

    Args:
        location: A local folder or a pyarrow filesystem URI (s3://, gs://, hdfs://, file://).
    """

    def __init__(self, location: str):
        self.location = location.rstrip("/") or "/"
        if "://" in location:
            self.fs, self.root = pafs.FileSystem.from_uri(location)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), location
        self.root = self.root.rstrip("/") or "/"

    def path(self, task_id: str, *parts: str) -> str:
        """Filesystem path (for `self.fs`) of something in a task's folder."""
        return join_uri(self.root, task_id, *parts)

    def uri(self, task_id: str, *parts: str) -> str:
        """The same as `path`, as the location users gave (URI kept)."""
        return join_uri(self.location, task_id, *parts)

    def results_path(self, task_id: str) -> str:
        """Folder holding a task's Parquet results."""
        return self.path(task_id, "results")

    def write_json(self, task_id: str, name: str, data: Any) -> None:
        """Write a JSON document into the task's folder, replacing it atomically where the filesystem can."""
        final = self.path(task_id, name)
        folder, base = final.rsplit("/", 1)  # `name` may hold folders ("custom/cfg/model/outcome.json")
        self.fs.create_dir(folder, recursive=True)
        tmp = f"{folder}/.{base}.{uuid.uuid4().hex[:8]}.tmp"
        with self.fs.open_output_stream(tmp) as f:
            f.write(json.dumps(data, indent=2, ensure_ascii=False, default=str).encode("utf-8"))
        try:
            self.fs.move(tmp, final)
        except (OSError, NotImplementedError, pa.ArrowNotImplementedError):
            with self.fs.open_output_stream(final) as f:
                f.write(json.dumps(data, indent=2, ensure_ascii=False, default=str).encode("utf-8"))
            self.fs.delete_file(tmp)

    def read_json(self, task_id: str, name: str) -> Any | None:
        """Read a JSON document from the task's folder; None when it does not exist."""
        p = self.path(task_id, name)
        if self.fs.get_file_info(p).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(p) as f:
            return json.loads(f.read().decode("utf-8"))

    def task_ids(self) -> list[str]:
        """Every task folder under the location."""
        if self.fs.get_file_info(self.root).type != pafs.FileType.Directory:
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.root))
        return sorted(
            i.base_name
            for i in infos
            if i.type == pafs.FileType.Directory
            and self.fs.get_file_info(self.path(i.base_name, "task.json")).type == pafs.FileType.File
        )

    def has_results(self, task_id: str) -> bool:
        """True when the task has committed at least one results file (files being written are `_tmp-*`)."""
        root = self.results_path(task_id)
        if self.fs.get_file_info(root).type != pafs.FileType.Directory:
            return False
        infos = self.fs.get_file_info(pafs.FileSelector(root, recursive=True))
        return any(
            i.type == pafs.FileType.File and i.base_name.endswith(".parquet") and not i.base_name.startswith(("_", "."))
            for i in infos
        )

    def sealed(self, task_id: str) -> dict[str, int]:
        """The task's sealed run epochs -> result files each was allowed to commit (rayeval.store.fence)."""
        try:
            record = self.read_json(task_id, "task.json") or {}
        except (OSError, ValueError):
            return {}
        return dict(record.get("sealed") or {})

    def results_dataset(self, task_id: str) -> pads.Dataset:
        """The task's results as a lazily read pyarrow dataset (model and eval_set are string columns);
        files a run committed after it lost its lease are not part of it (rayeval.store.fence)."""
        root = self.results_path(task_id)
        dataset = pads.dataset(root, format="parquet", filesystem=self.fs, partitioning=PARTITIONING)
        sealed = self.sealed(task_id)
        files = [f for f in dataset.files if not fenced_out(f.rsplit("/", 1)[-1], sealed)]
        if len(files) == len(dataset.files):
            return dataset
        return pads.dataset(
            files, format="parquet", filesystem=self.fs, partitioning=PARTITIONING, partition_base_dir=root
        )

    def fenced_files(self, task_id: str) -> list[str]:
        """Paths of result files that runs committed after they lost the task's lease (to delete)."""
        sealed = self.sealed(task_id)
        if not sealed or not self.has_results(task_id):
            return []
        root = self.results_path(task_id)
        infos = self.fs.get_file_info(pafs.FileSelector(root, recursive=True))
        return [i.path for i in infos if i.type == pafs.FileType.File and fenced_out(i.base_name, sealed)]

    def result_files(self, task_id: str, partition: tuple[str, str] | None = None) -> list[str]:
        """Paths (on `self.fs`) of the task's committed result files, of one (model, eval_set) if given."""
        if not self.has_results(task_id):
            return []
        return [f.path for f in self._fragments(task_id, partition)]

    def _fragments(self, task_id: str, partition: tuple[str, str] | None) -> list[Any]:
        fragments = list(self.results_dataset(task_id).get_fragments())
        if partition is None:
            return fragments
        model, eval_set = partition
        return [
            f
            for f in fragments
            if pads.get_partition_keys(f.partition_expression) == {"model": model, "eval_set": eval_set}
        ]

    def iter_results(
        self, task_id: str, columns: list[str] | None = None, *, partition: tuple[str, str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Stream the task's result rows in batches, reading only `columns` (of one (model, eval_set) if given).

        Files are opened one at a time and let go: a dataset scan would keep every file's
        metadata (memory growing with the number of files) and, threaded, read ahead of a slow
        consumer without bound.
        """
        if not self.has_results(task_id):
            return
        partition_names = set(PARTITIONING.schema.names)
        wanted = columns
        for fragment in self._fragments(task_id, partition):
            keys = pads.get_partition_keys(fragment.partition_expression)
            file_columns = None if wanted is None else [c for c in wanted if c not in partition_names]
            with self.fs.open_input_file(fragment.path) as f:
                reader = pq.ParquetFile(f)
                names = [c for c in (file_columns or reader.schema_arrow.names) if c in reader.schema_arrow.names]
                for batch in reader.iter_batches(batch_size=8192, columns=names):
                    yield _with_partition_columns(batch, keys, wanted)

    def pairwise_path(self, task_id: str, name: str, model: str, eval_set: str) -> str:
        """Path of one pairwise metric's per-item verdicts for a model and set."""
        return self.path(task_id, "pairwise", name, f"model={model}", f"eval_set={eval_set}", "part-0.parquet")

    def write_pairwise(self, task_id: str, name: str, model: str, eval_set: str, table: pa.Table) -> None:
        """Store one pairwise metric's verdicts for a model and set (replacing what was there)."""
        path = self.pairwise_path(task_id, name, model, eval_set)
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        pq.write_table(table, path, filesystem=self.fs)

    def read_pairwise(self, task_id: str, name: str, model: str, eval_set: str) -> pa.Table | None:
        """The stored per-item rows of one pairwise metric, model and set (None: not judged)."""
        path = self.pairwise_path(task_id, name, model, eval_set)
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        return pq.read_table(path, filesystem=self.fs)

    def delete_task(self, task_id: str) -> None:
        """Remove a task's folder."""
        self.fs.delete_dir(self.path(task_id))


def _with_partition_columns(batch: pa.RecordBatch, keys: dict[str, Any], wanted: list[str] | None) -> pa.RecordBatch:
    """A file's batch with the partition values (model, eval_set) as columns, in `wanted` order."""
    columns = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
    for name in PARTITIONING.schema.names:
        if wanted is None or name in wanted:
            columns[name] = pa.array([keys.get(name)] * batch.num_rows, pa.string())
    order = wanted if wanted is not None else [*PARTITIONING.schema.names, *batch.schema.names]
    order = list(dict.fromkeys(c for c in order if c in columns))
    return pa.RecordBatch.from_arrays([columns[c] for c in order], names=order)
