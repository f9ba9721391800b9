"""Judge metrics: the prompt a judge model reads, and the score read back from its answer.

The judge's request is made by the judging actors (rayeval.scoring.judge) as soon as an item's
prediction exists; the scoring actors then parse the stored answer with the metric's parser and
apply its postprocessing script. A judge metric has one output, named after the metric.
"""

from __future__ import annotations

import string
from typing import Any

from rayeval.metrics._base import ItemScore, Metric
from rayeval.spec import MetricRef

__all__ = ["JudgeMetric", "build_metric", "placeholders", "render_prompt"]


class JudgeMetric(Metric):
    """The scoring side of a judge metric (its per-item score is parsed from the stored judge answer)."""

    name = "judge"
    description = "A judge model's verdict, parsed into a score."

    def __init__(self, metric_name: str):
        super().__init__()
        self.metric_name = metric_name
        self.name = metric_name  # details and results are keyed by the metric's own name

    def outputs(self) -> list[str]:
        return [self.metric_name]

    def score(self, prediction: str, reference: str, item: dict[str, Any]) -> ItemScore:
        raise NotImplementedError("judge metrics are scored from the judge's stored answer")


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)


def render_prompt(template: str, item: dict[str, Any]) -> str:
    """The template with the item's columns filled in ({query}, {reference}, {prediction}, ...).

    Raises:
        KeyError: a placeholder names no column of the item.
    """
    values = _Missing({k: "" if v is None else v for k, v in item.items()})
    return string.Formatter().vformat(template, (), values)


def placeholders(template: str) -> list[str]:
    """The column names a template refers to.

    Raises:
        ValueError: the template is not a valid format string (unbalanced braces).
    """
    return [field for _, field, _, _ in string.Formatter().parse(template) if field]


def build_metric(ref: MetricRef) -> Metric:
    """The metric object of a metric reference: a judge metric when it has `judge`, else a registered one."""
    from rayeval.metrics._registry import get_metric

    if ref.judge is not None:
        return JudgeMetric(ref.name)
    return get_metric(ref.name, **ref.options)
