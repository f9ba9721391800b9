"""Turning a judge model's raw answer into a score, or into a counted parse failure.

A parser is declared in a judge metric's configuration as one of:

- `regex`: a pattern whose group (`group`, default 1) holds the score, e.g. `Score: (\\d+(?:\\.\\d+)?)`;
- `json`: a field of a JSON object in the answer (dotted path, e.g. `verdict.score`); the object may
  sit inside a ```json fence or other text;
- `labels`: a mapping of labels to scores (`{A: 1, B: 0}`), matched as whole words, the last one
  in the answer winning (judges reason first and conclude last).

With `normalize: true`, a score in [min_score, max_score] is mapped to [0, 1]. An answer the
parser cannot read, or a score outside the declared range, is a parse failure: it is counted
and shown beside the metric's value, never scored as 0.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["JudgeParser", "ParsedScore"]


@dataclass(frozen=True)
class ParsedScore:
    """The result of parsing one judge answer: a score, or why there is none."""

    score: float | None
    failure: str | None = None

    @property
    def ok(self) -> bool:
        """True when the answer gave a score."""
        return self.failure is None


class JudgeParser(BaseModel):
    """How a judge's answer becomes a score."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["regex", "json", "labels"] = Field(description="'regex', 'json' or 'labels'.")
    pattern: str | None = Field(None, description="kind regex: the pattern; its `group` holds the score.")
    group: int | str = Field(1, description="kind regex: the group number or name holding the score.")
    field: str | None = Field(None, description="kind json: dotted path of the score in the JSON object.")
    labels: dict[str, float] | None = Field(None, description="kind labels: label -> score, e.g. {A: 1, B: 0}.")
    min_score: float | None = Field(None, description="Lowest valid score (below it: a parse failure).")
    max_score: float | None = Field(None, description="Highest valid score (above it: a parse failure).")
    normalize: bool = Field(False, description="Map [min_score, max_score] to [0, 1].")

    @model_validator(mode="after")
    def _check(self) -> JudgeParser:
        needed = {"regex": "pattern", "json": "field", "labels": "labels"}[self.kind]
        if not getattr(self, needed):
            raise ValueError(f"parser kind {self.kind} needs `{needed}`")
        if self.kind == "regex":
            try:
                compiled = re.compile(self.pattern)
            except re.error as e:
                raise ValueError(f"parser pattern is not a valid regular expression: {e}") from None
            if isinstance(self.group, int) and self.group > compiled.groups:
                raise ValueError(f"parser pattern has {compiled.groups} group(s); group {self.group} does not exist")
            if isinstance(self.group, str) and self.group not in compiled.groupindex:
                raise ValueError(f"parser pattern has no group named '{self.group}'")
        if self.normalize and (self.min_score is None or self.max_score is None):
            raise ValueError("normalize needs min_score and max_score")
        if self.min_score is not None and self.max_score is not None and self.min_score >= self.max_score:
            raise ValueError("min_score must be below max_score")
        return self

    def parse(self, answer: str | None) -> ParsedScore:
        """The score in a judge's answer, checked against the range and normalised if asked."""
        if not answer or not answer.strip():
            return ParsedScore(None, "empty judge answer")
        raw = {"regex": self._regex, "json": self._json, "labels": self._labels}[self.kind](answer)
        if isinstance(raw, ParsedScore):
            return raw
        low = float("-inf") if self.min_score is None else self.min_score
        high = float("inf") if self.max_score is None else self.max_score
        if not low <= raw <= high:
            return ParsedScore(None, f"score {raw:g} outside [{low:g}, {high:g}]")
        if self.normalize:
            raw = (raw - self.min_score) / (self.max_score - self.min_score)
        return ParsedScore(raw)

    def _regex(self, answer: str) -> float | ParsedScore:
        matches = list(re.finditer(self.pattern, answer))
        if not matches:
            return ParsedScore(None, f"no match for /{self.pattern}/")
        text = matches[-1].group(self.group)
        return _number(text, f"group {self.group!r} is {text!r}, not a number")

    def _json(self, answer: str) -> float | ParsedScore:
        obj = _find_json_object(answer)
        if obj is None:
            return ParsedScore(None, "no JSON object in the answer")
        value: Any = obj
        for key in self.field.split("."):
            if not isinstance(value, dict) or key not in value:
                return ParsedScore(None, f"JSON has no field '{self.field}'")
            value = value[key]
        if isinstance(value, bool):
            return float(value)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str) and self.labels and value.strip() in self.labels:
            return float(self.labels[value.strip()])
        return _number(str(value), f"field '{self.field}' is {value!r}, not a number")

    def _labels(self, answer: str) -> float | ParsedScore:
        found = [
            (m.start(), label)
            for label in self.labels
            for m in re.finditer(rf"(?<![\w]){re.escape(label)}(?![\w])", answer)
        ]
        if not found:
            return ParsedScore(None, f"none of the labels {sorted(self.labels)} in the answer")
        return float(self.labels[max(found)[1]])


def _number(text: str, failure: str) -> float | ParsedScore:
    try:
        return float(text.strip())
    except (TypeError, ValueError):
        return ParsedScore(None, failure)


def _find_json_object(text: str) -> dict[str, Any] | None:
    """The last top-level JSON object in a text (fenced or not); objects nested in it are not candidates."""
    decoder = json.JSONDecoder()
    found, covered = None, -1
    for start in [m.start() for m in re.finditer(r"\{", text)]:
        if start < covered:
            continue
        try:
            obj, end = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(obj, dict):
            found, covered = obj, end
    return found
