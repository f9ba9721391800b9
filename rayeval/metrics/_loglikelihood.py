"""Multiple-choice accuracy from the choices' log-likelihoods, as lm-evaluation-harness defines it.

The inference stage stores every choice's summed log-probability in the item's `loglikelihoods`
column (rayeval.inference.loglikelihood); these metrics pick a choice from them and compare it
with the reference (the right choice's text, or its index):

- `acc`: the choice with the highest log-likelihood.
- `acc_norm`: log-likelihood divided by the choice's length in characters (lm-eval 0.4's
  `acc_norm`: `len(choice)`; the same as bytes for ASCII text).
- `acc_bytes`: divided by the choice's length in UTF-8 bytes (lm-eval's `acc_bytes`).

Ties go to the first choice, as numpy's argmax gives them.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rayeval.metrics._base import ItemScore, Metric
from rayeval.metrics._registry import register_metric
from rayeval.spec.sets import LOGLIKELIHOOD_METRICS

__all__ = ["LOGLIKELIHOOD_METRICS", "LoglikelihoodAccuracy", "gold_index"]


def gold_index(reference: str | None, choices: list[str]) -> int | None:
    """The right choice: the one whose text is the reference, else the reference read as an index."""
    if reference is None:
        return None
    text = reference.strip()
    for i, choice in enumerate(choices):
        if choice == reference or choice.strip() == text:
            return i
    try:
        index = int(text)
    except ValueError:
        return None
    return index if 0 <= index < len(choices) else None


class LoglikelihoodAccuracy(Metric):
    """1 when the choice picked by (normalised) log-likelihood is the reference's, else 0."""

    name: ClassVar[str]
    description: ClassVar[str]

    def weight(self, choice: str) -> float:
        """What a choice's log-likelihood is divided by before the choices are compared."""
        return 1.0

    def score(self, prediction: str, reference: str, item: dict[str, Any]) -> ItemScore:
        stored = item.get("loglikelihoods")
        scores = json.loads(stored) if stored else []  # [{choice, logprob, tokens, greedy}]
        if not scores:
            return ItemScore({self.name: None}, {"error": "no log-likelihoods (the set is not in loglikelihood mode)"})
        gold = gold_index(reference, [s["choice"] for s in scores])
        if gold is None:
            return ItemScore(
                {self.name: None},
                {"error": f"reference {reference!r} is neither a choice nor an index below {len(scores)}"},
            )
        values = [s["logprob"] / self.weight(s["choice"]) for s in scores]
        chosen = max(range(len(values)), key=values.__getitem__)
        return ItemScore({self.name: float(chosen == gold)}, {"chosen": chosen, "gold": gold})


@register_metric
class Acc(LoglikelihoodAccuracy):
    name = "acc"
    description = "Multiple choice by log-likelihood: the likeliest choice is the reference (lm-eval's acc)"


@register_metric
class AccNorm(LoglikelihoodAccuracy):
    name = "acc_norm"
    description = "Multiple choice by log-likelihood per character of the choice (lm-eval's acc_norm)"

    def weight(self, choice: str) -> float:
        return float(len(choice)) or 1.0


@register_metric
class AccBytes(LoglikelihoodAccuracy):
    name = "acc_bytes"
    description = "Multiple choice by log-likelihood per UTF-8 byte of the choice (lm-eval's acc_bytes)"

    def weight(self, choice: str) -> float:
        return float(len(choice.encode("utf-8"))) or 1.0
