"""A judged task for tests: a judge served over the OpenAI wire format that answers by a rule the test
knows (Score 1 when the answer equals the reference), over a set whose every third answer is wrong and
some answers are garbage (parse failures)."""

from __future__ import annotations

import json
import re

from tests.support.openai_server import prompt_text

PROMPT = "Question: {query}\nReference: {reference}\nAnswer: {prediction}\nReply 'Score: 1' if the answer is right."


def judge_rule(body: dict) -> str:
    """The judge: Score 1 when the answer equals the reference (ignoring case), garbage when asked to."""
    text = prompt_text(body)
    reference = re.search(r"^Reference: (.*)$", text, re.M).group(1)
    answer = re.search(r"^Answer: (.*)$", text, re.M).group(1)
    if "garble" in answer:
        return "I would rather not say."
    return f"Thinking it over... Score: {int(answer.strip().lower() == reference.strip().lower())}"


def judged_set(tmp_path, n: int = 40):
    rows = []
    for i in range(n):
        prediction = f"city {i}" if i % 3 else f"town {i}"  # every third one wrong
        if i % 10 == 7:
            prediction = "garble"
        rows.append({"id": f"q{i}", "query": f"Capital {i}?", "answer": f"City {i}", "pred": prediction})
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, rows


def judged_task(tmp_path, judge_url, *, concurrency=2, metrics=None):
    data, rows = judged_set(tmp_path)
    judge_metric = {
        "name": "correct",
        "judge": {"model": "referee", "prompt": PROMPT, "parser": {"kind": "regex", "pattern": r"Score: ([01])"}},
    }
    task = {
        "name": "judged",
        "mode": "evaluation_only",
        "output": str(tmp_path / "out"),
        "models": [{"name": "m"}],
        "judges": [{"name": "referee", "url": judge_url, "model": "stub-model"}],
        "parameters": {"MAX_JUDGING_CONCURRENCY": concurrency},
        "evaluation_sets": [
            {
                "name": "capitals",
                "path": str(data),
                "columns": {"id": "id", "reference": "answer"},
                "predictions": {"m": "pred"},
                "metrics": metrics or [judge_metric, "exact_match"],
            }
        ],
    }
    return task, rows
