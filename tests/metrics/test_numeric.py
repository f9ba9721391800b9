"""Tests of the GSM8K-style numeric match."""

from __future__ import annotations

import pytest

from rayeval.metrics import get_metric
from rayeval.metrics._numeric import last_number, numbers_equal, reference_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She makes 9 * 2 = $18", "18"),
        ("The total is 1,234,567 dollars.", "1234567"),
        ("It costs $1,000.50.", "1000.50"),
        ("The temperature fell to -5", "-5"),
        ("16-3=13", "13"),
        ("so the answer is 42.", "42"),
        ("about .5 of it", ".5"),
        ("3.75", "3.75"),
        ("x = -0.25 then", "-0.25"),
        ("no number here", None),
        ("", None),
    ],
)
def test_last_number(text: str, expected: str | None) -> None:
    assert last_number(text) == expected


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Janet sells 9 eggs.\n#### 18", "18"),
        ("#### 1,200", "1200"),
        ("#### $5", "5"),
        ("#### -3", "-3"),
        ("#### 2.50", "2.50"),
        ("step #### 1 then #### 7", "7"),
        ("#### about 12 apples", "12"),
        ("The answer is 64.", "64"),
        ("nothing", None),
    ],
)
def test_reference_number(reference: str, expected: str | None) -> None:
    assert reference_number(reference) == expected


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("18", "18.0", True),
        ("18", "18", True),
        ("18", "19", False),
        ("0.5", ".5", True),
        ("-3", "3", False),
        ("12345678901234567891", "12345678901234567890", False),  # exact integer compare
        ("1.10", "1.1", True),
    ],
)
def test_numbers_equal(a: str, b: str, equal: bool) -> None:
    assert numbers_equal(a, b) is equal


def test_numeric_match_scores_and_details() -> None:
    metric = get_metric("numeric_match")
    hit = metric.score("She makes 9 * 2 = $<<9*2=18>>18.\nA: $18.00", "... #### 18", {})
    assert hit.scores == {"numeric_match": 1.0}
    assert hit.details == {"pred_answer": "18.00", "ref_answer": "18"}
    miss = metric.score("The answer is 1,201", "#### 1,200", {})
    assert miss.scores == {"numeric_match": 0.0}
    assert miss.details == {"pred_answer": "1201", "ref_answer": "1200"}


def test_numeric_match_without_number_in_prediction() -> None:
    result = get_metric("numeric_match").score("I cannot tell.", "#### 7", {})
    assert result.scores == {"numeric_match": 0.0}
    assert result.details == {"pred_answer": None, "ref_answer": "7"}


def test_numeric_match_without_number_in_reference_is_not_scorable() -> None:
    result = get_metric("numeric_match").score("7", "#### n/a", {})
    assert result.scores == {"numeric_match": None}
