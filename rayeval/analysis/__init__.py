"""A task's results as people read them: intervals, weighted comprehensive scores, rankings, usage,
and the comparison with a reference model (computed from the stored per-item rows)."""

from rayeval.analysis._board import (
    Comparison,
    Results,
    ScoreRow,
    Standing,
    Usage,
    compute_results,
    format_results,
)
from rayeval.analysis._html import render_report
from rayeval.analysis._item import ItemView, Step, format_item, item_view

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
