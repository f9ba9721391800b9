"""Tests of SQuAD-style exact match and F1."""

from __future__ import annotations

import json

import pytest

from rayeval.metrics import get_metric
from rayeval.metrics._references import reference_answers
from rayeval.metrics._text import normalize_answer, squad_f1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("  an   apple, a pear!  ", "apple pear"),
        ("Théâtre", "théâtre"),
        ("theory of the anthem", "theory of anthem"),  # articles only as whole words
        ("U.S.A.", "usa"),
        ("rock-'n'-roll", "rocknroll"),
        ("A", ""),
        ("", ""),
        ("line\nbreak\ttab", "line break tab"),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("Denver Broncos", "Denver Broncos", 1.0),
        ("the Denver Broncos.", "denver broncos", 1.0),
        ("Denver", "Denver Broncos", 0.0),
        ("", "", 1.0),
        ("", "Paris", 0.0),
    ],
)
def test_exact_match(prediction: str, reference: str, expected: float) -> None:
    assert get_metric("exact_match").score(prediction, reference, {}).scores == {"exact_match": expected}


def test_exact_match_takes_best_of_several_answers() -> None:
    reference = json.dumps(["Santa Clara, California", "Levi's Stadium", "Levi's Stadium in Santa Clara"])
    metric = get_metric("exact_match")
    assert metric.score("levis stadium", reference, {}).scores["exact_match"] == 1.0
    assert metric.score("Santa Clara", reference, {}).scores["exact_match"] == 0.0


def test_f1_partial_overlap() -> None:
    # pred tokens: denver broncos won; gold: denver broncos -> P=2/3, R=1
    score = get_metric("f1").score("The Denver Broncos won", "Denver Broncos", {}).scores["f1"]
    assert score == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))


def test_f1_counts_repeated_tokens_once_per_occurrence() -> None:
    # Counter overlap: "a b b" vs "b c": common = {b: 1}
    assert squad_f1("x y y", "y z") == pytest.approx(0.4)


def test_f1_no_overlap_and_empty() -> None:
    assert squad_f1("cat", "dog") == 0.0
    assert squad_f1("", "") == 0.0  # SQuAD v1.1: no common tokens -> 0
    assert squad_f1("the", "a") == 0.0


def test_f1_takes_best_of_several_answers() -> None:
    reference = json.dumps(["Denver Broncos", "Broncos"])
    assert get_metric("f1").score("Broncos", reference, {}).scores["f1"] == 1.0


def test_reference_answers_parsing() -> None:
    assert reference_answers('["a", "b"]') == ["a", "b"]
    assert reference_answers("[1, 2]") == ["1", "2"]
    assert reference_answers("[not json") == ["[not json"]
    assert reference_answers('["a"] trailing') == ['["a"] trailing']
    assert reference_answers("plain") == ["plain"]
    assert reference_answers(["x", "y"]) == ["x", "y"]


def test_empty_answer_list_is_not_scorable() -> None:
    assert get_metric("exact_match").score("x", "[]", {}).scores == {"exact_match": None}
    assert get_metric("f1").score("x", "[]", {}).scores == {"f1": None}
