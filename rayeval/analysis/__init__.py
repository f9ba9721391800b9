"""A task's results as people read them, computed from the stored per-item rows: scores with bootstrap
intervals, weighted comprehensive scores and rankings, usage, the comparison with a reference model
(`board`), every step of one item (`item`), the HTML report (`html`) and plain-text views (`text`)."""

from rayeval.analysis.board import Comparison, Results, ScoreRow, Standing, Usage, compute_results
from rayeval.analysis.html import render_report
from rayeval.analysis.item import ItemView, Step, format_item, item_view
from rayeval.analysis.text import format_results

__all__ = [
    "Comparison",
    "ItemView",
    "Results",
    "ScoreRow",
    "Standing",
    "Step",
    "Usage",
    "compute_results",
    "format_item",
    "format_results",
    "item_view",
    "render_report",
]
