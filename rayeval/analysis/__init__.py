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

__all__ = ["Comparison", "Results", "ScoreRow", "Standing", "Usage", "compute_results", "format_results"]
