"""acc, acc_norm and acc_bytes from the choices' log-likelihoods, as lm-eval computes them."""

from __future__ import annotations

import json

from rayeval.metrics import get_metric, gold_index


def _item(scores: list[tuple[str, float]]) -> dict:
    rows = [{"choice": c, "logprob": lp, "tokens": 3, "greedy": False} for c, lp in scores]
    return {"loglikelihoods": json.dumps(rows)}


def test_acc_takes_the_likeliest_choice_and_acc_norm_the_likeliest_per_character():
    item = _item([("a short one", -11.0), ("a much much longer ending here", -14.0)])
    # acc: -11 > -14; acc_norm: -11/11 = -1.0 < -14/30 = -0.47
    assert get_metric("acc").score("0", "0", item).scores == {"acc": 1.0}
    assert get_metric("acc_norm").score("0", "0", item).scores == {"acc_norm": 0.0}
    assert get_metric("acc_norm").score("0", "1", item).details == {"chosen": 1, "gold": 1}
    # bytes, not characters: 'é' is two bytes
    accented = _item([("éééé", -4.0), ("abcdef", -5.9)])  # per char: -1.0 vs -0.98; per byte: -0.5 vs -0.98
    assert get_metric("acc_norm").score("1", "1", accented).scores == {"acc_norm": 1.0}
    assert get_metric("acc_bytes").score("0", "0", accented).scores == {"acc_bytes": 1.0}


def test_ties_go_to_the_first_choice_and_the_reference_is_a_text_or_an_index():
    item = _item([("yes", -2.0), ("no", -2.0)])
    assert get_metric("acc").score("0", "yes", item).scores == {"acc": 1.0}
    assert gold_index("1", ["A", "B"]) == 1 and gold_index("B", ["A", "B"]) == 1 and gold_index(" B ", ["A", "B"]) == 1
    assert gold_index("2", ["1", "2"]) == 1  # a choice's text first
    assert gold_index("5", ["A", "B"]) is None and gold_index(None, ["A"]) is None
    bad = get_metric("acc").score("0", "C", _item([("A", -1.0), ("B", -2.0)]))
    assert bad.scores == {"acc": None} and "neither a choice nor an index" in bad.details["error"]
    assert get_metric("acc").score("0", "0", {}).scores == {"acc": None}
