"""A task with sets scored by log-likelihood, end to end on Ray: the requests lm-eval's shape, the stored
choices' log-likelihoods, and acc/acc_norm computed from them (a stub service speaking vLLM's echo form)."""

from __future__ import annotations

import json

import pytest

import rayeval
from rayeval.inference.loglikelihood import ContinuationTokenizer
from rayeval.serve_apps.tiny_model import build_tiny_model
from tests.sets.builtin.test_builtin_sets import write_mmlu
from tests.support.openai_wire import stub_logprob

pytestmark = pytest.mark.ray


def _ll(tokenizer: ContinuationTokenizer, context: str, choice: str) -> float:
    ids, context_len, _ = tokenizer.prompt(context, " " + choice)
    return sum(stub_logprob(ids[i - 1], ids[i]) for i in range(context_len, len(ids)))


def test_custom_and_builtin_sets_scored_by_loglikelihood(ray_cluster, stub_server, tmp_path):
    server = stub_server()
    tokenizer_dir = build_tiny_model(tmp_path / "tiny")
    items = [
        {"id": f"q{i}", "query": f"Question {i}: which number follows {i}?\nAnswer:",
         "choices": [str(i + 1), str(i + 2), "none of them", "the number " + str(i)], "reference": str(i + 1)}
        for i in range(12)
    ]  # fmt: skip
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    task = {
        "name": "ll-run",
        "mode": "inference_and_evaluation",
        "output": str(tmp_path / "out"),
        "models": [{"name": "m", "url": server.url, "model": "stub-model", "tokenizer": str(tokenizer_dir)}],
        "evaluation_sets": [
            {"name": "mc", "path": str(tmp_path / "mc.jsonl"), "columns": {"id": "id"}, "mode": "loglikelihood",
             "metrics": ["acc", "acc_norm", "acc_bytes"]},
            {"name": "hs", "builtin": "hellaswag", "limit": 6},
            {"name": "mm", "builtin": "mmlu", "path": str(write_mmlu(tmp_path / "data")), "mode": "loglikelihood"},
        ],
        "reuse": False,
    }  # fmt: skip
    handle = rayeval.run(task, log_to_driver=False)
    assert handle.status()["state"] == "succeeded"
    tokenizer = ContinuationTokenizer(str(tokenizer_dir), 2048)
    rows = {r["item_id"]: r for r in handle.items().to_table().to_pylist()}
    assert len(rows) == 18 + 11 and all(r["error"] is None for r in rows.values())
    acc = {"mc": [], "hs": [], "mm": []}
    norm = []
    for r in rows.values():
        fields = json.loads(r["fields"])
        lls = [_ll(tokenizer, r["query"], c) for c in fields["choices"]]
        stored = json.loads(r["loglikelihoods"])
        assert [s["logprob"] for s in stored] == pytest.approx(lls) and [s["choice"] for s in stored] == fields[
            "choices"
        ]
        gold = int(r["reference"]) if r["eval_set"] == "hs" else fields["choices"].index(r["reference"])
        chosen = max(range(len(lls)), key=lls.__getitem__)
        assert r["prediction"] == str(chosen) and r["score__acc"] == float(chosen == gold)
        acc[r["eval_set"]].append(float(chosen == gold))
        per_char = [lp / len(c) for lp, c in zip(lls, fields["choices"])]
        norm.append((r, float(max(range(len(lls)), key=per_char.__getitem__) == gold)))
    assert all(r["score__acc_norm"] == expected for r, expected in norm if r["eval_set"] != "mm")  # mm: acc only
    summary = {(x["eval_set"], x["metric"]): x["value"] for x in handle.results()}
    assert summary[("mc", "acc")] == pytest.approx(sum(acc["mc"]) / 12)
    assert summary[("hs", "acc")] == pytest.approx(sum(acc["hs"]) / 6) and ("hs", "acc_norm") in summary
    assert summary[("mm", "acc")] == pytest.approx(sum(acc["mm"]) / 11)  # MMLU's letters read as continuations
    mmlu = rows["abstract_algebra/0"]
    assert mmlu["query"].startswith(
        "The following are multiple choice questions (with answers) about abstract algebra."
    )
    assert mmlu["query"].endswith("D. four\nAnswer:") and json.loads(mmlu["fields"])["choices"] == list("ABCD")
    # the item view shows each choice's log-likelihood
    from rayeval.analysis.item import item_view

    [view] = item_view(handle.task_id, "q0", output=str(tmp_path / "out"))
    shown = next(s.value for s in view.steps if s.name.startswith("choices"))
    assert [c["choice"] for c in shown] == items[0]["choices"]
    # every choice was one request of lm-eval's shape (and one more asked at validation); none was a chat request
    bodies = server.received
    assert len(bodies) == 12 * 4 + 6 * 4 + 11 * 4 + 1 and all(b["echo"] and b["max_tokens"] == 1 for b in bodies)


def test_a_service_that_cannot_echo_logprobs_is_refused_before_the_run(ray_cluster, stub_server, tmp_path):
    from rayeval.errors import ServiceError

    server = stub_server(echo_logprobs=False)
    task = {
        "name": "ll-refused",
        "mode": "inference_and_evaluation",
        "output": str(tmp_path / "out"),
        "models": [
            {"name": "m", "url": server.url, "model": "stub-model", "tokenizer": str(build_tiny_model(tmp_path / "t"))}
        ],
        "evaluation_sets": [{"name": "hs", "builtin": "hellaswag", "limit": 2}],
        "reuse": False,
    }
    with pytest.raises(
        ServiceError, match="model 'm' cannot score set 'hs' by log-likelihood: .*cannot score by log-likelihood"
    ):
        rayeval.run(task, log_to_driver=False)
