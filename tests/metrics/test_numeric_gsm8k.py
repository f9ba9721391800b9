"""numeric_match on the real GSM8K predictions, checked against an independent scanner."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from rayeval.metrics import get_metric

DATA = Path(__file__).resolve().parents[2].parent / "shared/data/gsm8k/predictions/6b_finetuning.jsonl"


def _scan_last_number(text: str) -> Fraction | None:
    """Walks back from the last digit over digits, commas and one decimal point."""
    end = len(text)
    while end > 0 and not text[end - 1].isdigit():
        end -= 1
    if end == 0:
        return None
    start, seen_point = end, False
    while start > 0:
        ch = text[start - 1]
        if ch.isdigit() or ch == ",":
            start -= 1
        elif ch == "." and not seen_point and start - 1 > 0 and text[start - 2].isdigit():
            seen_point = True
            start -= 1
        elif ch == "." and not seen_point:  # ".5"
            start -= 1
            break
        else:
            break
    digits = text[start:end].replace(",", "")
    if (
        start > 0
        and text[start - 1] == "-"
        and (start == 1 or not (text[start - 2].isalnum() or text[start - 2] in "_)"))
    ):
        digits = "-" + digits
    return Fraction(digits)


def _reference_answer(answer: str) -> Fraction:
    return Fraction(answer.split("####")[-1].strip().replace(",", "").replace("$", ""))


def _rows() -> list[dict]:
    if not DATA.exists():
        pytest.skip(f"GSM8K predictions not found at {DATA}")
    with DATA.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_numeric_match_agrees_with_independent_scanner_on_gsm8k() -> None:
    rows = _rows()
    assert len(rows) == 1319
    metric = get_metric("numeric_match")
    hits = 0
    disagreements = []
    for row in rows:
        result = metric.score(row["prediction"], row["answer"], row)
        predicted = _scan_last_number(row["prediction"])
        expected = float(predicted is not None and predicted == _reference_answer(row["answer"]))
        if result.scores["numeric_match"] != expected:
            disagreements.append((row["id"], result.details, predicted))
        hits += expected
    assert disagreements == []
    accuracy = hits / len(rows)
    assert 0.05 < accuracy < 0.95
