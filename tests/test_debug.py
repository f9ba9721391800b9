"""Debugging metrics on a few samples: every step printed, the judge and model asked only as needed,
nothing written anywhere."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from click.testing import CliRunner

import rayeval
from rayeval.cli import main
from tests.support.judged import PROMPT, judge_rule
from tests.support.judged import judged_task as _task


def _files(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def _write_task(tmp_path, task) -> str:
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return str(path)


@pytest.fixture
def judged_task(tmp_path, stub_server):
    judge = stub_server(responder=judge_rule)
    task, rows = _task(tmp_path, judge.url)
    post = tmp_path / "post.py"
    post.write_text(
        "def postprocess(judge_output, item):\n"
        "    return {'score': 1.0 if 'Score: 1' in judge_output else 0.0, 'why': judge_output[-8:]}\n"
    )
    task["evaluation_sets"][0]["metrics"][0]["postprocess"] = str(post)
    return task, rows, judge


def test_debug_prints_every_step_for_three_samples_and_writes_nothing(tmp_path, judged_task):
    task, rows, judge = judged_task
    path = _write_task(tmp_path, task)
    before = _files(tmp_path)
    result = CliRunner().invoke(main, ["debug", path, "--set", "capitals", "--samples", "3"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.count("=== sample ") == 3 and "=== sample 3/3: item q2 (set capitals)" in out
    for r in rows[:3]:
        prompt = PROMPT.format(query=r["query"], reference=r["answer"], prediction=r["pred"])
        assert "\n".join("    | " + line for line in prompt.splitlines()) in out  # the concatenated prompt
        right = int(r["pred"].lower() == r["answer"].lower())
        assert f"    | Thinking it over... Score: {right}" in out  # the raw judge output
    assert out.count("  parsed score:") == 3 and out.count("  postprocessed:") == 3
    assert "score: correct=0" in out and "score: correct=1" in out  # q0 is wrong, q1 right
    assert "score: exact_match=" in out
    assert judge.total_requests == 3
    assert _files(tmp_path) == before and not (tmp_path / "out").exists()


def test_show_prompt_does_not_ask_the_judge(tmp_path, judged_task):
    task, rows, judge = judged_task
    samples = rayeval.debug_metrics(task, "capitals", samples=2, show_prompt=True)
    assert judge.total_requests == 0
    steps = samples[0].metrics["correct"]
    assert steps["scores"] == {} and "output" not in steps["steps"]
    assert steps["steps"]["prompt"] == PROMPT.format(
        query=rows[0]["query"], reference=rows[0]["answer"], prediction=rows[0]["pred"]
    )


def test_typed_and_file_responses_replace_the_set_s_predictions(tmp_path, judged_task):
    task, rows, judge = judged_task
    typed = rayeval.debug_metrics(task, samples=2, responses=["City 0", "nowhere"])
    assert [s.response for s in typed] == ["City 0", "nowhere"] and typed[0].source == "given"
    assert typed[0].metrics["correct"]["scores"] == {"correct": 1.0}
    assert typed[1].metrics["correct"]["scores"] == {"correct": 0.0}
    by_id = tmp_path / "responses.json"
    by_id.write_text(json.dumps({"q1": "City 1"}))
    result = CliRunner().invoke(
        main, ["debug", _write_task(tmp_path, task), "--samples", "2", "--responses", str(by_id), "--json"]
    )
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got[0]["inference"]["error"] == "no response given for this item" and got[0]["metrics"] == {}
    assert got[1]["response"] == "City 1" and got[1]["metrics"]["correct"]["scores"]["correct"] == 1.0
    assert judge.total_requests == 3


def test_debug_asks_the_chosen_model_in_inference_mode(tmp_path, stub_server):
    model = stub_server(responder=lambda body: "city 1")
    judge = stub_server(responder=judge_rule)
    task, _ = _task(tmp_path, judge.url)
    task["mode"] = "inference_and_evaluation"
    task["models"] = [{"name": "m", "url": model.url, "model": "stub-model"}]
    task["evaluation_sets"][0].pop("predictions")
    samples = rayeval.debug_metrics(task, samples=2, model="m")
    assert model.total_requests == 2 and judge.total_requests == 2
    assert [s.response for s in samples] == ["city 1", "city 1"] and samples[0].source == "model m"
    assert [s.metrics["correct"]["scores"]["correct"] for s in samples] == [0.0, 1.0]
    assert samples[0].inference["attempts"] == 1 and "latency_ms" in samples[0].inference


def test_debug_names_what_to_fix(tmp_path, judged_task):
    task, _, _ = judged_task
    with pytest.raises(rayeval.SpecError, match="no set 'nope'; its sets: capitals"):
        rayeval.debug_metrics(task, "nope")
    with pytest.raises(rayeval.SpecError, match="no model 'x'; its models: m"):
        rayeval.debug_metrics(task, model="x")
    result = CliRunner().invoke(main, ["debug", _write_task(tmp_path, task), "--model", "m", "--response", "a"])
    assert result.exit_code == 2 and "give --model or responses, not both" in result.output


def test_preview_shows_each_request_as_it_will_be_sent(tmp_path):
    """`rayeval preview`: a built-in set's first items with its template and the task's system prompt, for a
    chat model; a set of your own for a completions model; nothing sent."""
    from tests.conftest import SHARED_DATA

    task = {
        "name": "pv",
        "mode": "inference_and_evaluation",
        "models": [
            {"name": "chat", "url": "http://127.0.0.1:9/v1", "model": "served-id"},
            {"name": "plain", "url": "http://127.0.0.1:9/v1/completions"},
        ],
        "parameters": {"SYSTEM_PROMPT": "Be brief.", "MAX_TOKENS": 64, "DO_SAMPLE": False},
        "evaluation_sets": [
            {"name": "g", "builtin": "gsm8k", "path": str(SHARED_DATA / "gsm8k")},
            {"name": "mine", "path": "mine.jsonl", "columns": {"id": "id"}, "metrics": ["exact_match"]},
        ],
    }
    (tmp_path / "mine.jsonl").write_text(json.dumps({"id": "x1", "query": "Say hi", "reference": "hi"}) + "\n")
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    result = CliRunner().invoke(main, ["preview", str(tmp_path / "task.yaml"), "--set", "g", "--n", "2", "--json"])
    assert result.exit_code == 0, result.output
    first, second = (json.loads(line) for line in result.output.splitlines())
    body = first["body"]
    assert first["url"] == "http://127.0.0.1:9/v1/chat/completions" and body["model"] == "served-id"
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    question = body["messages"][1]["content"]
    assert question.startswith("Question: ") and question.endswith("Let's think step by step\nAnswer:")
    assert body["temperature"] == 0.0 and body["max_tokens"] == 64 and second["item_id"] != first["item_id"]
    result = CliRunner().invoke(main, ["preview", str(tmp_path / "task.yaml"), "--set", "mine", "--model", "plain"])
    assert result.exit_code == 0, result.output
    assert "--- x1  POST http://127.0.0.1:9/v1/completions" in result.output
    assert '"prompt": "Say hi"' in result.output and ">>> reference: hi" in result.output


def test_preview_of_a_set_scored_by_loglikelihood_shows_a_request_per_choice(tmp_path):
    from rayeval.inference.loglikelihood import ContinuationTokenizer
    from rayeval.serve_apps.tiny_model import build_tiny_model

    tokenizer = build_tiny_model(tmp_path / "tiny")
    task = {
        "name": "pv-ll",
        "mode": "inference_and_evaluation",
        "models": [{"name": "svc", "url": "http://127.0.0.1:9/v1", "tokenizer": str(tokenizer)}],
        "evaluation_sets": [{"name": "h", "builtin": "hellaswag"}],
    }
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    result = CliRunner().invoke(main, ["preview", str(tmp_path / "task.yaml"), "--n", "1", "--json"])
    assert result.exit_code == 0, result.output
    entry = json.loads(result.output)
    assert entry["url"] == "http://127.0.0.1:9/v1/completions" and len(entry["requests"]) == 4
    first = entry["requests"][0]
    ids, context_len, n = ContinuationTokenizer(str(tokenizer), 2048).prompt(entry["context"], " " + first["choice"])
    assert first["body"]["prompt"] == ids and (first["context_tokens"], first["choice_tokens"]) == (context_len, n)
    assert first["body"]["echo"] is True and first["body"]["max_tokens"] == 1
    text = CliRunner().invoke(main, ["preview", str(tmp_path / "task.yaml"), "--n", "1"]).output
    assert "context: " in text and f"choice {first['choice']!r}: {context_len} context + {n} choice tokens" in text
