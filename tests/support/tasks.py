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
    """An Inference and Evaluation task dict over `data` with numeric_match.

    Reuse is off unless `reuse` is given: every test's tasks share the session's coordinator, and
    write_items' items would otherwise come from whichever test ran them before.
    """
    task = {
        "name": over.pop("name", "t"),
        "mode": "inference_and_evaluation",
        "output": str(output),
        "evaluation_sets": [
            {"name": "q", "path": str(data), "columns": {"id": "id"}, "metrics": ["numeric_match", "exact_match"]}
        ],
        "models": models,
        "parameters": parameters or {},
        "reuse": False,
    }
    task.update(over)
    return task


def stub_task(tmp_path: Path, server: Any, n: int, *, name: str, output: Any = None, **over: Any) -> dict[str, Any]:
    """An Inference and Evaluation task of `n` items (write_items) on one model `m` at a stub `server`,
    reuse off, results under `output` (default tmp_path / "out"); `over` as for inference_task."""
    data = write_items(tmp_path / f"{name}.jsonl", n)
    model = {"name": "m", "url": server.url, "model": "stub-model"}
    out = tmp_path / "out" if output is None else output
    return inference_task(data, out, [model], name=name, **over)


def gsm8k_task(predictions: Path, output: Path, *, name: str, limit: int, **over: Any) -> dict[str, Any]:
    """An Evaluation Only task over the real GSM8K predictions of one model ('a'), first `limit` items.

    Reuse is off unless `reuse` is given: every test's tasks share the session's coordinator, and
    these items would otherwise come from whichever test ran the same set before.
    """
    task = {
        "name": name,
        "mode": "evaluation_only",
        "output": str(output),
        "models": [{"name": "a"}],
        "evaluation_sets": [
            {
                "name": "gsm8k",
                "columns": {"id": "id", "query": "question", "reference": "answer"},
                "prediction_files": {"a": str(predictions / "6b_finetuning.jsonl")},
                "metrics": ["numeric_match"],
                "limit": limit,
            }
        ],
        "reuse": False,
    }
    task.update(over)
    return task
