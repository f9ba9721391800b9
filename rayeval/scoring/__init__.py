"""Scoring: the Ray Data stages that judge (`judge`) and score (`stage`) each answered item, and pairwise
judging against the reference model (`pairwise`)."""
