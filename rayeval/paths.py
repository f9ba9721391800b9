"""Where rayeval keeps its own files: $RAYEVAL_HOME (default ~/.rayeval) and every path under it.

- `tasks/`: the coordinator's index, one pointer per task to its folder in the results store;
- `datasets/`: built-in sets normalised once per source;
- `models/`: models rayeval builds or converts (the tiny random model, the built-in real ones);
- `logs/`: what Ray, Serve and vLLM printed during each `rayeval run` (rayeval.cli.console);
- `cache/`: weight files' content digests;
- `notices/`: one marker per notice the command line gives only once;
- `server/`: `rayeval server`'s API tokens (hashes only) and audit log, unless its `--store` says elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "HOME_ENV",
    "datasets_dir",
    "default_home",
    "digests_file",
    "index_location",
    "logs_dir",
    "models_dir",
    "notices_dir",
    "server_dir",
]

#: The environment variable naming rayeval's home.
HOME_ENV = "RAYEVAL_HOME"


def default_home() -> str:
    """$RAYEVAL_HOME, or ~/.rayeval."""
    return os.environ.get(HOME_ENV) or os.path.join(os.path.expanduser("~"), ".rayeval")


def index_location(home: str | None = None) -> str:
    """The coordinator's task index (a results-store location: a folder or a URI)."""
    return (home or default_home()).rstrip("/") + "/tasks"


def datasets_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """Where built-in sets are normalised."""
    return Path(home or default_home()) / "datasets"


def models_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """Where models rayeval builds or converts are kept."""
    return Path(home or default_home()) / "models"


def logs_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """Where the command line keeps what the libraries under it printed (one file per run)."""
    return Path(home or default_home()) / "logs"


def digests_file(home: str | os.PathLike[str] | None = None) -> Path:
    """The cache of weight files' content digests, keyed on (path, size, modification time)."""
    return Path(home or default_home()) / "cache" / "weight-digests.json"


def notices_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """Markers of the notices the command line gives once (a changed default, say)."""
    return Path(home or default_home()) / "notices"


def server_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """The default location of `rayeval server`'s API tokens and audit log."""
    return Path(home or default_home()) / "server"
