"""INFERENCE_COUNT: several sampled responses per query, each scored, with the mean and unbiased pass@k."""

from __future__ import annotations

import json
import math
import threading
from collections import Counter

import pytest

import rayeval
from rayeval.spec import parse_task
from tests.support.openai_server import prompt_text

N_ITEMS, COUNT = 12, 5


def right_answers(i: int) -> int:
    """How many of query i's five responses are right: 0..5, known to the test."""
    return i % (COUNT + 1)


def sampling_model():
    """A model that answers query i right on its first right_answers(i) requests, wrong after."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def respond(body: dict) -> str:
        query = prompt_text(body)
        i = int(query.split()[-1])
        with lock:
            k = seen[query]
            seen[query] += 1
        return f"answer {i}" if k < right_answers(i) else f"wrong {k}"

    return respond


def expected_pass_at(c: int, k: int) -> float:
    return 1 - math.comb(COUNT - c, k) / math.comb(COUNT, k)


def test_five_sampled_responses_per_query_give_the_mean_and_unbiased_pass_at_k(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.01, responder=sampling_model())
    data = tmp_path / "set.jsonl"
    data.write_text(
        "".join(json.dumps({"query": f"question {i}", "reference": f"answer {i}"}) + "\n" for i in range(N_ITEMS))
    )
    task = {
        "name": "sampled",
        "mode": "inference_and_evaluation",
        "output": str(tmp_path / "out"),
        "models": [{"name": "m", "url": server.url, "model": "stub-model"}],
        "parameters": {"INFERENCE_COUNT": COUNT, "TEMPERATURE": 0.8, "MAX_CONCURRENCY": 4},
        "evaluation_sets": [
            {"name": "s", "path": str(data), "metrics": [{"name": "exact_match", "pass_at": [1, 3, 5]}]}
        ],
    }
    handle = rayeval.run(task)
    assert server.total_requests == N_ITEMS * COUNT  # five requests per query, no more
    assert all(b["temperature"] == 0.8 for b in server.received)
    assert server.max_in_flight <= 4
    rows = {r["query"]: r for r in handle.items().to_table().to_pylist()}
    for i in range(N_ITEMS):
        row, c = rows[f"question {i}"], right_answers(i)
        assert len(row["samples"]) == COUNT and row["prediction"] == row["samples"][0]
        assert sorted(row["samples"]).count(f"answer {i}") == c
        assert row["score__exact_match"] == pytest.approx(c / COUNT)
        for k in (1, 3, 5):
            assert row[f"score__exact_match_pass@{k}"] == pytest.approx(expected_pass_at(c, k))
        assert json.loads(row["details"])["exact_match"]["sample_scores"]["exact_match"].count(1.0) == c
    summary = {r["metric"]: r for r in handle.results()}
    for k in (1, 3, 5):
        mean = sum(expected_pass_at(right_answers(i), k) for i in range(N_ITEMS)) / N_ITEMS
        assert summary[f"exact_match_pass@{k}"]["value"] == pytest.approx(mean)
        assert summary[f"exact_match_pass@{k}"]["errors"] == 0
    assert summary["exact_match"]["value"] == pytest.approx(summary["exact_match_pass@1"]["value"])


def test_inference_count_with_greedy_decoding_or_too_few_samples_is_refused(tmp_path):
    task = {
        "name": "t",
        "mode": "inference_and_evaluation",
        "models": [{"name": "m", "url": "http://127.0.0.1:9/v1"}],
        "parameters": {"INFERENCE_COUNT": 3, "DO_SAMPLE": False},
        "evaluation_sets": [{"name": "s", "path": str(tmp_path), "metrics": ["exact_match"]}],
    }
    with pytest.raises(rayeval.SpecError, match="greedy decoding gives the same response"):
        parse_task(task)
    task["parameters"] = {"INFERENCE_COUNT": 3}
    task["evaluation_sets"][0]["metrics"] = [{"name": "exact_match", "pass_at": [5]}]
    with pytest.raises(rayeval.SpecError, match="pass@5 needs at least 5 samples"):
        parse_task(task)
