"""Metric steps on items with several samples: mean over samples, unbiased pass@k, corpus BLEU over samples."""

from __future__ import annotations

import itertools
import math

import pytest
import sacrebleu

from rayeval.metrics import MetricSteps, corpus_inputs, get_metric, pass_at_k, ref_outputs
from rayeval.spec import MetricRef


def _pass_at_k_by_enumeration(n: int, c: int, k: int) -> float:
    """The definition itself: the share of k-subsets of the n samples that hold a passing one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_pass_at_k_is_the_unbiased_estimator(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            expected = _pass_at_k_by_enumeration(n, c, k)
            assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
            assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError, match="0 < k <= n"):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(3, 4, 1)


def _steps(ref):
    return MetricSteps.from_ref(MetricRef.model_validate(ref))


def test_samples_are_scored_one_by_one_with_mean_and_pass_at_k():
    steps = _steps({"name": "exact_match", "pass_at": [1, 2, 5]})
    assert steps.outputs() == ["exact_match", "exact_match_pass@1", "exact_match_pass@2", "exact_match_pass@5"]
    samples = ["Paris", "paris.", "Lyon", "Nice", "Lyon"]
    scores, details = steps.run({"prediction": samples[0], "reference": "Paris", "samples": samples})
    assert details["sample_scores"]["exact_match"] == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert scores["exact_match"] == pytest.approx(2 / 5)
    for k in (1, 2, 5):
        assert scores[f"exact_match_pass@{k}"] == pytest.approx(_pass_at_k_by_enumeration(5, 2, k))
    assert len(details["samples"]) == 5


def test_one_response_is_one_sample_and_pass_at_k_beyond_it_is_not_scored():
    steps = _steps({"name": "exact_match", "pass_at": [1, 3]})
    scores, _ = steps.run({"prediction": "Paris", "reference": "Paris"})
    assert scores == {"exact_match": 1.0, "exact_match_pass@1": 1.0, "exact_match_pass@3": None}


def test_pass_threshold_decides_which_samples_pass():
    steps = _steps({"name": "f1", "pass_at": [1], "pass_threshold": 0.6})
    scores, details = steps.run(
        {"prediction": "a", "reference": "the big red fox", "samples": ["big red fox", "big", "cat"]}
    )
    f1s = details["sample_scores"]["f1"]
    assert scores["f1"] == pytest.approx(sum(f1s) / 3)
    assert scores["f1_pass@1"] == pytest.approx(sum(v >= 0.6 for v in f1s) / 3) == pytest.approx(1 / 3)


def test_a_failing_sample_leaves_the_item_unscored_with_its_error(tmp_path):
    script = tmp_path / "pre.py"
    script.write_text(
        "def preprocess(item):\n    if item['prediction'] == 'bad':\n        raise ValueError('no')\n    return item\n"
    )
    from rayeval.metrics import checked_source

    ref = MetricRef(name="exact_match", pass_at=[1], preprocess=str(script))
    ref = ref.with_script_sources({"preprocess": checked_source(str(script), "preprocess", field="x")})
    scores, details = MetricSteps.from_ref(ref).run({"prediction": "ok", "reference": "ok", "samples": ["ok", "bad"]})
    assert scores == {"exact_match": None, "exact_match_pass@1": None}
    assert details["error"].startswith("sample 1: preprocess script 'pre.py' raised ValueError: no")


def test_judged_samples_are_parsed_one_by_one_and_a_parse_failure_is_kept_apart():
    ref = {
        "name": "ok",
        "judge": {"model": "j", "prompt": "{prediction}", "parser": {"kind": "labels", "labels": {"Y": 1, "N": 0}}},
    }
    steps = _steps({**ref, "pass_at": [2]})
    judged = {"samples": [{"output": "Y"}, {"output": "N"}, {"output": "Y"}]}
    scores, details = steps.run({"prediction": "a", "samples": ["a", "b", "c"]}, judged)
    assert scores == {"ok": pytest.approx(2 / 3), "ok_pass@2": pytest.approx(_pass_at_k_by_enumeration(3, 2, 2))}
    judged["samples"][1] = {"output": "maybe"}
    scores, details = steps.run({"prediction": "a", "samples": ["a", "b", "c"]}, judged)
    assert scores == {"ok": None, "ok_pass@2": None}
    assert details["parse_failure"].startswith("sample 1:")


def test_corpus_bleu_over_samples_counts_every_sample():
    metric = get_metric("bleu")
    steps = _steps({"name": "bleu"})
    items = [
        ("the cat sat on the mat", ["the cat sat on a mat", "a cat on the mat"]),
        ("it is raining today", ["it rains today", "it is raining today"]),
    ]
    agg = metric.aggregator("bleu")
    for reference, samples in items:
        scores, details = steps.run({"prediction": samples[0], "reference": reference, "samples": samples})
        for value, d in corpus_inputs(agg, "bleu", scores["bleu"], details):
            agg.add(value, d)
    hyps = [s for _, samples in items for s in samples]
    refs = [r for r, samples in items for _ in samples]
    assert agg.value() == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score / 100)


def test_ref_outputs_lists_pass_at_k_of_every_output():
    outs = [o for o, _ in ref_outputs(MetricRef(name="rouge", pass_at=[1]))]
    assert outs[:3] == ["rouge1", "rouge2", "rougeL"]
    assert outs[3:] == ["rouge1_pass@1", "rouge2_pass@1", "rougeL_pass@1"]
