"""Tests of ROUGE and BLEU against rouge_score and sacrebleu called directly."""

from __future__ import annotations

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from rayeval.errors import MetricError
from rayeval.metrics import get_metric
from rayeval.metrics._bleu import CorpusBleuAggregator

# (prediction, reference) pairs: summaries and WMT-style translations.
PAIRS = [
    (
        "The cat was found under the bed after a long search.",
        "After searching for hours, the family found the cat hiding under the bed.",
    ),
    (
        "Police arrested two men suspected of robbing a bank in London on Tuesday.",
        "Two men were arrested by police on Tuesday on suspicion of robbing a London bank.",
    ),
    (
        "The government announced new measures to reduce carbon emissions by 2030.",
        "New measures to cut carbon emissions by 2030 were announced by the government.",
    ),
    (
        "It is a guide to action which ensures that the military always obeys the commands of the party.",
        "It is a guide to action that ensures that the military will forever heed Party commands.",
    ),
    (
        "He said the results were encouraging but more work was needed.",
        "The results are encouraging, he said, although more work remains to be done.",
    ),
]


@pytest.mark.parametrize("use_stemmer", [True, False])
def test_rouge_matches_rouge_score(use_stemmer: bool) -> None:
    metric = get_metric("rouge", use_stemmer=use_stemmer)
    direct = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer)
    assert metric.outputs() == ["rouge1", "rouge2", "rougeL"]
    for prediction, reference in PAIRS:
        expected = direct.score(reference, prediction)
        scores = metric.score(prediction, reference, {}).scores
        for rouge_type in ("rouge1", "rouge2", "rougeL"):
            assert scores[rouge_type] == pytest.approx(expected[rouge_type].fmeasure, abs=1e-12)
            assert 0.0 < scores[rouge_type] < 1.0


def test_rouge_edge_cases_and_mean_aggregate() -> None:
    metric = get_metric("rouge")
    perfect = metric.score("same words", "same words", {}).scores
    assert perfect == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    assert metric.score("", "something", {}).scores == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    agg = metric.aggregator("rougeL")
    for prediction, reference in PAIRS:
        agg.add(metric.score(prediction, reference, {}).scores["rougeL"], None)
    direct = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = sum(direct.score(r, p)["rougeL"].fmeasure for p, r in PAIRS) / len(PAIRS)
    assert agg.count == len(PAIRS)
    assert agg.value() == pytest.approx(expected)


def test_rouge_rejects_bad_option() -> None:
    with pytest.raises(MetricError, match="use_stemmer"):
        get_metric("rouge", use_stemmer="yes")


def test_bleu_sentence_score_matches_sacrebleu() -> None:
    metric = get_metric("bleu")
    for prediction, reference in PAIRS:
        result = metric.score(prediction, reference, {})
        expected = sacrebleu.sentence_bleu(prediction, [reference])
        assert result.scores["bleu"] == pytest.approx(expected.score / 100, abs=1e-12)
        assert result.details == {
            "correct": list(expected.counts),
            "total": list(expected.totals),
            "sys_len": expected.sys_len,
            "ref_len": expected.ref_len,
        }
        assert len(result.details["correct"]) == len(result.details["total"]) == 4


@pytest.mark.parametrize("tokenize", ["13a", "intl", "char"])
def test_bleu_aggregate_equals_corpus_bleu(tokenize: str) -> None:
    metric = get_metric("bleu", tokenize=tokenize)
    agg = metric.aggregator("bleu")
    assert isinstance(agg, CorpusBleuAggregator)
    for prediction, reference in PAIRS:
        result = metric.score(prediction, reference, {})
        agg.add(result.scores["bleu"], result.details)
    hyps = [p for p, _ in PAIRS]
    refs = [r for _, r in PAIRS]
    expected = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score / 100
    assert agg.count == len(PAIRS)
    assert agg.value() == expected


def test_bleu_aggregate_with_zero_ngram_matches_and_empty() -> None:
    metric = get_metric("bleu")
    pairs = [("completely unrelated words", "the cat sat on the mat"), ("", "nothing here")]
    agg = metric.aggregator("bleu")
    assert agg.value() is None
    for prediction, reference in pairs:
        result = metric.score(prediction, reference, {})
        agg.add(result.scores["bleu"], result.details)
    agg.add(None, None)  # not scorable: skipped
    hyps, refs = zip(*pairs, strict=True)
    assert agg.count == 2
    assert agg.value() == sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score / 100 == 0.0


def test_bleu_aggregator_needs_statistics() -> None:
    with pytest.raises(ValueError, match="correct"):
        get_metric("bleu").aggregator("bleu").add(0.5, {})


def test_bleu_rejects_unknown_tokenizer() -> None:
    with pytest.raises(MetricError, match="tokenize.*13a"):
        get_metric("bleu", tokenize="moses")


def test_bleu_perfect_match_stays_within_unit_interval() -> None:
    metric = get_metric("bleu")
    agg = metric.aggregator("bleu")
    for text in ("A", "The cat sat on the mat."):
        result = metric.score(text, text, {})
        assert result.scores["bleu"] == 1.0
        agg.add(result.scores["bleu"], result.details)
    assert agg.value() == 1.0


def test_rouge_needs_no_nltk_data(monkeypatch: pytest.MonkeyPatch) -> None:
    nltk = pytest.importorskip("nltk")

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("nltk data must not be needed")

    monkeypatch.setattr(nltk, "download", forbidden)
    monkeypatch.setattr(nltk.data, "find", forbidden)
    monkeypatch.setattr(nltk.data, "load", forbidden)
    metric = get_metric("rouge")
    assert metric.score("Running dogs were barking.", "The dog runs and barks.", {}).scores["rouge1"] > 0
