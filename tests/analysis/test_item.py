"""One item step by step: prompt sent (the item's own system message and the task's), response,
inference facts, and each metric's steps, with the reference model's response beside it."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

import rayeval
from rayeval.cli import main
from tests.support.judged import PROMPT, judge_rule
from tests.support.openai_server import prompt_text


def model_rule(body: dict) -> str:
    n = int(re.search(r"Capital (\d+)", prompt_text(body)).group(1))
    right = n % 2 == 0 or body["model"] == "base"
    return f"CITY {n}" if right else f"Town {n}"


def test_an_items_steps_with_the_reference_beside_them(ray_cluster, stub_server, tmp_path):
    models = stub_server(responder=model_rule, models=("m", "base"))
    judge = stub_server(responder=judge_rule)
    rows = [
        {"id": f"q{i}", "query": f"Capital {i}?", "answer": f"City {i}", "sys": "Answer briefly."} for i in range(6)
    ]
    (tmp_path / "set.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "pre.py").write_text(
        "def preprocess(item):\n    return {**item, 'prediction': item['prediction'].lower()}\n"
    )
    task = {
        "name": "steps",
        "mode": "inference_and_evaluation",
        "output": str(tmp_path / "out"),
        "reuse": False,
        "reference_model": "base",
        "models": [{"name": n, "url": models.url, "model": n} for n in ("m", "base")],
        "judges": [{"name": "referee", "url": judge.url, "model": "stub-model"}],
        "parameters": {"SYSTEM_PROMPT": "Be exact."},
        "evaluation_sets": [
            {
                "name": "capitals",
                "path": str(tmp_path / "set.jsonl"),
                "columns": {"id": "id", "reference": "answer", "system": "sys"},
                "metrics": [
                    {"name": "correct", "judge": {"model": "referee", "prompt": PROMPT,
                                                  "parser": {"kind": "regex", "pattern": r"Score: ([01])"}}},
                    {"name": "exact_match", "preprocess": str(tmp_path / "pre.py")},
                ],
            }
        ],
    }  # fmt: skip
    handle = rayeval.run(task)
    assert all(b["messages"][0] == {"role": "system", "content": "Answer briefly.\n\nBe exact."}
               for b in models.received)  # fmt: skip

    (view,) = rayeval.item(handle.task_id, "q1")
    steps = {s.name: s.value for s in view.steps}
    names = [s.name for s in view.steps]
    assert names[:4] == ["query", "prompt sent", "response", "inference"]
    assert steps["prompt sent"]["messages"] == [
        {"role": "system", "content": "Answer briefly.\n\nBe exact."},
        {"role": "user", "content": "Capital 1?"},
    ]
    assert steps["response"] == "Town 1" and steps["inference"]["attempts"] == 1
    assert steps["correct: judge prompt"].startswith("Question: Capital 1?\nReference: City 1\nAnswer: Town 1")
    assert (
        steps["correct: raw judge answer"] == "Thinking it over... Score: 0" and steps["correct: parsed score"] == 0.0
    )
    assert steps["exact_match: preprocessing output"] == {"prediction": "town 1"}
    assert view.scores == {"correct": 0.0, "exact_match": 0.0}
    assert (
        names.index("correct: judge prompt")
        < names.index("correct: raw judge answer")
        < names.index("correct: parsed score")
    )
    ref = view.reference
    assert ref.model == "base" and next(s.value for s in ref.steps if s.name == "response") == "CITY 1"
    assert ref.scores == {"correct": 1.0, "exact_match": 1.0}

    shown = CliRunner().invoke(main, ["item", handle.task_id, "q1"])
    assert shown.exit_code == 0, shown.output
    for text in ("== capitals / q1 / model m", "prompt sent", "correct: raw judge answer", "-- reference model base"):
        assert text in shown.output
    missing = CliRunner().invoke(main, ["item", handle.task_id, "nope"])
    assert missing.exit_code == 1 and "has no item 'nope'" in missing.output
