"""SQuAD-style exact match and token F1."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

from rayeval.metrics._base import ItemScore, Metric
from rayeval.metrics._references import reference_answers
from rayeval.metrics._registry import register_metric

__all__ = ["ExactMatch", "F1", "normalize_answer", "squad_exact_match", "squad_f1"]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lowercases, strips punctuation and the articles a/an/the, and collapses whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def squad_exact_match(prediction: str, answer: str) -> float:
    """Returns 1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(answer))


def squad_f1(prediction: str, answer: str) -> float:
    """Returns the token-level F1 of the normalised strings (SQuAD v1.1 logic)."""
    pred_tokens = normalize_answer(prediction).split()
    answer_tokens = normalize_answer(answer).split()
    common = Counter(pred_tokens) & Counter(answer_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(answer_tokens)
    return 2 * precision * recall / (precision + recall)


class _BestOverAnswers(Metric):
    """Scores a prediction against each acceptable answer and keeps the best."""

    @staticmethod
    def compare(prediction: str, answer: str) -> float:
        """Score of the prediction against one answer."""
        raise NotImplementedError

    def score(self, prediction: str, reference: str, item: dict[str, Any]) -> ItemScore:
        """The best score over the acceptable answers (None when the reference has none)."""
        answers = reference_answers(reference)
        if not answers:
            return ItemScore({self.name: None}, {"reason": "reference has no answers"})
        return ItemScore({self.name: max(self.compare(prediction, a) for a in answers)})


@register_metric
class ExactMatch(_BestOverAnswers):
    """Normalised exact match, best over the acceptable answers."""

    name = "exact_match"
    description = "SQuAD-normalised exact match (max over answers in a JSON-list reference)"
    compare = staticmethod(squad_exact_match)


@register_metric
class F1(_BestOverAnswers):
    """SQuAD token F1, best over the acceptable answers."""

    name = "f1"
    description = "SQuAD token-level F1 (max over answers in a JSON-list reference)"
    compare = staticmethod(squad_f1)
