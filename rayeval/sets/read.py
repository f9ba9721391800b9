"""Reading evaluation sets lazily with Ray Data: every item leaves here with the same columns
(`ITEM_SCHEMA`): a stable id, the set's name, the query, the reference and, in Evaluation Only mode,
the prediction (with the inference columns of that model).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rayeval.schema import INFERENCE_FIELDS, ITEM_SCHEMA, with_inference_columns
from rayeval.sets.ids import generated_id, item_id, row_id
from rayeval.sets.ids import text_value as _text
from rayeval.sets.plan import READ_CONCURRENCY, SetPlan, Shard, SourcePlan, filesystem
from rayeval.spec import EvaluationSetSpec

if TYPE_CHECKING:
    import ray.data

__all__ = ["head_items", "read_items", "row_id"]


class _Normalizer:
    """Turns raw rows of one source into ITEM_SCHEMA rows. Picklable; runs in Ray Data tasks.

    Columns the mapping does not name go into `fields` (JSON), except the prediction columns of
    the set's models. A prediction given as a list of strings is several samples of the item.
    """

    def __init__(self, set_spec: EvaluationSetSpec, prediction_column: str | None, scored_as: str | None = None):
        self.scored_as = scored_as
        self.generate_ids = set_spec.generate_ids
        self.set_name = set_spec.name
        self.cols = set_spec.columns
        self.prediction_column = prediction_column
        c = set_spec.columns
        self.mapped = {x for x in (c.id, c.query, c.reference) if x} | set(set_spec.predictions.values())
        if set_spec.prediction_files:
            self.mapped.add(c.prediction)

    @property
    def schema(self) -> pa.Schema:
        """The columns of the tables this normaliser makes."""
        return ITEM_SCHEMA if self.scored_as is None else pa.schema([*ITEM_SCHEMA, *INFERENCE_FIELDS])

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.rows_to_table(batch.to_pylist())

    def rows_to_table(self, rows: list[dict[str, Any]], ids: list[str] | None = None) -> pa.Table:
        """ITEM_SCHEMA rows (`ids`: the rows' generated ids, for a set with `generate_ids`)."""
        c = self.cols
        out: dict[str, list[Any]] = {name: [] for name in ITEM_SCHEMA.names}
        for i, row in enumerate(rows):
            out["item_id"].append(ids[i] if ids is not None else item_id(row, c.id))
            out["eval_set"].append(self.set_name)
            out["query"].append(_text(row.get(c.query)))
            out["reference"].append(_text(row.get(c.reference)) if c.reference else None)
            prediction = row.get(self.prediction_column) if self.prediction_column else None
            samples = None
            if isinstance(prediction, list) and prediction and all(isinstance(p, str) for p in prediction):
                samples, prediction = prediction, prediction[0]
            out["prediction"].append(_text(prediction))
            out["samples"].append(samples)
            extra = {k: v for k, v in row.items() if k not in self.mapped}
            out["fields"].append(json.dumps(extra, ensure_ascii=False, default=str) if extra else None)
        table = pa.table(out, schema=ITEM_SCHEMA)
        if self.scored_as is None:
            return table
        # Evaluation Only: the prediction is in the row; the inference columns say so (no attempts).
        missing = [None if p is not None else "no prediction in the set for this item" for p in out["prediction"]]
        return with_inference_columns(table, self.scored_as, {"error": missing, "attempts": [0] * len(missing)})


def _csv_options(set_plan: SetPlan, source: SourcePlan) -> Any:
    """CSV columns the mapping names are read as text (an id column of digits stays "007")."""
    import pyarrow.csv as pacsv

    c = set_plan.spec.columns
    known = [x for x in (c.id, c.query, c.reference, source.prediction_column) if x]
    return pacsv.ConvertOptions(column_types=dict.fromkeys(known, pa.string()))


def read_items(set_plan: SetPlan, model: str | None) -> ray.data.Dataset:
    """A lazy Ray Data dataset of the set's items (for `model`'s predictions in Evaluation Only mode).

    With a `model` (Evaluation Only), the rows leave the read tasks ready to score: with the
    inference columns of that model, an item without a prediction carrying its error.

    JSONL files are read shard by shard (byte ranges found when the set was checked), one Ray
    Data task per shard, and parsed in the stream so mixed-type columns never break the schema;
    CSV and Parquet files go through Ray Data's readers. Everything ends in ITEM_SCHEMA.
    """
    import ray.data

    source = set_plan.source_for(model) if model else set_plan.shared
    assert source is not None
    norm = _Normalizer(set_plan.spec, source.prediction_column, model)
    parts = []
    limit = set_plan.spec.limit
    if limit and all(sh.fmt in ("jsonl", "json") for sh in source.shards):
        # The first `limit` rows in file order, whichever read task ends first: whole shards, then part
        # of the last one (Dataset.limit would keep the first rows to arrive).
        shards, left = [], limit
        for sh in source.shards:
            if left <= 0:
                break
            shards.append(sh if sh.rows <= left else dataclasses.replace(sh, rows=left, take=left))
            left -= sh.rows
        limit = None
    else:
        shards = [sh for sh in source.shards if sh.fmt in ("jsonl", "json")]
    if shards:
        parts.append(
            ray.data.read_datasource(_ShardDatasource(shards, norm), num_cpus=0.25, concurrency=READ_CONCURRENCY)
        )
    for fmt in ("csv", "parquet"):
        paths = [sh.path for sh in source.shards if sh.fmt == fmt]
        if not paths:
            continue
        fs = filesystem(paths[0])[0]
        local = [filesystem(p)[1] for p in paths]
        if fmt == "csv":
            ds = ray.data.read_csv(
                local,
                filesystem=fs,
                num_cpus=0.25,
                convert_options=_csv_options(set_plan, source),
                concurrency=READ_CONCURRENCY,
            )
        else:
            ds = ray.data.read_parquet(local, filesystem=fs, num_cpus=0.25, concurrency=READ_CONCURRENCY)
        parts.append(
            ds.map_batches(norm, batch_format="pyarrow", batch_size=1024, num_cpus=0.25, concurrency=READ_CONCURRENCY)
        )
    ds = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
    if limit:  # CSV and Parquet files: the first rows read
        ds = ds.limit(limit)
    return ds


def _read_shard(shard: Shard, normalizer: _Normalizer) -> pa.Table:
    """Read one JSONL byte range (or one whole .json file) and normalise its rows."""
    fs, p = filesystem(shard.path)
    if shard.fmt == "json" and shard.end < 0:
        with fs.open_input_stream(p) as f:
            data = json.loads(f.read().decode("utf-8"))
        rows = data if isinstance(data, list) else [data]
        rows = rows[: shard.take] if shard.take is not None else rows
        ids = [generated_id(shard.path, i) for i in range(len(rows))] if normalizer.generate_ids else None
        return normalizer.rows_to_table(rows, ids)
    with fs.open_input_file(p) as f:
        f.seek(shard.start)
        raw = f.read(shard.end - shard.start)
    numbered = [(shard.first_line + i, line) for i, line in enumerate(raw.decode("utf-8").split("\n")) if line.strip()]
    if shard.take is not None:
        numbered = numbered[: shard.take]
    ids = [generated_id(shard.path, n) for n, _ in numbered] if normalizer.generate_ids else None
    return normalizer.rows_to_table([json.loads(line) for _, line in numbered], ids)


def head_items(set_plan: SetPlan, model: str | None, n: int) -> list[dict[str, Any]]:
    """The set's first `n` items, read here in file order without Ray (for debugging metrics)."""
    source = set_plan.source_for(model) if model else set_plan.shared
    assert source is not None
    norm = _Normalizer(set_plan.spec, source.prediction_column)
    items: list[dict[str, Any]] = []
    for sh in source.shards:
        if len(items) >= n:
            break
        if sh.fmt in ("jsonl", "json"):
            table = _read_shard(sh, norm)
        else:
            fs, p = filesystem(sh.path)
            if sh.fmt == "csv":
                import pyarrow.csv as pacsv

                with fs.open_input_stream(p) as f:
                    raw = pacsv.read_csv(f, convert_options=_csv_options(set_plan, source))
            else:
                import pyarrow.parquet as pq

                first = next(pq.ParquetFile(p, filesystem=fs).iter_batches(batch_size=n - len(items)))
                raw = pa.Table.from_batches([first])
            table = norm(raw.slice(0, n - len(items)))
        items.extend(table.slice(0, n - len(items)).to_pylist())
    return items


def _read_one(shard: Shard, normalizer: _Normalizer) -> list[pa.Table]:
    """A read task's body: the one block of its shard."""
    return [_read_shard(shard, normalizer)]


def _datasource_base():
    from ray.data import Datasource

    return Datasource


class _ShardDatasource(_datasource_base()):
    """A Ray Data datasource with one read task per shard, each declaring its true row count."""

    def __init__(self, shards: list[Shard], normalizer: _Normalizer):
        self.shards = shards
        self.normalizer = normalizer

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(max(sh.end - sh.start, 0) for sh in self.shards) or None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context=None):
        from ray.data import ReadTask
        from ray.data.block import BlockMetadata

        tasks = []
        for sh in self.shards:
            meta = BlockMetadata(
                num_rows=sh.rows, size_bytes=max(sh.end - sh.start, 0) or None, exec_stats=None, input_files=(sh.path,)
            )
            tasks.append(
                ReadTask(
                    # Bind only this shard and the normaliser: a closure over `self` would ship every
                    # shard of the set with every read task (memory and time quadratic in the set's size).
                    functools.partial(_read_one, sh, self.normalizer),
                    meta,
                    schema=self.normalizer.schema,
                    per_task_row_limit=per_task_row_limit,
                )
            )
        return tasks
