"""Item ids: how a row's id is made, and the check that no id repeats within a set.

Results, restarts and reuse all key on the item id, so two rows with one id would make one of them
disappear (or be stored twice). The check runs while a set's files are scanned (rayeval.sets.plan):
8 bytes of hash and a row number per item, the repeated ones named with their lines in the error.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from rayeval.errors import DatasetError

__all__ = ["IdCheck", "generated_id", "item_id", "row_id", "text_value"]

#: Repeated ids named in the error.
_SHOWN = 3


def text_value(value: Any) -> str | None:
    """A cell as text (lists and dicts as JSON), as the set's columns are read."""
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


def item_id(row: dict[str, Any], id_column: str | None) -> str:
    """The item id of a row: its id column as text, else a hash of its content."""
    given = row.get(id_column) if id_column else None
    return text_value(given) if given is not None else row_id(row)


def generated_id(path: str, where: int) -> str:
    """The id `generate_ids` gives the row at line `where` of a JSONL file (or index, in a JSON array)."""
    return f"{path.rsplit('/', 1)[-1]}:{where}"


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


class IdCheck:
    """Collects the item ids of one set's files as they are scanned; `check()` raises on a repeat.

    Args:
        set_name: The set (for the error).
        id_column: Its id column (None: ids are hashes of the rows' content).
        field: The spec field to name in the error.
        generate: The set numbers its rows (`generate_ids`): ids are FILE:LINE.
    """

    def __init__(self, set_name: str, id_column: str | None, field: str, *, generate: bool = False):
        self.set_name, self.id_column, self.field, self.generate = set_name, id_column, field, generate
        self._hashes: list[int] = []
        self._places: list[tuple[str, str]] = []  # (file, "line N" / "row N") of each id, in order
        self._texts: dict[int, str] = {}  # hash -> id, kept for the ids shown in the error only

    def add(self, text: str, path: str, where: str) -> None:
        """One row's id, and where the row is."""
        self._hashes.append(_hash(text))
        self._places.append((path, where))
        if len(self._texts) < 100_000:  # the texts of the first ids (repeats of later ones show as hashes)
            self._texts.setdefault(self._hashes[-1], text)

    def add_row(self, row: dict[str, Any], path: str, where: str, place: int) -> None:
        """A row's id (its line or index `place`, for generated ids) and where it is."""
        self.add(generated_id(path, place) if self.generate else item_id(row, self.id_column), path, where)

    def check(self) -> None:
        """Raises DatasetError naming the first repeated ids and where they are."""
        if len(self._hashes) < 2:
            return
        hashes = np.asarray(self._hashes, dtype=np.uint64)
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        repeated = np.nonzero(ordered[1:] == ordered[:-1])[0]
        if not len(repeated):
            return
        groups: dict[int, list[int]] = {}
        for i in repeated:
            h = int(ordered[i])
            groups.setdefault(h, [int(order[i])]).append(int(order[i + 1]))
        first = sorted(groups.items(), key=lambda kv: kv[1][0])[:_SHOWN]
        shown = "; ".join(self._describe(h, rows) for h, rows in first)
        more = f" (and {len(groups) - _SHOWN} more)" if len(groups) > _SHOWN else ""
        how = (
            f"make the `{self.id_column}` column unique"
            if self.id_column
            else "the rows are identical and ids are made from the content: give the set an id column (columns.id), "
            "or `generate_ids: true` to number the rows"
        )
        raise DatasetError(
            f"set '{self.set_name}' repeats item ids, on which results, restarts and reuse rely: {shown}{more}; {how}",
            field=self.field,
        )

    def _describe(self, h: int, rows: list[int]) -> str:
        places = [self._places[r] for r in sorted(set(rows))]
        files = {p for p, _ in places}
        where = ", ".join(w if len(files) == 1 else f"{p} {w}" for p, w in places[:4])
        text = self._texts.get(h, f"(hash {h:016x})")
        return f"'{text}' at {where}" + (f" of {places[0][0]}" if len(files) == 1 else "")
