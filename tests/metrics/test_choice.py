"""Tests of multiple-choice letter extraction and accuracy."""

from __future__ import annotations

import pytest

from rayeval.errors import MetricError
from rayeval.metrics import get_metric
from rayeval.metrics._choice import extract_choice


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the whole prediction is a letter
        ("B", "B"),
        ("  c  ", "C"),
        ("D.", "D"),
        ("A)", "A"),
        ("(E)", "E"),
        ("( J )", "J"),
        # answer phrases
        ("The answer is (B).", "B"),
        ("the answer is C", "C"),
        ("Answer: D", "D"),
        ("ANSWER: (A)", "A"),
        ("The correct answer is: **(E)**", "E"),
        ("The answer is option G.", "G"),
        ("Answer: I think it is B", "B"),
        ("A looks tempting, but the answer is not A... so the answer is C.", "C"),
        # bold, leading letter, parenthesised letter
        ("I would pick **B** here.", "B"),
        ("**(H)**", "H"),
        ("B. Paris is the capital.", "B"),
        ("C) Mitochondria", "C"),
        ("(D) Because of gravity.", "D"),
        ("It must be (F), given the data.", "F"),
        # first standalone capital letter
        ("I think C is right", "C"),
        ("A good choice would be B", "B"),
        ("A is correct", "A"),
        ("Option B, clearly", "B"),
        ("I'm going with J", "J"),
        # nothing to extract
        ("Paris", None),
        ("", None),
        ("Because", None),
        ("K", None),
        ("BC", None),
    ],
)
def test_extract_choice(text: str, expected: str | None) -> None:
    assert extract_choice(text) == expected


def test_extract_choice_respects_allowed_letters() -> None:
    assert extract_choice("E", "ABCD") is None
    assert extract_choice("E then B", "ABCD") == "B"


def test_accuracy_scores_and_details() -> None:
    metric = get_metric("accuracy")
    hit = metric.score("The answer is (C).", "C", {})
    assert hit.scores == {"accuracy": 1.0}
    assert hit.details["extracted"] == "C"
    miss = metric.score("B", "(C)", {})
    assert miss.scores == {"accuracy": 0.0}
    assert miss.details["extracted"] == "B"


@pytest.mark.parametrize("reference", ["C", "(C)", "C.", "c", " C) "])
def test_accuracy_normalises_reference(reference: str) -> None:
    assert get_metric("accuracy").score("C", reference, {}).scores["accuracy"] == 1.0


def test_accuracy_without_extractable_choice() -> None:
    result = get_metric("accuracy").score("I don't know.", "A", {})
    assert result.scores == {"accuracy": 0.0}
    assert result.details["extracted"] is None


def test_accuracy_with_unreadable_reference_is_not_scorable() -> None:
    assert get_metric("accuracy").score("A", "Paris", {}).scores == {"accuracy": None}


def test_accuracy_choices_option() -> None:
    metric = get_metric("accuracy", choices="ABCD")
    assert metric.score("E", "A", {}).details["extracted"] is None
    assert metric.score("D", "D", {}).scores["accuracy"] == 1.0


@pytest.mark.parametrize("choices", ["", "abc", "AAB", 4, "A-D"])
def test_accuracy_rejects_bad_choices(choices: object) -> None:
    with pytest.raises(MetricError, match="choices"):
        get_metric("accuracy", choices=choices)


@pytest.mark.parametrize("text", ["I don't know.", "A tough one, I cannot say", "I am sure"])
def test_english_a_and_i_are_not_choices(text: str) -> None:
    assert extract_choice(text) is None
