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
    assert boom["error"].startswith("preprocess script 'pre.py' raised ValueError: cannot read ???")
    assert "pre.py:4 in preprocess" in boom["error"]
    (summary,) = handle.results()
    assert (summary["items"], summary["scored"], summary["errors"]) == (4, 3, 1)
    assert summary["value"] == pytest.approx(1 / 3)
    progress = handle.status()["progress"]["m"]["s"]  # the progress line counts script errors as the summary does
    assert (progress["done"], progress["errors"]) == (4, 1)


HOSTILE_PRE = """
import os, sys, time
def preprocess(item):
    kind = item["item_id"]
    if kind == "loop":
        while True:
            pass
    if kind == "sleep":
        time.sleep(3600)
    if kind == "exit":
        sys.exit(0)
    if kind == "die":
        os._exit(3)
    if kind == "set":
        return {**item, "prediction": {"not", "json"}}
    if kind == "none":
        return None
    return item
"""
HOSTILE_POST = """
def postprocess(judge_output, item):
    if item["item_id"] == "nan":
        return float("nan")
    if item["item_id"] == "object":
        return {"score": 1.0, "extra": object()}
    if item["item_id"] == "text":
        return "high"
    return float(judge_output)
"""


def test_hostile_scripts_fail_their_items_alone(ray_cluster, tmp_path):
    kinds = ["loop", "sleep", "exit", "die", "set", "none", "nan", "object", "text", "ok1", "ok2"]
    rows = [{"id": k, "query": "q", "answer": "yes", "pred": "yes"} for k in kinds]
    path = _task(tmp_path, [])  # then the hostile set and scripts in place of its own
    (tmp_path / "pre.py").write_text(HOSTILE_PRE)
    (tmp_path / "post.py").write_text(HOSTILE_POST)
    task = yaml.safe_load(path.read_text())
    task["evaluation_sets"][0]["metrics"] = [
        {"name": "exact_match", "preprocess": "pre.py", "postprocess": "post.py", "script_timeout_s": 2}
    ]
    path.write_text(yaml.safe_dump(task))
    (tmp_path / "set.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    handle = rayeval.run(path)
    stored = {r["item_id"]: r for r in handle.items().to_table().to_pylist()}
    errors = {k: (json.loads(r["details"])["exact_match"].get("error") or "") for k, r in stored.items()}
    assert "preprocess script 'pre.py' exceeded 2 s on this item (script_timeout_s)" == errors["loop"]
    assert "exceeded 2 s" in errors["sleep"]
    assert errors["exit"].startswith("preprocess script 'pre.py' raised SystemExit: 0")
    assert errors["die"] == "preprocess script 'pre.py' ended its process (exit status 3) on this item"
    assert "returned {" in errors["set"] and "not plain data" in errors["set"]
    assert "returned NoneType, expected a dict" in errors["none"]
    assert errors["nan"].startswith("postprocess script 'post.py' returned nan (not a finite number)")
    assert "postprocess script 'post.py' returned {'score': 1.0, 'extra': <object" in errors["object"]
    assert "not plain data" in errors["object"]
    assert "returned str 'high', expected a number" in errors["text"]
    assert errors["ok1"] == errors["ok2"] == ""
    assert stored["ok1"]["score__exact_match"] == stored["ok2"]["score__exact_match"] == 1.0
    (summary,) = handle.results()
    assert (summary["items"], summary["scored"], summary["errors"]) == (11, 2, 9)
    assert summary["value"] == 1.0  # NaN poisons nothing
    progress = handle.status()["progress"]["m"]["s"]
    assert (progress["done"], progress["errors"]) == (11, 9)


@pytest.mark.parametrize(
    "code, message",
    [
        ("while True:\n    pass\n", "exceeded 1 s while loading \\(script_timeout_s\\)"),
        ("import sys\nsys.exit(2)\n", "does not load: SystemExit: 2"),
    ],
)
def test_a_script_that_hangs_or_exits_at_import_fails_the_task_before_it_runs(tmp_path, code, message):
    path = _task(tmp_path, [{"name": "exact_match", "preprocess": "bad.py", "script_timeout_s": 1}])
    (tmp_path / "bad.py").write_text(code + "def preprocess(item):\n    return item\n")
    with pytest.raises(MetricError, match=message):
        rayeval.run(path)
    assert not (tmp_path / "out").exists()


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
