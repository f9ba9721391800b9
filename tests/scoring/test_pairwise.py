"""Pairwise judging against a reference model: a fair test judge gives the exact wins, losses and
ties the test expects; a position-biased judge (always "A") gives ties, not wins."""

from __future__ import annotations

import json
import re

import pytest

import rayeval
from rayeval.errors import SpecError
from tests.support.openai_server import prompt_text

N = 12


def fair_judge(body: dict) -> str:
    """Prefers the answer equal to the reference; a tie when both or neither are."""
    text = prompt_text(body)
    ref = re.search(r"^Reference answer: (.*)$", text, re.M).group(1)
    a = re.search(r"^Answer A: (.*)$", text, re.M).group(1) == ref
    b = re.search(r"^Answer B: (.*)$", text, re.M).group(1) == ref
    return f"I compared them. Verdict: {'tie' if a == b else ('A' if a else 'B')}"


def biased_judge(body: dict) -> str:
    return "The first one reads better. Verdict: A"


def _task(tmp_path, judge_url):
    # m is right on items 0-5, base on 0-2 and 6-8: m wins 3-5, loses 6-8, ties 0-2 and 9-11
    rows = []
    for i in range(N):
        m = f"a{i}" if i < 6 else "wrong"
        base = f"a{i}" if i < 3 or 6 <= i < 9 else "nope"
        rows.append({"id": f"q{i}", "query": f"Q{i}?", "answer": f"a{i}", "m": m, "base": base})
    (tmp_path / "set.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {
        "name": "pairwise",
        "mode": "evaluation_only",
        "output": str(tmp_path / "out"),
        "reuse": False,
        "reference_model": "base",
        "models": [{"name": "m"}, {"name": "base"}],
        "judges": [{"name": "referee", "url": judge_url, "model": "stub-model"}],
        "evaluation_sets": [
            {
                "name": "qa",
                "path": str(tmp_path / "set.jsonl"),
                "columns": {"id": "id", "reference": "answer"},
                "predictions": {"m": "m", "base": "base"},
                "metrics": ["exact_match"],
                "pairwise": [{"name": "vs_base", "judge": "referee"}],
            }
        ],
    }


def test_a_fair_judge_gives_the_expected_wins_losses_and_ties(ray_cluster, stub_server, tmp_path):
    judge = stub_server(responder=fair_judge)
    handle = rayeval.run(_task(tmp_path, judge.url))
    row = next(r for r in handle.results() if r["metric"] == "vs_base")
    assert row["model"] == "m" and row["items"] == N and row["errors"] == 0
    assert row["pairwise"] == {"reference": "base", "wins": 3, "losses": 3, "ties": 6, "inconsistent": 0}
    assert row["value"] == pytest.approx((3 + 0.5 * 6) / N)
    assert judge.total_requests == 2 * N  # every item asked twice, order swapped
    asked = [prompt_text(b) for b in judge.received if "Q3?" in prompt_text(b)]
    assert {re.search(r"Answer A: (.*)", t).group(1) for t in asked} == {"a3", "nope"}

    board = rayeval.results(handle.task_id)
    vs = next(r for r in board.rows if r.metric == "vs_base")
    assert vs.weight == 0 and vs.ci_low <= vs.value <= vs.ci_high  # shown, not counted unless weighted
    (view,) = rayeval.item(handle.task_id, "q4")
    steps = {s.name: s.value for s in view.steps}
    assert steps["vs_base: outcome"] == {"outcome": "win", "inconsistent": False, "score": 1.0}
    assert steps["vs_base: first ask (A = m)"]["verdict"] == "a"
    assert steps["vs_base: second ask (A = base)"]["verdict"] == "b"


def test_a_position_biased_judge_gives_ties_not_wins(ray_cluster, stub_server, tmp_path):
    judge = stub_server(responder=biased_judge)
    handle = rayeval.run(_task(tmp_path, judge.url))
    row = next(r for r in handle.results() if r["metric"] == "vs_base")
    assert row["pairwise"] == {"reference": "base", "wins": 0, "losses": 0, "ties": N, "inconsistent": N}
    assert row["value"] == 0.5


def test_pairwise_needs_a_reference_model_and_a_judge(tmp_path):
    task = _task(tmp_path, "http://127.0.0.1:9/v1")
    with pytest.raises(SpecError, match="set the task's `reference_model`"):
        rayeval.run({**task, "reference_model": None})
    with pytest.raises(SpecError, match="uses judge 'referee', which is not among the task's judges"):
        rayeval.run({**task, "judges": []})
    bad = json.loads(json.dumps(task))
    bad["evaluation_sets"][0]["pairwise"][0]["prompt"] = "Is {answer_a} good?"
    with pytest.raises(SpecError, match="lacks \\{answer_b\\}"):
        rayeval.run(bad)
