"""Built-in evaluation sets by name (`builtin: NAME` in a task): data sources, prompts, default metrics."""

from rayeval.evalsets import _bfcl, _sets  # noqa: F401  (registers the sets)
from rayeval.evalsets._base import (
    BuiltinSet,
    get_builtin_set,
    list_builtin_sets,
    materialize,
    prefetch,
    register_set,
)

__all__ = ["BuiltinSet", "get_builtin_set", "list_builtin_sets", "materialize", "prefetch", "register_set"]
