"""Built-in evaluation sets by name (`builtin: NAME` in a task): data sources, prompts, default metrics."""

from rayeval.sets.builtin import bfcl, catalog, likelihood  # noqa: F401  (registers the sets)
from rayeval.sets.builtin.registry import (
    BuiltinSet,
    get_builtin_set,
    list_builtin_sets,
    materialize,
    prefetch,
    register_set,
)

__all__ = ["BuiltinSet", "get_builtin_set", "list_builtin_sets", "materialize", "prefetch", "register_set"]
