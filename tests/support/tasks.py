"""Builders of evaluation sets and task specs for tests and benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_items(path: Path, n: int, *, start: int = 0) -> Path:
    """A JSONL set of `n` queries whose reference is the stub server's default answer.

    The stub answers "The answer is N." with N the prompt's length, so `numeric_match` scores
    1.0 on every item that was answered, and any failed item shows as an error.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for i in range(start, start + n):
            query = f"Question number {i}: how long is this prompt?"
            f.write(json.dumps({"id": f"item-{i}", "query": query, "reference": f"#### {len(query)}"}) + "\n")
    return path


def inference_task(
    data: Path, output: Path, models: list[dict[str, Any]], *, parameters: dict[str, Any] | None = None, **over: Any
) -> dict[str, Any]:
    """An Inference and Evaluation task dict over `data` with numeric_match."""
    task = {
        "name": over.pop("name", "t"),
        "mode": "inference_and_evaluation",
        "output": str(output),
        "evaluation_sets": [
            {"name": "q", "path": str(data), "columns": {"id": "id"}, "metrics": ["numeric_match", "exact_match"]}
        ],
        "models": models,
        "parameters": parameters or {},
    }
    task.update(over)
    return task
