"""Content digests of weight files, computed once per file version.

A hosted checkpoint's identity (rayeval.store.fingerprint) covers its weights' bytes, not only their
names and sizes, so that weights retrained in place are never mistaken for the old ones by reuse.
Hashing gigabytes takes seconds to minutes, so each file's digest is kept in a cache under
$RAYEVAL_HOME, keyed on its path, size and modification time: a second task naming the same files
reads the cache. BLAKE2b is used (in the standard library; faster than SHA-256 on 64-bit CPUs).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

from rayeval.paths import digests_file

__all__ = ["file_digest"]

_LOCK = threading.Lock()


def _key(path: str) -> tuple[str, str]:
    st = os.stat(path)
    return os.path.abspath(path), f"{st.st_size}:{st.st_mtime_ns}"


def _load(cache: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(cache: Path, data: dict[str, dict[str, str]]) -> None:
    """Write the cache aside and rename it into place (a reader never sees half a file); a cache that
    cannot be written is only a cache."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".digests.", dir=cache.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, cache)
    except OSError:
        pass


def file_digest(path: str, *, cache: Path | None = None) -> str:
    """The BLAKE2b digest (hex, 32 characters) of a file's content, from the cache when the file's size and
    modification time are those it was hashed at."""
    cache = cache or digests_file()
    where, version = _key(path)
    with _LOCK:
        entry = _load(cache).get(where)
    if entry and entry.get("version") == version:
        return entry["digest"]
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
    with _LOCK:
        data = _load(cache)  # another process may have added entries meanwhile
        data[where] = {"version": version, "digest": digest}
        _save(cache, data)
    return digest
