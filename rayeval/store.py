"""The results store: per-task folders on any pyarrow filesystem (a local path or a URI).

Layout under the output location::

    {task_id}/spec.json          the task spec, secrets redacted
    {task_id}/task.json          the coordinator's record: state and progress
    {task_id}/results/model=M/eval_set=S/*.parquet   one row per item and model
    {task_id}/summary.json       the summary, written when the task ends
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

__all__ = ["ResultsStore", "join_uri"]

PARTITIONING = pads.partitioning(pa.schema([("model", pa.string()), ("eval_set", pa.string())]), flavor="hive")


def join_uri(base: str, *parts: str) -> str:
    """Join path components onto a local path or URI."""
    return "/".join([base.rstrip("/"), *parts])


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
        self.fs.create_dir(self.path(task_id), recursive=True)
        final = self.path(task_id, name)
        tmp = self.path(task_id, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
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
        """True when the task already wrote result rows."""
        return self.fs.get_file_info(self.results_path(task_id)).type == pafs.FileType.Directory

    def results_dataset(self, task_id: str) -> pads.Dataset:
        """The task's results as a lazily read pyarrow dataset (model and eval_set are string columns)."""
        return pads.dataset(self.results_path(task_id), format="parquet", filesystem=self.fs, partitioning=PARTITIONING)

    def iter_results(self, task_id: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Stream the task's result rows in batches, reading only `columns`."""
        if not self.has_results(task_id):
            return iter(())
        dataset = self.results_dataset(task_id)
        if columns is not None:
            columns = [c for c in columns if c in dataset.schema.names]
        return dataset.to_batches(columns=columns, batch_size=8192)

    def delete_task(self, task_id: str) -> None:
        """Remove a task's folder."""
        self.fs.delete_dir(self.path(task_id))
