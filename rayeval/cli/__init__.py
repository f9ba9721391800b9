"""The `rayeval` command line: a thin click layer over the Python API, one module per group of commands."""

from rayeval.cli import catalog, results, server, tasks  # noqa: F401  (registers the commands)
from rayeval.cli.group import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
