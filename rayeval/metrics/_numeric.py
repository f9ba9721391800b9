"""GSM8K-style numeric answer match."""

from __future__ import annotations

import re
from typing import Any

from rayeval.metrics._base import ItemScore, Metric
from rayeval.metrics._registry import register_metric

__all__ = ["NumericMatch", "last_number", "numbers_equal", "reference_number"]

# A signed integer or decimal with optional thousands commas. A '-' only counts as a sign
# when it does not follow a word character or ')' (so "16-3" yields 16 and 3, not -3).
_NUMBER = re.compile(r"(?:(?<![\w)])-)?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")
_FINAL_MARK = "####"


def _clean(number: str) -> str:
    return number.replace(",", "").replace("$", "").strip().rstrip(".")


def last_number(text: str) -> str | None:
    """Returns the last number in a text, commas removed, or None."""
    found = [_clean(m.group(0)) for m in _NUMBER.finditer(text)]
    found = [n for n in found if n not in ("", "-")]
    return found[-1] if found else None


def _parse(number: str) -> int | float | None:
    try:
        return int(number)
    except ValueError:
        pass
    try:
        return float(number)
    except ValueError:
        return None


def reference_number(reference: str) -> str | None:
    """Returns the final answer of a reference: the text after the last '####', else its last number."""
    if _FINAL_MARK in reference:
        final = _clean(reference.rsplit(_FINAL_MARK, 1)[1])
        if _parse(final) is not None:
            return final
        return last_number(final)
    return last_number(reference)


def numbers_equal(a: str, b: str) -> bool:
    """Compares two number strings by value: integers exactly, otherwise as floats."""
    x, y = _parse(a), _parse(b)
    if x is None or y is None:
        return False
    if isinstance(x, int) and isinstance(y, int):
        return x == y
    return float(x) == float(y)


@register_metric
class NumericMatch(Metric):
    """Last number of the prediction equals the reference's final answer."""

    name = "numeric_match"
    description = "GSM8K-style match of the last number in the prediction with the '#### N' answer"

    def score(self, prediction: str, reference: str, item: dict[str, Any]) -> ItemScore:
        """Scores 1.0 on numeric equality; None when the reference holds no number."""
        ref_answer = reference_number(str(reference))
        pred_answer = last_number(prediction)
        details: dict[str, Any] = {"pred_answer": pred_answer, "ref_answer": ref_answer}
        if ref_answer is None:
            return ItemScore({self.name: None}, details)
        if pred_answer is None:
            return ItemScore({self.name: 0.0}, details)
        return ItemScore({self.name: float(numbers_equal(pred_answer, ref_answer))}, details)
