"""Judge answers become scores, or counted parse failures (never a silent 0)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rayeval.metrics import JudgeParser


def test_regex_takes_the_last_match_and_normalises():
    p = JudgeParser(kind="regex", pattern=r"Score: (\d+(?:\.\d+)?)", min_score=1, max_score=10, normalize=True)
    assert p.parse("Score: 2 at first... on reflection Score: 10").score == 1.0
    assert p.parse("Score: 5.5").score == pytest.approx(0.5)
    out_of_range = p.parse("Score: 11")
    assert out_of_range.score is None and "outside [1, 10]" in out_of_range.failure
    missing = p.parse("I cannot rate this.")
    assert not missing.ok and missing.score is None and "no match" in missing.failure
    named = JudgeParser(kind="regex", pattern=r"rating=(?P<r>\w+)", group="r")
    assert named.parse("rating=3").score == 3.0
    capped = JudgeParser(kind="regex", pattern=r"(-?\d+)", max_score=5)
    assert capped.parse("-3").score == -3.0 and capped.parse("7").failure == "score 7 outside [-inf, 5]"
    assert "not a number" in named.parse("rating=high").failure


def test_json_field_inside_fenced_text():
    p = JudgeParser(kind="json", field="verdict.score")
    answer = 'Reasoning...\n```json\n{"verdict": {"score": 0.75, "why": "mostly right"}}\n```'
    assert p.parse(answer).score == 0.75
    assert "no field 'verdict.score'" in p.parse('{"verdict": {}}').failure
    assert "no JSON object" in p.parse("score is 1").failure
    labelled = JudgeParser(kind="json", field="label", labels={"correct": 1, "wrong": 0})
    assert labelled.parse('{"label": "wrong"}').score == 0.0
    assert JudgeParser(kind="json", field="ok").parse('{"ok": true}').score == 1.0


def test_labels_are_whole_words_and_the_conclusion_wins():
    p = JudgeParser(kind="labels", labels={"A": 1, "B": 0})
    assert p.parse("Option B looks tempting, but the answer is A").score == 1.0
    assert p.parse("Final verdict: B").score == 0.0
    assert not p.parse("ABBA is a band").ok  # no whole-word label
    assert p.parse("").failure == "empty judge answer"


@pytest.mark.parametrize(
    "config, message",
    [
        ({"kind": "regex"}, "needs `pattern`"),
        ({"kind": "regex", "pattern": "(unclosed"}, "not a valid regular expression"),
        ({"kind": "regex", "pattern": r"\d+", "group": 1}, "group 1 does not exist"),
        ({"kind": "json"}, "needs `field`"),
        ({"kind": "labels", "labels": {}}, "needs `labels`"),
        ({"kind": "regex", "pattern": r"(\d)", "normalize": True}, "normalize needs min_score and max_score"),
        ({"kind": "regex", "pattern": r"(\d)", "min_score": 5, "max_score": 1}, "min_score must be below"),
        ({"kind": "regex", "pattern": r"(\d)", "typo": 1}, "Extra inputs"),
    ],
)
def test_bad_parser_configs_say_what_to_fix(config, message):
    with pytest.raises(ValidationError, match=message):
        JudgeParser(**config)
