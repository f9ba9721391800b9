"""Judge-model metrics end to end: a judge served over the OpenAI wire format that answers by a rule
the test knows, so every expected score is exact; garbage answers are parse failures, never 0."""

from __future__ import annotations

import json
import re

import pytest

import rayeval
from rayeval.analysis.text import progress_lines
from rayeval.errors import TooManyErrors
from tests.support.judged import PROMPT, judge_rule
from tests.support.judged import judged_task as _task
from tests.support.openai_server import prompt_text


def test_judge_scores_are_exact_and_parse_failures_are_counted_apart(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.05, responder=judge_rule)
    task, rows = _task(tmp_path, server.url, concurrency=2)
    handle = rayeval.run(task)
    stored = {r["item_id"]: r for r in handle.items().to_table().to_pylist()}
    for r in rows:
        got = stored[r["id"]]
        steps = json.loads(got["details"])["correct"]
        assert steps["prompt"] == PROMPT.format(query=r["query"], reference=r["answer"], prediction=r["pred"])
        if r["pred"] == "garble":
            assert got["score__correct"] is None and steps["parse_failure"].startswith("no match")
            assert steps["output"] == "I would rather not say."
        else:
            expected = float(r["pred"].lower() == r["answer"].lower())
            assert got["score__correct"] == expected == steps["parsed"]
    garbled = sum(r["pred"] == "garble" for r in rows)
    right = sum(r["pred"].lower() == r["answer"].lower() for r in rows)
    summary = {row["metric"]: row for row in handle.results()}
    judged = summary["correct"]
    assert (judged["items"], judged["parse_failures"], judged["errors"]) == (40, garbled, garbled)
    assert judged["value"] == pytest.approx(right / (40 - garbled))  # over the parsed items only
    assert summary["exact_match"]["parse_failures"] == 0
    assert 1 <= server.max_in_flight <= 2  # MAX_JUDGING_CONCURRENCY across both judging actors
    assert server.total_requests == 40
    record = handle.status()  # each stage's count beside what is stored (no inference: predictions given)
    assert record["stages"]["m"]["capitals"] == {"judged": 40, "scored": 40}
    assert any(line.startswith("m / capitals: 40/40 done, judged 40, scored 40, ") for line in progress_lines(record))


def test_a_judge_that_fails_gives_item_errors_and_retries_recover(ray_cluster, stub_server, tmp_path):
    server = stub_server(responder=judge_rule)
    server.set_faults(rate=0.3, kinds=["503"], seed=3, per_prompt_failures=2)
    task, rows = _task(tmp_path, server.url)
    task["parameters"]["MAX_JUDGING_RETRY_PER_Q"] = 4
    handle = rayeval.run(task)
    judged = next(r for r in handle.results() if r["metric"] == "correct")
    assert judged["errors"] == judged["parse_failures"]  # every 503 was retried away
    server.set_faults(rate=1.0, kinds=["500"], seed=1)
    (tmp_path / "again").mkdir()
    task2, _ = _task(tmp_path / "again", server.url)
    task2["reuse"] = False  # the judge must be asked again (not the first run's scores reused)
    with pytest.raises(TooManyErrors, match="40 of its 40 items failed") as failed:  # the judge was down throughout
        rayeval.run(task2)
    handle2 = rayeval.TaskHandle(failed.value.record["task_id"], task2["output"])
    judged2 = next(r for r in handle2.results() if r["metric"] == "correct")
    assert (judged2["scored"], judged2["errors"], judged2["parse_failures"]) == (0, 40, 0)
    details = json.loads(handle2.items().to_table(columns=["details"]).column(0)[0].as_py())["correct"]
    assert details["error"].startswith("judge referee: HTTP 500")


def test_a_metric_naming_an_undeclared_judge_fails_validation(tmp_path):
    task, _ = _task(tmp_path, "http://127.0.0.1:9/v1")
    task["judges"] = []
    with pytest.raises(rayeval.SpecError, match="uses judge 'referee', which is not among the task's judges"):
        rayeval.run(task)


def test_prompts_fill_any_column_of_the_item(ray_cluster, stub_server, tmp_path):
    def topic_rule(body: dict) -> str:
        topic = re.search(r"^Topic: (.*)$", prompt_text(body), re.M).group(1)
        return f"Score: {int(topic == 'geography')}"

    server = stub_server(responder=topic_rule)
    task, rows = _task(tmp_path, server.url)
    data = tmp_path / "topics.jsonl"
    data.write_text(
        "".join(json.dumps({**r, "topic": "geography" if i % 2 else "art"}) + "\n" for i, r in enumerate(rows))
    )
    task["evaluation_sets"][0]["path"] = str(data)
    task["evaluation_sets"][0]["metrics"] = [
        {
            "name": "on_topic",
            "judge": {
                "model": "referee",
                "prompt": "Topic: {topic}\n{query}",
                "parser": {"kind": "regex", "pattern": r"Score: (\d)"},
            },
        }
    ]
    handle = rayeval.run(task)
    stored = handle.items().to_table(columns=["item_id", "score__on_topic", "fields"]).to_pylist()
    assert len(stored) == len(rows)
    for r in stored:
        topic = json.loads(r["fields"])["topic"]
        assert r["score__on_topic"] == float(topic == "geography")


@pytest.mark.parametrize(
    ("placeholder", "message"),
    [
        ("{answer}", r"column 'answer' is mapped to the item's reference: write \{reference\}"),
        ("{topic}", "the set's columns are pred"),
    ],
)
def test_a_placeholder_that_names_no_column_fails_validation(tmp_path, placeholder, message):
    task, _ = _task(tmp_path, "http://127.0.0.1:9/v1")
    task["evaluation_sets"][0]["metrics"][0]["judge"]["prompt"] = f"Check {placeholder} against {{prediction}}"
    with pytest.raises(rayeval.MetricError, match=message) as err:
        rayeval.run(task)
    assert err.value.field == "evaluation_sets.0.metrics.0.judge.prompt"


def test_judging_concurrency_holds_across_several_judging_and_scoring_actors(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.1, responder=judge_rule)
    task, rows = _task(tmp_path, server.url, concurrency=3)
    task["resources"] = {"inference_actors": 3, "scoring_actors": 2, "batch_size": 4}
    handle = rayeval.run(task)
    assert server.total_requests == len(rows)
    assert 2 <= server.max_in_flight <= 3  # used, never exceeded, whatever the actors
    judged = next(r for r in handle.results() if r["metric"] == "correct")
    assert judged["items"] == len(rows)
