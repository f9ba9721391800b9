"""BLEU via sacrebleu: sentence BLEU per item, corpus BLEU as the aggregate."""

from __future__ import annotations

from typing import Any

from sacrebleu.metrics.bleu import BLEU, MAX_NGRAM_ORDER

from rayeval.metrics._base import Aggregator, ItemScore, Metric
from rayeval.metrics._registry import register_metric

__all__ = ["Bleu", "CorpusBleuAggregator"]

_ORDER = MAX_NGRAM_ORDER


def _unit(score: float) -> float:
    """Maps a sacrebleu score (0-100) to [0, 1], clamping float noise such as 100.00000000000004."""
    return min(1.0, max(0.0, score / 100))


class CorpusBleuAggregator(Aggregator):
    """Sums the items' n-gram statistics and returns corpus BLEU / 100.

    The value equals `sacrebleu.corpus_bleu(hyps, [refs]).score / 100` over the added items
    (clamped to 1.0 where float rounding of a perfect corpus gives 1.0000000000000004).
    """

    def __init__(self) -> None:
        super().__init__()
        self._correct = [0] * _ORDER
        self._total = [0] * _ORDER
        self._sys_len = 0
        self._ref_len = 0
        # corpus_bleu's defaults: exp smoothing, no effective order.
        self._bleu = BLEU()

    def add(self, score: float | None, details: dict[str, Any] | None) -> None:
        """Adds one item's statistics (`correct`, `total`, `sys_len`, `ref_len` in details).

        Raises:
            ValueError: A scored item has no BLEU statistics in its details.
        """
        if score is None:
            return
        if not details or not all(k in details for k in ("correct", "total", "sys_len", "ref_len")):
            raise ValueError("bleu aggregation needs 'correct', 'total', 'sys_len' and 'ref_len' in details")
        for n in range(_ORDER):
            self._correct[n] += int(details["correct"][n])
            self._total[n] += int(details["total"][n])
        self._sys_len += int(details["sys_len"])
        self._ref_len += int(details["ref_len"])
        self.count += 1

    def value(self) -> float | None:
        """Returns corpus BLEU / 100, or None when empty."""
        if not self.count:
            return None
        result = BLEU.compute_bleu(
            list(self._correct),
            list(self._total),
            self._sys_len,
            self._ref_len,
            smooth_method=self._bleu.smooth_method,
            smooth_value=self._bleu.smooth_value,
            effective_order=self._bleu.effective_order,
            max_ngram_order=_ORDER,
        )
        return _unit(result.score)


@register_metric
class Bleu(Metric):
    """Sentence BLEU per item; the aggregate is corpus BLEU from summed statistics."""

    name = "bleu"
    description = "sacrebleu BLEU / 100: sentence BLEU per item, corpus BLEU as the aggregate"
    defaults = {"tokenize": BLEU.TOKENIZER_DEFAULT}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        tokenize = self.options["tokenize"]
        known = sorted(BLEU.TOKENIZERS)
        if tokenize not in known:
            raise self._bad_option("tokenize", f"unknown tokenizer {tokenize!r}; known: {', '.join(known)}")
        try:
            # As sacrebleu.sentence_bleu: exp smoothing with effective order.
            self._sentence = BLEU(tokenize=tokenize, effective_order=True)
        except Exception as exc:  # e.g. ja-mecab without its extra package installed
            raise self._bad_option("tokenize", f"tokenizer {tokenize!r} cannot be loaded: {exc}") from exc

    def score(self, prediction: str, reference: str, item: dict[str, Any]) -> ItemScore:
        """Scores sentence BLEU / 100 and keeps the sentence's n-gram statistics in details."""
        result = self._sentence.sentence_score(prediction, [str(reference)])
        details = {
            "correct": [int(c) for c in result.counts],
            "total": [int(t) for t in result.totals],
            "sys_len": int(result.sys_len),
            "ref_len": int(result.ref_len),
        }
        return ItemScore({self.name: _unit(result.score)}, details)

    def aggregator(self, output: str) -> CorpusBleuAggregator:
        """Returns a corpus-BLEU aggregator."""
        self._check_output(output)
        return CorpusBleuAggregator()
