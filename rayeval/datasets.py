"""Evaluation-set sources: find the files, check them, and read them lazily with Ray Data.

Every item leaves here with the same columns (`ITEM_SCHEMA`): a stable id, the set's name,
the query, the reference and, in Evaluation Only mode, the prediction.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs

from rayeval.errors import DatasetError
from rayeval.schema import ITEM_SCHEMA
from rayeval.spec import EvaluationSetSpec, TaskSpec

if TYPE_CHECKING:
    import ray.data

__all__ = ["SetPlan", "SourcePlan", "plan_sets", "read_items"]

FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SourcePlan:
    """Files that make up one evaluation set for one model (or for all models).

    Attributes:
        files: (filesystem URI-or-path, format) pairs, sorted.
        prediction_column: Column holding the prediction (Evaluation Only), else None.
        rows: Number of rows in the files.
    """

    files: tuple[tuple[str, str], ...]
    prediction_column: str | None
    rows: int


@dataclass(frozen=True)
class SetPlan:
    """A checked evaluation set: its sources, shared or per model, and its item count."""

    spec: EvaluationSetSpec
    shared: SourcePlan | None
    per_model: dict[str, SourcePlan]

    def source_for(self, model: str) -> SourcePlan:
        """The source holding the set's items for `model`."""
        return self.per_model.get(model) or self.shared  # type: ignore[return-value]

    def entries(self, model: str) -> int:
        """Items this model is evaluated on (after `limit`)."""
        rows = self.source_for(model).rows
        return min(rows, self.spec.limit) if self.spec.limit else rows


def _filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path


