"""ROUGE-1/2/L F-measure via the rouge_score package."""

from __future__ import annotations

from typing import Any

from rayeval.metrics._base import ItemScore, Metric
from rayeval.metrics._registry import register_metric

__all__ = ["Rouge"]

ROUGE_TYPES = ["rouge1", "rouge2", "rougeL"]


@register_metric
class Rouge(Metric):
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measure, one output each.

    Uses rouge_score's default regex tokenizer (and Porter stemmer), which needs no nltk data.
    """

    name = "rouge"
    description = "ROUGE-1/2/L F-measure (rouge_score, Porter stemmer by default)"
    defaults = {"use_stemmer": True}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        from rouge_score import rouge_scorer  # nltk and scipy: imported only where rouge is used

        use_stemmer = self.options["use_stemmer"]
        if not isinstance(use_stemmer, bool):
            raise self._bad_option("use_stemmer", f"expected true or false, got {use_stemmer!r}")
        self._scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=use_stemmer)

    def outputs(self) -> list[str]:
        """Returns ["rouge1", "rouge2", "rougeL"]."""
        return list(ROUGE_TYPES)

    def score(self, prediction: str, reference: str, item: dict[str, Any]) -> ItemScore:
        """Scores the F-measure of each ROUGE type (reference is the target)."""
        result = self._scorer.score(str(reference), prediction)
        return ItemScore({rouge_type: result[rouge_type].fmeasure for rouge_type in ROUGE_TYPES})
