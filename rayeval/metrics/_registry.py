"""Registry of rule metrics by name."""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from rayeval.errors import MetricError
from rayeval.metrics._base import Metric

__all__ = ["get_metric", "list_metrics", "register_metric"]

M = TypeVar("M", bound=type[Metric])

_METRICS: dict[str, type[Metric]] = {}


def register_metric(cls: M) -> M:
    """Class decorator: registers a metric under `cls.name`.

    Raises:
        TypeError: The class has no `name` or `description`.
        ValueError: Another metric is registered under the same name.
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} needs a class attribute 'name' to be registered")
    if not isinstance(getattr(cls, "description", None), str):
        raise TypeError(f"{cls.__qualname__} needs a class attribute 'description' to be registered")
    if name in _METRICS:
        raise ValueError(f"metric '{name}' is already registered by {_METRICS[name].__qualname__}")
    _METRICS[name] = cls
    return cls


def get_metric(name: str, **options: Any) -> Metric:
    """Builds the metric registered under `name` with the given options.

    Raises:
        MetricError: The name is unknown, or an option is unknown or invalid.
    """
    cls = _METRICS.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, _METRICS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise MetricError(f"unknown metric '{name}'{hint}; known metrics: {', '.join(sorted(_METRICS))}")
    return cls(**options)


def list_metrics() -> dict[str, str]:
    """Returns registered metric names (sorted) mapped to their one-line descriptions."""
    return {name: _METRICS[name].description for name in sorted(_METRICS)}
