"""Pre/post-processing scripts around rule metrics, end to end on a real Ray pipeline."""

from __future__ import annotations

import json

import pytest
import yaml

import rayeval
from rayeval.errors import MetricError

PRE = """
def preprocess(item):
    if item["item_id"] == "boom":
        raise ValueError("cannot read " + item["prediction"])
    return {**item, "prediction": item["prediction"].strip().lower()}
"""
POST = """
def postprocess(judge_output, item):
    return {"score": 1.0 - float(judge_output), "flipped": True}
"""


def _task(tmp_path, metrics):
    rows = [
        {"id": "a", "query": "q", "answer": "yes", "pred": "  YES "},
        {"id": "b", "query": "q", "answer": "no", "pred": "No"},
        {"id": "c", "query": "q", "answer": "no", "pred": "maybe"},
        {"id": "boom", "query": "q", "answer": "no", "pred": "???"},
    ]
    (tmp_path / "set.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "pre.py").write_text(PRE)
    (tmp_path / "post.py").write_text(POST)
    task = {
        "name": "scripts",
        "mode": "evaluation_only",
        "output": "out",
        "models": [{"name": "m"}],
        "evaluation_sets": [
            {
                "name": "s",
                "path": "set.jsonl",
                "columns": {"id": "id", "reference": "answer"},
                "predictions": {"m": "pred"},
                "metrics": metrics,
            }
        ],
    }
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def test_scripts_shape_the_scores_and_a_raising_one_fails_only_its_item(ray_cluster, tmp_path):
    path = _task(tmp_path, [{"name": "exact_match", "preprocess": "pre.py", "postprocess": "post.py"}])
    handle = rayeval.run(path)  # script paths are relative to the task file
    rows = {r["item_id"]: r for r in handle.items().to_table().to_pylist()}
    # a/b match once lower-cased and stripped (1.0), then postprocess flips them to 0.0; c: 0.0 -> 1.0
    assert {k: rows[k]["score__exact_match"] for k in "abc"} == {"a": 0.0, "b": 0.0, "c": 1.0}
    steps = json.loads(rows["a"]["details"])["exact_match"]
    assert steps["preprocessed"] == {"prediction": "yes"} and steps["scored"] == 1.0
    assert steps["postprocessed"] == {"score": 0.0, "flipped": True}
    boom = json.loads(rows["boom"]["details"])["exact_match"]
    assert rows["boom"]["score__exact_match"] is None
    assert boom["error"].startswith("preprocess script raised ValueError: cannot read ???")
    assert "pre.py:4 in preprocess" in boom["error"]
    (summary,) = handle.results()
    assert (summary["items"], summary["scored"], summary["errors"]) == (4, 3, 1)
    assert summary["value"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "metrics, message",
    [
        ([{"name": "exact_match", "preprocess": "missing.py"}], "metrics.0.preprocess.*not found"),
        ([{"name": "rouge", "postprocess": "post.py"}], "one per-item score; 'rouge' has outputs"),
        ([{"name": "bleu", "postprocess": "post.py"}], "'bleu' has a corpus-level score"),
    ],
)
def test_scripts_that_cannot_apply_fail_before_anything_runs(tmp_path, metrics, message):
    path = _task(tmp_path, metrics)
    with pytest.raises(MetricError, match=message):
        rayeval.run(path)
    assert not (tmp_path / "out").exists()