def _list_files(path: str, *, set_name: str, field: str) -> list[tuple[str, str]]:
    fs, p = _filesystem(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.NotFound:
        raise DatasetError(f"path '{path}' does not exist; fix the path of set '{set_name}'", field=field)
    if info.type == pafs.FileType.File:
        fmt = _format_of(info.path)
        if fmt is None:
            raise DatasetError(
                f"file '{path}' is not .jsonl, .json, .csv or .parquet; rename it or convert it", field=field
            )
        return [(path, fmt)]
    infos = fs.get_file_info(pafs.FileSelector(p, recursive=True))
    prefix = path[: len(path) - len(p)] if "://" in path else ""
    found = sorted(
        (prefix + i.path, _format_of(i.path))
        for i in infos
        if i.type == pafs.FileType.File and _format_of(i.path) and not i.base_name.startswith((".", "_"))
    )
    if not found:
        raise DatasetError(
            f"folder '{path}' holds no .jsonl, .json, .csv or .parquet file; put set '{set_name}' files there",
            field=field,
        )
    return found  # type: ignore[return-value]


def _format_of(path: str) -> str | None:
    lower = path.lower()
    for ext, fmt in FORMATS.items():
        if lower.endswith(ext):
            return fmt
    return None


def _check_utf8_lines(path: str, required: list[str], *, field: str) -> int:
    """Stream a JSONL file: UTF-8, one JSON object per line, required keys present. Returns rows."""
    fs, p = _filesystem(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    rows, line_no, offset, pending = 0, 0, 0, ""
    with fs.open_input_stream(p) as f:
        while True:
            chunk = f.read(_CHUNK)
            final = not chunk
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as e:
                raise DatasetError(
                    f"file '{path}' is not UTF-8 (bad byte near offset {offset + e.start}); re-encode it as UTF-8",
                    field=field,
                ) from None
            offset += len(chunk)
            lines = (pending + text).split("\n")
            pending = "" if final else lines.pop()
            for line in lines:
                line_no += 1
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DatasetError(f"file '{path}' line {line_no}: invalid JSON ({e.msg})", field=field) from None
                _check_row(row, required, path=path, where=f"line {line_no}", field=field)
                rows += 1
            if final:
                return rows


def _check_row(row: Any, required: list[str], *, path: str, where: str, field: str) -> None:
    if not isinstance(row, dict):
        raise DatasetError(f"file '{path}' {where}: expected a JSON object per row", field=field)
    missing = [c for c in required if c not in row]
    if missing:
        raise DatasetError(
            f"file '{path}' {where}: row has no column {', '.join(repr(c) for c in missing)} "
            f"(it has {', '.join(repr(k) for k in list(row)[:8])}); fix the rows or the `columns` mapping",
            field=field,
        )


def _check_file(path: str, fmt: str, required: list[str], *, field: str) -> int:
    """Check that a file can be read and holds the required columns; return its row count."""
    if fmt == "jsonl":
        return _check_utf8_lines(path, required, field=field)
    fs, p = _filesystem(path)
    if fmt == "json":
        with fs.open_input_stream(p) as f:
            raw = f.read()
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise DatasetError(f"file '{path}' is not UTF-8 (bad byte at offset {e.start})", field=field) from None
        except json.JSONDecodeError:
            return _check_utf8_lines(path, required, field=field)  # JSON Lines named .json
        rows = data if isinstance(data, list) else [data]
        for i, row in enumerate(rows):
            _check_row(row, required, path=path, where=f"item {i}", field=field)
        return len(rows)
    if fmt == "csv":
        import pyarrow.csv as pacsv

        try:
            with fs.open_input_stream(p) as f:
                reader = pacsv.open_csv(f, convert_options=pacsv.ConvertOptions(check_utf8=True))
                _check_row(dict.fromkeys(reader.schema.names), required, path=path, where="header", field=field)
                return sum(batch.num_rows for batch in reader)
        except pa.ArrowInvalid as e:
            raise DatasetError(f"file '{path}' cannot be read as UTF-8 CSV: {e}", field=field) from None
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(p, filesystem=fs).metadata
    except (pa.ArrowInvalid, OSError) as e:
        raise DatasetError(f"file '{path}' is not a readable Parquet file: {e}", field=field) from None
    _check_row(dict.fromkeys(meta.schema.names), required, path=path, where="schema", field=field)
    return meta.num_rows


def _plan_source(
    paths: list[str], required: list[str], prediction_column: str | None, *, set_name: str, field: str
) -> SourcePlan:
    files: list[tuple[str, str]] = []
    for path in paths:
        files.extend(_list_files(path, set_name=set_name, field=field))
    rows = sum(_check_file(f, fmt, required, field=field) for f, fmt in files)
    if rows == 0:
        raise DatasetError(f"set '{set_name}' has no rows in {', '.join(paths)}", field=field)
    return SourcePlan(files=tuple(files), prediction_column=prediction_column, rows=rows)


def plan_sets(spec: TaskSpec) -> list[SetPlan]:
    """Find and check every evaluation set's files, without loading them.

    Raises:
        DatasetError: a path is missing, a folder is empty, a file is not UTF-8 or lacks a column.
    """
    plans = []
    for i, s in enumerate(spec.evaluation_sets):
        base_cols = [c for c in (s.columns.id, s.columns.query, s.columns.reference) if c]
        shared = None
        if s.path is not None:
            required = base_cols + sorted(set(s.predictions.values()))
            shared = _plan_source(s.paths(), required, None, set_name=s.name, field=f"evaluation_sets.{i}.path")
        per_model = {}
        for model in (m.name for m in spec.models):
            if model in s.prediction_files:
                pf = s.prediction_files[model]
                per_model[model] = _plan_source(
                    [pf] if isinstance(pf, str) else list(pf),
                    base_cols + [s.columns.prediction],
                    s.columns.prediction,
                    set_name=s.name,
                    field=f"evaluation_sets.{i}.prediction_files.{model}",
                )
            elif model in s.predictions and shared is not None:
                per_model[model] = SourcePlan(shared.files, s.predictions[model], shared.rows)
        plans.append(SetPlan(spec=s, shared=shared, per_model=per_model))
    return plans


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def row_id(row: dict[str, Any]) -> str:
    """A stable id from a row's content (identical rows share it: give an id column to tell them apart)."""
    blob = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha1(blob).hexdigest()[:16]


class _Normalizer:
    """Turns raw rows of one source into ITEM_SCHEMA rows. Picklable; runs in Ray Data tasks."""

    def __init__(self, set_spec: EvaluationSetSpec, prediction_column: str | None, parse_lines: bool):
        self.set_name = set_spec.name
        self.cols = set_spec.columns
        self.prediction_column = prediction_column
        self.parse_lines = parse_lines

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.parse_lines:
            rows = [json.loads(t) for t in batch.column("text").to_pylist() if t.strip()]
        else:
            rows = batch.to_pylist()
        return self.rows_to_table(rows)

    def rows_to_table(self, rows: list[dict[str, Any]]) -> pa.Table:
        c = self.cols
        out: dict[str, list[Any]] = {name: [] for name in ITEM_SCHEMA.names}
        for row in rows:
            given = row.get(c.id) if c.id else None
            out["item_id"].append(_text(given) if given is not None else row_id(row))
            out["eval_set"].append(self.set_name)
            out["query"].append(_text(row.get(c.query)))
            out["reference"].append(_text(row.get(c.reference)) if c.reference else None)
            out["prediction"].append(_text(row.get(self.prediction_column)) if self.prediction_column else None)
        return pa.table(out, schema=ITEM_SCHEMA)


def _parse_json_file(row: dict[str, Any], normalizer: _Normalizer) -> pa.Table:
    text = row["bytes"].decode("utf-8")
    try:
        data = json.loads(text)
        rows = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return normalizer.rows_to_table(rows)


def read_items(set_plan: SetPlan, model: str | None) -> ray.data.Dataset:
    """A lazy Ray Data dataset of the set's items (for `model`'s predictions in Evaluation Only mode).

    JSONL is read as text lines and parsed in the stream, so mixed-type columns never break the
    schema; CSV and Parquet are read by Ray Data's readers; everything ends in ITEM_SCHEMA.
    """
    import ray.data

    source = set_plan.source_for(model) if model else set_plan.shared
    assert source is not None
    by_format: dict[str, list[str]] = {}
    for path, fmt in source.files:
        by_format.setdefault(fmt, []).append(path)
    parts = []
    for fmt, paths in sorted(by_format.items()):
        fs, _ = _filesystem(paths[0])
        local = [_filesystem(p)[1] for p in paths]
        if fmt == "jsonl":
            norm = _Normalizer(set_plan.spec, source.prediction_column, parse_lines=True)
            ds = ray.data.read_text(local, filesystem=fs, num_cpus=0.25)
            parts.append(ds.map_batches(norm, batch_format="pyarrow", batch_size=1024, num_cpus=0.25))
        elif fmt == "json":
            norm = _Normalizer(set_plan.spec, source.prediction_column, parse_lines=False)
            ds = ray.data.read_binary_files(local, filesystem=fs, num_cpus=0.25)
            parts.append(ds.map_batches(_JsonFiles(norm), batch_format="pyarrow", batch_size=1, num_cpus=0.25))
        else:
            norm = _Normalizer(set_plan.spec, source.prediction_column, parse_lines=False)
            if fmt == "csv":
                import pyarrow.csv as pacsv

                c = set_plan.spec.columns
                known = [x for x in (c.id, c.query, c.reference, source.prediction_column) if x]
                types = pacsv.ConvertOptions(column_types=dict.fromkeys(known, pa.string()))
                ds = ray.data.read_csv(local, filesystem=fs, num_cpus=0.25, convert_options=types)
            else:
                ds = ray.data.read_parquet(local, filesystem=fs, num_cpus=0.25)
            parts.append(ds.map_batches(norm, batch_format="pyarrow", batch_size=1024, num_cpus=0.25))
    ds = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
    if set_plan.spec.limit:
        ds = ds.limit(set_plan.spec.limit)
    return ds


class _JsonFiles:
    """Parses whole .json files (a JSON array, one object, or JSON Lines) into items."""

    def __init__(self, normalizer: _Normalizer):
        self.normalizer = normalizer

    def __call__(self, batch: pa.Table) -> pa.Table:
        tables = [_parse_json_file(row, self.normalizer) for row in batch.to_pylist()]
        return pa.concat_tables(tables) if tables else self.normalizer.rows_to_table([])
