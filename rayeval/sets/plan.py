"""Planning a task's evaluation sets: find their files, check them, and cut them into shards.

Nothing is loaded here: a JSONL file is scanned for its line boundaries and required columns, other
formats for their schema and row count. What `rayeval.sets.read` then reads, one Ray Data task per
shard, is decided here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs

from rayeval.errors import DatasetError
from rayeval.sets.ids import IdCheck, text_value
from rayeval.spec import ColumnMapping, EvaluationSetSpec, TaskSpec

if TYPE_CHECKING:
    pass

__all__ = ["FORMATS", "READ_CONCURRENCY", "SetPlan", "Shard", "SourcePlan", "filesystem", "plan_sets", "shard_rows"]

FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_CHUNK = 1 << 20
_SHARD_UNIT = 64
#: Read tasks of one source running at once: reading is cheap next to inference, and every extra
#: task slot costs a worker process (start-up CPU that stalls the first seconds of a run).
READ_CONCURRENCY = 2


@dataclass(frozen=True)
class Shard:
    """A piece of one file read by one Ray Data task: a byte range of a JSONL file, or a whole file.

    Attributes:
        path: Local path or URI of the file.
        fmt: 'jsonl', 'json', 'csv' or 'parquet'.
        start: First byte (JSONL only; 0 otherwise).
        end: Byte after the last (JSONL only; -1 means the whole file).
        rows: Rows in the shard.
        columns: Columns of the file (keys of its first row, its header or its schema).
        take: Read only the shard's first rows (the set's `limit` ends in this shard).
        first_line: Line number of its first byte (JSONL; what `generate_ids` numbers rows by).
    """

    path: str
    fmt: str
    start: int
    end: int
    rows: int
    columns: tuple[str, ...] = ()
    take: int | None = None
    first_line: int = 1


@dataclass(frozen=True)
class SourcePlan:
    """The shards that make up one evaluation set for one model (or for all models).

    Attributes:
        shards: The set's files cut into shards, in file order.
        prediction_column: Column holding the prediction (Evaluation Only), else None.
        rows: Number of rows in the files.
    """

    shards: tuple[Shard, ...]
    prediction_column: str | None
    rows: int

    def columns(self) -> set[str]:
        """Columns every file of the source has."""
        sets = [set(sh.columns) for sh in self.shards]
        return set.intersection(*sets) if sets else set()


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


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path


def _list_files(path: str, *, set_name: str, field: str) -> list[tuple[str, str]]:
    fs, p = filesystem(path)
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


def _scan_jsonl(path: str, required: list[str], *, field: str, ids: IdCheck) -> list[Shard]:
    """Stream a JSONL file once: UTF-8, one JSON object per line, required keys present.

    Returns byte-range shards of `_SHARD_UNIT` rows (merged to the final shard size later).
    UTF-8 never encodes a newline byte inside a character, so cutting at b"\\n" is safe.
    """
    fs, p = filesystem(path)
    shards: list[Shard] = []
    columns: tuple[str, ...] = ()
    offset, line_no, unit_start, unit_line, unit_rows, buf, eof = 0, 0, 0, 1, 0, b"", False
    with fs.open_input_stream(p) as f:
        while not eof:
            chunk = f.read(_CHUNK)
            eof = not chunk
            lines = (buf + chunk).split(b"\n")
            buf = b"" if eof else lines.pop()
            for raw in lines:
                start, offset, line_no = offset, offset + len(raw) + 1, line_no + 1
                if not raw.strip():
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DatasetError(
                        f"file '{path}' line {line_no} is not UTF-8 (bad byte at offset {start + e.start}); "
                        "re-encode the file as UTF-8",
                        field=field,
                    ) from None
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as e:
                    raise DatasetError(f"file '{path}' line {line_no}: invalid JSON ({e.msg})", field=field) from None
                _check_row(row, required, path=path, where=f"line {line_no}", field=field)
                ids.add_row(row, path, f"line {line_no}", line_no)
                columns = columns or tuple(row)
                if unit_rows == 0:
                    unit_start, unit_line = start, line_no
                unit_rows += 1
                if unit_rows == _SHARD_UNIT:
                    shards.append(Shard(path, "jsonl", unit_start, offset, unit_rows, first_line=unit_line))
                    unit_rows = 0
    if unit_rows:
        shards.append(Shard(path, "jsonl", unit_start, offset, unit_rows, first_line=unit_line))
    return [dataclasses.replace(sh, columns=columns) for sh in shards]


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


def _scan_file(path: str, fmt: str, required: list[str], *, field: str, ids: IdCheck) -> list[Shard]:
    """Check that a file can be read and holds the required columns (its ids go to `ids`); return its shards."""
    if fmt == "jsonl":
        return _scan_jsonl(path, required, field=field, ids=ids)
    fs, p = filesystem(path)
    if fmt == "json":
        with fs.open_input_stream(p) as f:
            raw = f.read()
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise DatasetError(f"file '{path}' is not UTF-8 (bad byte at offset {e.start})", field=field) from None
        except json.JSONDecodeError:
            return _scan_jsonl(path, required, field=field, ids=ids)  # JSON Lines named .json
        rows = data if isinstance(data, list) else [data]
        for i, row in enumerate(rows):
            _check_row(row, required, path=path, where=f"item {i}", field=field)
            ids.add_row(row, path, f"item {i}", i)
        return [Shard(path, "json", 0, -1, len(rows), tuple(rows[0]) if rows else ())]
    if ids.generate:
        raise DatasetError(f"file '{path}': generate_ids works for JSONL and JSON files, not {fmt}", field=field)
    if fmt == "csv":
        import pyarrow.csv as pacsv

        types = {ids.id_column: pa.string()} if ids.id_column else {}  # as the reader reads it: "007" stays
        try:
            with fs.open_input_stream(p) as f:
                options = pacsv.ConvertOptions(check_utf8=True, column_types=types)
                reader = pacsv.open_csv(f, convert_options=options)
                _check_row(dict.fromkeys(reader.schema.names), required, path=path, where="header", field=field)
                names = tuple(reader.schema.names)
                rows = 0
                for batch in reader:
                    if ids.id_column:
                        _add_column(ids, batch.column(ids.id_column).to_pylist(), path, rows, first_line=2)
                    rows += batch.num_rows
                return [Shard(path, "csv", 0, -1, rows, names)]
        except pa.ArrowInvalid as e:
            raise DatasetError(f"file '{path}' cannot be read as UTF-8 CSV: {e}", field=field) from None
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(p, filesystem=fs).metadata
    except (pa.ArrowInvalid, OSError) as e:
        raise DatasetError(f"file '{path}' is not a readable Parquet file: {e}", field=field) from None
    _check_row(dict.fromkeys(meta.schema.names), required, path=path, where="schema", field=field)
    if ids.id_column:
        column = pq.read_table(p, filesystem=fs, columns=[ids.id_column]).column(0).to_pylist()
        _add_column(ids, column, path, 0, first_line=1)
    return [Shard(path, "parquet", 0, -1, meta.num_rows, tuple(meta.schema.names))]


def _add_column(ids: IdCheck, values: list[Any], path: str, before: int, *, first_line: int) -> None:
    """Ids of a CSV or Parquet file's rows (`before` rows came earlier; rows without one are left to the
    reader, which makes their id from their content)."""
    unit = "line" if first_line == 2 else "row"
    for i, value in enumerate(values):
        if value is not None:
            ids.add(text_value(value), path, f"{unit} {before + i + first_line}")


#: Most rows per shard. A fixed size (not one that grows with the set) keeps the memory of every
#: stage the same for any set of more than a few thousand rows.
MAX_SHARD_ROWS = 1024


def shard_rows(total: int) -> int:
    """Rows per shard: small sets are cut so that every read task has work, bigger ones in MAX_SHARD_ROWS."""
    per_task = total // (4 * READ_CONCURRENCY) // _SHARD_UNIT * _SHARD_UNIT
    return max(_SHARD_UNIT, min(MAX_SHARD_ROWS, per_task))


def _merge(shards: list[Shard], target: int) -> list[Shard]:
    """Merge consecutive JSONL units of one file into shards of about `target` rows."""
    out: list[Shard] = []
    for sh in shards:
        last = out[-1] if out else None
        if last and sh.fmt == "jsonl" and last.fmt == "jsonl" and last.path == sh.path and last.rows < target:
            out[-1] = dataclasses.replace(last, end=sh.end, rows=last.rows + sh.rows)
        else:
            out.append(sh)
    return out


def _plan_source(
    paths: list[str],
    required: list[str],
    prediction_column: str | None,
    *,
    set_name: str,
    field: str,
    id_column: str | None,
    generate_ids: bool = False,
) -> SourcePlan:
    files: list[tuple[str, str]] = []
    for path in paths:
        files.extend(_list_files(path, set_name=set_name, field=field))
    ids = IdCheck(set_name, id_column, field, generate=generate_ids)
    units = [sh for f, fmt in files for sh in _scan_file(f, fmt, required, field=field, ids=ids)]
    rows = sum(sh.rows for sh in units)
    if rows == 0:
        raise DatasetError(f"set '{set_name}' has no rows in {', '.join(paths)}", field=field)
    ids.check()
    return SourcePlan(shards=tuple(_merge(units, shard_rows(rows))), prediction_column=prediction_column, rows=rows)


def _builtin_as_file(s: EvaluationSetSpec, output: str, *, field: str) -> EvaluationSetSpec:
    """A built-in set as the normalised JSONL file it is read from (made once per source).

    The file goes beside the task's results when they are on a local (shared) filesystem, so every
    node of the cluster reads the same one; else under $RAYEVAL_HOME.
    """
    from rayeval.sets.builtin import materialize

    cache = None if "://" in output else Path(output) / ".datasets"
    assert s.builtin is not None
    path = materialize(s.builtin, s.path if isinstance(s.path, str) else None, s.shots, field=field, cache=cache)
    from rayeval.sets.builtin import get_builtin_set

    columns = ColumnMapping(
        id="id",
        query=get_builtin_set(s.builtin).context_column if s.loglikelihood else "query",
        reference="reference",
        system=s.system_column,
        prediction=s.columns.prediction,
    )
    return s.model_copy(update={"path": str(path), "columns": columns})


def plan_sets(spec: TaskSpec) -> list[SetPlan]:
    """Find and check every evaluation set's files, without loading them.

    Raises:
        DatasetError: a path is missing, a folder is empty, a file is not UTF-8 or lacks a column.
    """
    plans = []
    for i, s in enumerate(spec.evaluation_sets):
        if s.builtin is not None:
            s = _builtin_as_file(s, spec.output, field=f"evaluation_sets.{i}.path")
        base_cols = [c for c in (s.columns.id, s.columns.query, s.columns.reference, s.columns.system) if c]
        shared = None
        if s.path is not None:
            required = base_cols + sorted(set(s.predictions.values()))
            shared = _plan_source(
                s.paths(),
                required,
                None,
                set_name=s.name,
                field=f"evaluation_sets.{i}.path",
                id_column=s.columns.id,
                generate_ids=s.generate_ids,
            )
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
                    id_column=s.columns.id,
                )
            elif model in s.predictions and shared is not None:
                per_model[model] = SourcePlan(shared.shards, s.predictions[model], shared.rows)
        plans.append(SetPlan(spec=s, shared=shared, per_model=per_model))
    return plans
