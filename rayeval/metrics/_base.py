"""Base types of a rule metric: per-item score, aggregator and metric."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from rayeval.errors import MetricError

__all__ = ["Aggregator", "ItemScore", "MeanAggregator", "Metric"]


@dataclass
class ItemScore:
    """The score of one item.

    Attributes:
        scores: One entry per output name of the metric, in [0, 1], or None when not scorable.
        details: JSON-able extra facts (extracted answers, n-gram statistics, ...).
    """

    scores: dict[str, float | None]
    details: dict[str, Any] = field(default_factory=dict)


class Aggregator(ABC):
    """Folds per-item scores into one value, one item at a time.

    Attributes:
        count: Number of items with a non-None score added so far.
    """

    def __init__(self) -> None:
        self.count = 0

    @abstractmethod
    def add(self, score: float | None, details: dict[str, Any] | None) -> None:
        """Adds one item's score (None is skipped) and its details."""

    @abstractmethod
    def value(self) -> float | None:
        """Returns the aggregate, or None when no score was added."""


class MeanAggregator(Aggregator):
    """Mean of the non-None scores."""

    def __init__(self) -> None:
        super().__init__()
        self._total = 0.0

    def add(self, score: float | None, details: dict[str, Any] | None = None) -> None:
        """Adds one score; None is ignored."""
        if score is None:
            return
        self._total += float(score)
        self.count += 1

    def value(self) -> float | None:
        """Returns the mean, or None when empty."""
        return self._total / self.count if self.count else None


class Metric(ABC):
    """A rule metric: scores one prediction against its reference.

    Subclasses set `name`, `description` and, when they take options, `defaults`
    (option name -> default value). Options are then available as `self.options`.

    Raises:
        MetricError: An option is not one of `defaults`.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    #: Its `score` runs a program and waits for it (rayeval.metrics.sandbox): items and samples are then
    #: scored from several threads at once, as many as the sandbox runs at once.
    runs_programs: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            allowed = ", ".join(sorted(self.defaults)) or "none"
            raise MetricError(
                f"metric '{self.name}' has no option {', '.join(map(repr, unknown))}; allowed options: {allowed}"
            )
        self.options: dict[str, Any] = {**self.defaults, **options}

    def outputs(self) -> list[str]:
        """Returns the names of the score columns this metric produces."""
        return [self.name]

    @abstractmethod
    def score(self, prediction: str, reference: str, item: dict[str, Any]) -> ItemScore:
        """Scores one prediction against its reference.

        Args:
            prediction: The model's output.
            reference: The expected answer as stored in the evaluation set.
            item: The whole evaluation item, for metrics that need more fields.
        """

    def applies(self, output: str, item_id: str) -> bool:
        """Whether `output` counts this item at all (an output over one part of a set, such as one
        category, leaves the others out of its items and errors). Default: every item."""
        return True

    @property
    def scoped(self) -> bool:
        """The metric has outputs over part of a set (it overrides `applies`)."""
        return type(self).applies is not Metric.applies

    def aggregator(self, output: str) -> Aggregator:
        """Returns a fresh aggregator for one output column.

        Raises:
            ValueError: `output` is not one of `outputs()`.
        """
        self._check_output(output)
        return MeanAggregator()

    def _check_output(self, output: str) -> None:
        if output not in self.outputs():
            raise ValueError(f"metric '{self.name}' has no output '{output}'; outputs: {self.outputs()}")

    def _bad_option(self, option: str, message: str) -> MetricError:
        return MetricError(f"metric '{self.name}', option '{option}': {message}")
