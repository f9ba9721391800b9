"""rayeval: distributed, actor-based evaluation of large language models on Ray.

The public API is small: load or build a task spec, run or submit it, follow the handle.
"""

from rayeval.analysis import compute_results as results
from rayeval.analysis import item_view as item
from rayeval.api import TaskHandle, copy_spec, delete, list_tasks, restart, run, stop, submit
from rayeval.debug import DebugSample, debug_metrics
from rayeval.errors import DatasetError, MetricError, RayevalError, ServiceError, SpecError, TaskNotFoundError
from rayeval.spec import CustomConfigSpec, EngineSpec, EvaluationSetSpec, ModelSpec, Parameters, TaskSpec, load_task
from rayeval.spec.weights import Weights

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
