"""Weights of a comprehensive score: per evaluation set and per metric, with the scale of metrics
that are not in [0, 1]."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rayeval.errors import SpecError
from rayeval.spec.base import validation_summary
from rayeval.spec.unique_keys import load_json, load_yaml

__all__ = ["Weights", "parse_weights"]


class Weights(BaseModel):
    """How evaluation sets and metrics count in a model's comprehensive score.

    A (set, metric) value counts with weight `sets[set] * metrics[metric]` (each 1 unless given);
    weight 0 leaves it out. Values are first put on [0, 1]: every rayeval metric already is; a
    metric with a `ranges` entry [worst, best] is mapped linearly (worst -> 0, best -> 1, clipped),
    so `[10, 0]` reads "lower is better, 10 or more is worst"; any other value outside [0, 1] is
    left out of the comprehensive score (and listed as such).
    """

    model_config = ConfigDict(extra="forbid")

    sets: dict[str, float] = Field(default_factory=dict, description="Evaluation set (or configuration) -> weight.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Metric output name -> weight.")
    ranges: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="Metric output name -> [worst, best], for metrics not on [0, 1]."
    )

    @field_validator("sets", "metrics")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(k for k, w in value.items() if not math.isfinite(w))
        if bad:
            raise ValueError(f"weights must be finite numbers; not so for {', '.join(bad)}")
        bad = sorted(k for k, w in value.items() if w < 0)
        if bad:
            raise ValueError(f"weights must be 0 or more; negative for {', '.join(bad)}")
        return value

    @field_validator("ranges")
    @classmethod
    def _distinct_ends(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        bad = sorted(k for k, ends in value.items() if not all(math.isfinite(x) for x in ends))
        if bad:
            raise ValueError(f"a range's ends must be finite numbers; not so for {', '.join(bad)}")
        bad = sorted(k for k, (lo, hi) in value.items() if lo == hi)
        if bad:
            raise ValueError(f"a range needs two different ends (worst, best); not so for {', '.join(bad)}")
        return value

    def weight(self, eval_set: str, metric: str, default: float = 1.0) -> float:
        """The weight of one (set, metric) value (`default`: the metric's, when not given)."""
        return self.sets.get(eval_set, 1.0) * self.metrics.get(metric, default)

    def normalise(self, metric: str, value: float | None) -> float | None:
        """The value on [0, 1], or None when it cannot be put there (no range and outside [0, 1])."""
        if value is None:
            return None
        if metric in self.ranges:
            worst, best = self.ranges[metric]
            return min(1.0, max(0.0, (value - worst) / (best - worst)))
        return value if 0.0 <= value <= 1.0 else None

    def check_names(self, sets: set[str], metrics: set[str], task: str) -> None:
        """Raises SpecError when a weight names a set or a metric the task does not have (a typo would
        otherwise weigh nothing, silently)."""
        for kind, given, known in (("set", self.sets, sets), ("metric", {**self.metrics, **self.ranges}, metrics)):
            unknown = sorted(set(given) - known)
            if unknown:
                raise SpecError(
                    f"weights name {kind}(s) {', '.join(repr(u) for u in unknown)}, which task {task} does not have "
                    f"(its {kind}s: {', '.join(sorted(known)) or 'none'})",
                    field="weights",
                )

    def merged(self, other: Weights) -> Weights:
        """These weights with `other`'s entries on top."""
        return Weights(
            sets={**self.sets, **other.sets},
            metrics={**self.metrics, **other.metrics},
            ranges={**self.ranges, **other.ranges},
        )


def parse_weights(text: str | dict[str, Any] | Weights | None) -> Weights:
    """Weights from a Weights, a dict, a YAML/JSON file, or `set=w,...` (`metric:NAME=w` for metrics).

    Raises:
        SpecError: a bad file, entry or value (the message says which).
    """
    if text is None:
        return Weights()
    if isinstance(text, Weights):
        return text
    data: Any = text
    if isinstance(text, str):
        path = Path(text).expanduser()
        if path.suffix in (".yaml", ".yml", ".json") or path.is_file():
            if not path.is_file():
                raise SpecError(f"weights file {path} does not exist", field="weights")
            data = _read_file(path)
        else:
            data = {"sets": {}, "metrics": {}}
            for part in filter(None, (p.strip() for p in text.split(","))):
                key, sep, value = part.partition("=")
                if not sep:
                    raise SpecError(
                        f"weights: '{part}' is not NAME=WEIGHT (metrics as metric:NAME=WEIGHT)", field="weights"
                    )
                try:
                    w = float(value)
                except ValueError:
                    raise SpecError(f"weights: '{value}' in '{part}' is not a number", field="weights") from None
                kind, name = ("metrics", key[len("metric:") :]) if key.startswith("metric:") else ("sets", key)
                data[kind][name.strip()] = w
    if data is not None and not isinstance(data, dict):
        raise SpecError(
            f"weights must be a mapping with sets:, metrics: and ranges:, not {type(data).__name__}", field="weights"
        )
    try:
        return Weights.model_validate(data or {})
    except ValidationError as e:
        raise SpecError(f"weights: {validation_summary(e)}", field="weights") from None


def _read_file(path: Path) -> Any:
    """A weights file's content (YAML, or JSON for .json).

    Raises:
        SpecError: not UTF-8, or not valid YAML/JSON (the message says where).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"weights file {path} is not UTF-8 (bad byte at offset {e.start})", field="weights") from None
    try:
        return load_json(text) if path.suffix == ".json" else load_yaml(text)
    except json.JSONDecodeError as e:
        raise SpecError(f"weights file {path} is not valid JSON: {e.msg} (line {e.lineno})", field="weights") from None
    except ValueError as e:  # a key twice in a JSON object
        raise SpecError(f"weights file {path} is not valid JSON: {e}", field="weights") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"weights file {path} is not valid YAML{at}: {problem}", field="weights") from None
