"""Multiple-choice accuracy: extract the chosen letter and compare it with the reference."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from rayeval.metrics._base import ItemScore, Metric
from rayeval.metrics._registry import register_metric

__all__ = ["Accuracy", "extract_choice"]

DEFAULT_CHOICES = "ABCDEFGHIJ"

# Characters that may not touch a letter for it to count as its own token.
_WORD = r"A-Za-z0-9_'\-"


@lru_cache(maxsize=32)
def _patterns(choices: str) -> tuple[re.Pattern[str], ...]:
    """Compiles the extraction patterns for a set of letters, most specific first."""
    letter = f"([{re.escape(choices)}])"
    return (
        # "the answer is (B)", "Answer: B", "answer is option **C**"; the last one wins.
        re.compile(
            rf"(?i:answer)(?:\s+(?i:is))?\s*:?\s*(?:(?i:option|choice)\s+)?"
            rf"(?:\*\*)?\s*\(?{letter}\)?(?![{_WORD}])"
        ),
        # "**B**", "**(B)**", "**B.**"
        re.compile(rf"\*\*\s*\(?{letter}\)?[.):]?\s*\*\*"),
        # "B. Paris", "B) Paris", "(B) Paris" at the start
        re.compile(rf"^\s*(?:\({letter}\)|{letter}[.):](?=\s|$))"),
        # "(B)" anywhere
        re.compile(rf"\({letter}\)"),
    )


@lru_cache(maxsize=32)
def _token_pattern(choices: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![{_WORD}])([{re.escape(choices)}])(?![{_WORD}])")


_WHOLE = re.compile(r"\(?\s*([A-Za-z])\s*\)?\s*[.):]?")
# "A"/"I" followed by a lowercase word reads as English ("A good", "I think"), except before "is".
_ENGLISH_WORD = re.compile(r"\s+(?!is\b)[a-z]")


def extract_choice(text: str, choices: str = DEFAULT_CHOICES) -> str | None:
    """Returns the choice letter a text selects, or None.

    Tried in order: the whole text is a letter ("B", "b", "B.", "(B)", "B)"); an answer
    phrase ("answer is (B)", "Answer: B", the last one wins); bold ("**B**"); a leading
    "B." / "B)" / "(B)"; "(B)" anywhere; the first capital letter standing as its own token,
    where "A" and "I" followed by a lowercase word other than "is" are English words.

    Args:
        text: The prediction (or reference) text.
        choices: The allowed letters, uppercase.
    """
    stripped = text.strip()
    whole = _WHOLE.fullmatch(stripped)
    if whole:
        letter = whole.group(1).upper()
        return letter if letter in choices else None

    answer, bold, leading, parens = _patterns(choices)
    matches = [m for m in answer.finditer(stripped) if not _is_english_word(stripped, m)]
    if matches:
        return matches[-1].group(1)
    for pattern in (bold, leading, parens):
        match = pattern.search(stripped)
        if match:
            return next(g for g in match.groups() if g)

    for token in _token_pattern(choices).finditer(stripped):
        if not _is_english_word(stripped, token):
            return token.group(1)
    return None


def _is_english_word(text: str, match: re.Match[str]) -> bool:
    """Whether the matched letter is the English word "A" or "I" rather than a choice."""
    return match.group(1) in "AI" and _ENGLISH_WORD.match(text, match.end(1)) is not None


@register_metric
class Accuracy(Metric):
    """Multiple-choice accuracy on the extracted choice letter."""

    name = "accuracy"
    description = "multiple-choice accuracy: extracts the chosen letter (A-J) and compares it"
    defaults = {"choices": DEFAULT_CHOICES}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        choices = self.options["choices"]
        if (
            not isinstance(choices, str)
            or not choices
            or not all("A" <= ch <= "Z" for ch in choices)
            or len(set(choices)) != len(choices)
        ):
            raise self._bad_option(
                "choices", f"expected a string of distinct capital letters such as 'ABCD', got {choices!r}"
            )
        self.choices: str = choices

    def score(self, prediction: str, reference: str, item: dict[str, Any]) -> ItemScore:
        """Scores 1.0 when the extracted letter equals the reference letter.

        The score is None when no letter can be read from the reference.
        """
        expected = extract_choice(str(reference), self.choices)
        extracted = extract_choice(prediction, self.choices)
        details: dict[str, Any] = {"extracted": extracted, "reference": expected}
        if expected is None:
            return ItemScore({self.name: None}, details)
        return ItemScore({self.name: float(extracted == expected)}, details)
