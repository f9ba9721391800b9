"""The server location: one folder (local, or a pyarrow filesystem URI) holding the server's own files.

Layout::

    tokens/{token_id}.json    one API token's record: name, tags, admin, dates, the hash of its secret
    audit/{time}-{uuid}.json  one state-changing call, a file each (appended by creation, never rewritten)

One file per record keeps every write atomic and needs no append, which object stores do not have; several
server replicas and the command line may write at the same time. Built on the results store's reader and
atomic writer (`rayeval.store.results.ResultsStore`): a folder of the location plays the part of a task folder.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow.fs as pafs

from rayeval.paths import server_dir
from rayeval.store.results import ResultsStore

__all__ = ["ServerStore"]


class ServerStore:
    """JSON documents in named folders of the server location.

    Args:
        location: A local folder or a pyarrow filesystem URI (default: `$RAYEVAL_HOME/server`).
    """

    def __init__(self, location: str | None = None):
        self.location = location or str(server_dir())
        self._store = ResultsStore(self.location)

    def __repr__(self) -> str:
        return f"ServerStore({self.location!r})"

    @property
    def local(self) -> bool:
        """Whether the location is a folder of this machine."""
        return isinstance(self._store.fs, pafs.LocalFileSystem)

    def _ensure(self, folder: str) -> None:
        path = self._store.path(folder)
        self._store.fs.create_dir(path, recursive=True)
        if self.local:  # hashes only, but nobody else's business: owner-only folders where the filesystem has modes
            for p in (self._store.root, path):
                try:
                    os.chmod(p, 0o700)
                except OSError:
                    pass

    def write(self, folder: str, name: str, data: Any) -> None:
        """Write (or replace, atomically where the filesystem can) `folder/name`."""
        self._ensure(folder)
        self._store.write_json(folder, name, data)

    def read(self, folder: str, name: str) -> Any | None:
        """The document `folder/name`, or None when there is none."""
        return self._store.read_json(folder, name)

    def names(self, folder: str) -> list[str]:
        """The names of the JSON documents in `folder`, sorted (files being written are left out)."""
        selector = pafs.FileSelector(self._store.path(folder), allow_not_found=True)
        infos = self._store.fs.get_file_info(selector)
        return sorted(
            i.base_name
            for i in infos
            if i.type == pafs.FileType.File and i.base_name.endswith(".json") and not i.base_name.startswith(".")
        )
