"""What a task already has: the items committed to its results, to be skipped when it runs again.

A task run again (after a stop, a crash or a killed driver) keeps its task id and writes new
files beside the old ones; the items whose rows are already committed are filtered out of the
stream before inference, so no item is evaluated or stored twice. With `failed=True`, rows with
an error are taken out of the stored files first (each file replaced as a whole, crash-safely)
and their items run again.

Items are matched by a 64-bit hash of their id, kept in a sorted numpy array per model and set
(8 bytes an item; the only per-item state a run keeps in memory).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from rayeval.store.failures import failed_items
from rayeval.store.results import ResultsStore, join_uri

__all__ = [
    "DoneItems",
    "committed_counts",
    "done_items",
    "drop_failed_rows",
    "id_hashes",
    "recover_replacements",
    "skip_done",
]

OLD_PREFIX = "_old-"
NEW_PREFIX = "_new-"


def id_hashes(ids: list[str | None]) -> np.ndarray:
    """64-bit hashes of item ids (blake2b), as uint64."""
    out = np.empty(len(ids), dtype=np.uint64)
    for i, item_id in enumerate(ids):
        digest = hashlib.blake2b((item_id or "").encode("utf-8"), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little")
    return out


def _contains(done: np.ndarray | None, ids: list[str | None]) -> np.ndarray:
    """A boolean mask: which of `ids` hash into the sorted array `done`."""
    if done is None or not len(done):
        return np.zeros(len(ids), dtype=bool)
    h = id_hashes(ids)
    pos = np.searchsorted(done, h)
    pos[pos == len(done)] = 0
    return done[pos] == h


class DoneItems:
    """Sorted id hashes of the committed items, per (model, eval_set), with their counts."""

    def __init__(self) -> None:
        self.hashes: dict[tuple[str, str], np.ndarray] = {}
        self.counts: dict[tuple[str, str], dict[str, int]] = {}

    def contains(self, key: tuple[str, str], ids: list[str | None]) -> np.ndarray:
        """A boolean mask: which of `ids` are done for (model, eval_set)."""
        return _contains(self.hashes.get(key), ids)

    def for_model(self, model: str) -> dict[str, np.ndarray]:
        """eval_set -> sorted id hashes of `model`'s committed items (what `skip_done` takes)."""
        return {s: h for (m, s), h in self.hashes.items() if m == model}

    def total(self) -> int:
        return sum(len(h) for h in self.hashes.values())


def done_items(store: ResultsStore, task_id: str) -> DoneItems:
    """Read the task's committed item ids (ids and errors only, file by file)."""
    found: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    done = DoneItems()
    for batch in store.iter_results(task_id, ["model", "eval_set", "item_id", "error", "details"]):
        if not batch.num_rows:
            continue
        key = (batch.column(0)[0].as_py(), batch.column(1)[0].as_py())  # a batch comes from one partition
        found[key].append(id_hashes(batch.column(2).to_pylist()))
        c = done.counts.setdefault(key, {"done": 0, "errors": 0})
        c["done"] += batch.num_rows
        c["errors"] += sum(failed_items(batch))
    for key, parts in found.items():
        done.hashes[key] = np.unique(np.concatenate(parts))
    return done


def committed_counts(store: ResultsStore, task_id: str) -> dict[tuple[str, str], dict[str, int]]:
    """(model, eval_set) -> {"done", "errors"} of the rows committed to the task's results (the truth
    after a crash: what a driver reported last may be behind or ahead of it)."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for batch in store.iter_results(task_id, ["model", "eval_set", "error", "details"]):
        if not batch.num_rows:
            continue
        key = (batch.column(0)[0].as_py(), batch.column(1)[0].as_py())  # a batch comes from one partition
        c = counts.setdefault(key, {"done": 0, "errors": 0})
        c["done"] += batch.num_rows
        c["errors"] += sum(failed_items(batch))
    return counts


def _files(store: ResultsStore, task_id: str) -> list[pafs.FileInfo]:
    root = store.results_path(task_id)
    if store.fs.get_file_info(root).type != pafs.FileType.Directory:
        return []
    return [i for i in store.fs.get_file_info(pafs.FileSelector(root, recursive=True)) if i.type == pafs.FileType.File]


def recover_replacements(store: ResultsStore, task_id: str) -> int:
    """Finish or undo file replacements a crash interrupted (see `drop_failed_rows`); returns how many.

    A replacement is: write `_new-NAME`, rename NAME to `_old-NAME`, rename `_new-NAME` to NAME,
    delete `_old-NAME`. Whatever step it died at, exactly one of the two versions ends up visible.
    """
    fs = store.fs
    infos = _files(store, task_id)
    names = {i.path for i in infos}
    fixed = 0
    for info in infos:
        folder, base = info.path.rsplit("/", 1)
        if base.startswith(OLD_PREFIX):
            final = join_uri(folder, base[len(OLD_PREFIX) :])
            new = join_uri(folder, NEW_PREFIX + base[len(OLD_PREFIX) :])
            if final in names:  # the new version is in place: the old one goes
                fs.delete_file(info.path)
            elif new in names:  # died between the two renames: finish
                fs.move(new, final)
                fs.delete_file(info.path)
            else:  # nothing was kept of that file (no new version was ever written): it goes
                fs.delete_file(info.path)
            fixed += 1
        elif base.startswith(NEW_PREFIX) and join_uri(folder, OLD_PREFIX + base[len(NEW_PREFIX) :]) not in names:
            fs.delete_file(info.path)  # died before the old file was moved aside: the old one stands
            fixed += 1
    return fixed


def drop_failed_rows(store: ResultsStore, task_id: str) -> int:
    """Take rows with an error out of the task's result files (so that their items run again); returns how many."""
    fs = store.fs
    dropped = 0
    for info in _files(store, task_id):
        folder, base = info.path.rsplit("/", 1)
        if base.startswith(("_", ".")) or not base.endswith(".parquet"):
            continue
        with fs.open_input_file(info.path) as f:
            table = pq.read_table(f)
        failed = pc.is_valid(table.column("error"))
        n_failed = pc.sum(failed).as_py() or 0
        if not n_failed:
            continue
        kept = table.filter(pc.invert(failed))
        dropped += n_failed
        old, new = join_uri(folder, OLD_PREFIX + base), join_uri(folder, NEW_PREFIX + base)
        if kept.num_rows:
            pq.write_table(kept, new, filesystem=fs)
        fs.move(info.path, old)
        if kept.num_rows:
            fs.move(new, info.path)
        fs.delete_file(old)
    return dropped


def skip_done(batch: pa.Table, done: dict[str, np.ndarray]) -> pa.Table:
    """Ray Data map function: drop the rows of `batch` whose item is already committed
    (`done`: eval_set -> sorted id hashes, of one model: DoneItems.for_model)."""
    sets = batch.column("eval_set").to_pylist()
    ids = batch.column("item_id").to_pylist()
    keep = np.ones(len(ids), dtype=bool)
    for s in set(sets):
        rows = np.array([i for i, x in enumerate(sets) if x == s])
        keep[rows[_contains(done.get(s), [ids[i] for i in rows])]] = False
    return batch if keep.all() else batch.filter(pa.array(keep))
