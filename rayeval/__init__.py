"""rayeval: distributed, actor-based evaluation of large language models on Ray.

The public API is small: load or build a task spec, run or submit it, follow the handle.

Names are imported on first use: a Ray worker that needs one stage (an inference actor, the writer)
imports that stage's modules only, not the analysis and every metric's library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rayeval.analysis import compute_results as results
    from rayeval.analysis import item_view as item
    from rayeval.api import TaskHandle, copy_spec, delete, list_tasks, restart, run, stop, submit
    from rayeval.debug import DebugSample, debug_metrics
    from rayeval.errors import DatasetError, MetricError, RayevalError, ServiceError, SpecError, TaskNotFoundError
    from rayeval.spec import CustomConfigSpec, EngineSpec, EvaluationSetSpec, ModelSpec, Parameters, TaskSpec, load_task
    from rayeval.spec.weights import Weights

#: public name -> (module, attribute)
_WHERE = {
    "results": ("rayeval.analysis", "compute_results"),
    "item": ("rayeval.analysis", "item_view"),
    **{n: ("rayeval.api", n) for n in ("TaskHandle", "copy_spec", "delete", "list_tasks", "restart", "run", "stop")},
    "submit": ("rayeval.api", "submit"),
    "DebugSample": ("rayeval.debug", "DebugSample"),
    "debug_metrics": ("rayeval.debug", "debug_metrics"),
    **{
        n: ("rayeval.errors", n)
        for n in ("DatasetError", "MetricError", "RayevalError", "ServiceError", "SpecError", "TaskNotFoundError")
    },
    **{
        n: ("rayeval.spec", n)
        for n in ("CustomConfigSpec", "EngineSpec", "EvaluationSetSpec", "ModelSpec", "Parameters", "TaskSpec")
    },
    "load_task": ("rayeval.spec", "load_task"),
    "Weights": ("rayeval.spec.weights", "Weights"),
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        try:  # a subpackage (rayeval.metrics...) reached as an attribute
            return importlib.import_module(f"rayeval.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module 'rayeval' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(where[0]), where[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


__all__ = [
    "CustomConfigSpec",
    "DatasetError",
    "DebugSample",
    "EngineSpec",
    "EvaluationSetSpec",
    "MetricError",
    "ModelSpec",
    "Parameters",
    "RayevalError",
    "ServiceError",
    "SpecError",
    "TaskHandle",
    "TaskNotFoundError",
    "TaskSpec",
    "Weights",
    "copy_spec",
    "debug_metrics",
    "delete",
    "item",
    "list_tasks",
    "load_task",
    "restart",
    "results",
    "run",
    "stop",
    "submit",
]
