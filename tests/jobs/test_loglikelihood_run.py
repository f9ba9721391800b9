"""A task with sets scored by log-likelihood, end to end on Ray: the requests lm-eval's shape, the stored
choices' log-likelihoods, and acc/acc_norm computed from them (a stub service speaking vLLM's echo form)."""

from __future__ import annotations

import json

import pytest

import rayeval
from rayeval.inference.loglikelihood import ContinuationTokenizer
from rayeval.serve_apps.tiny_model import build_tiny_model
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
        ],
        "reuse": False,
    }  # fmt: skip
    handle = rayeval.run(task, log_to_driver=False)
    assert handle.status()["state"] == "succeeded"
    tokenizer = ContinuationTokenizer(str(tokenizer_dir), 2048)
    rows = {r["item_id"]: r for r in handle.items().to_table().to_pylist()}
    assert len(rows) == 18 and all(r["error"] is None for r in rows.values())
    acc = {"mc": [], "hs": []}
    norm = []
    for r in rows.values():
        fields = json.loads(r["fields"])
        lls = [_ll(tokenizer, r["query"], c) for c in fields["choices"]]
        stored = json.loads(r["loglikelihoods"])
        assert [s["logprob"] for s in stored] == pytest.approx(lls) and [s["choice"] for s in stored] == fields[
            "choices"
        ]
        gold = fields["choices"].index(r["reference"]) if r["eval_set"] == "mc" else int(r["reference"])
        chosen = max(range(len(lls)), key=lls.__getitem__)
        assert r["prediction"] == str(chosen) and r["score__acc"] == float(chosen == gold)
        acc[r["eval_set"]].append(float(chosen == gold))
        per_char = [lp / len(c) for lp, c in zip(lls, fields["choices"])]
        norm.append((r, float(max(range(len(lls)), key=per_char.__getitem__) == gold)))
    assert all(r["score__acc_norm"] == expected for r, expected in norm)
    summary = {(x["eval_set"], x["metric"]): x["value"] for x in handle.results()}
    assert summary[("mc", "acc")] == pytest.approx(sum(acc["mc"]) / 12)
    assert summary[("hs", "acc")] == pytest.approx(sum(acc["hs"]) / 6) and ("hs", "acc_norm") in summary
    # every choice was one request of lm-eval's shape (and one more asked at validation); none was a chat request
    bodies = server.received
    assert len(bodies) == 12 * 4 + 6 * 4 + 1 and all(b["echo"] and b["max_tokens"] == 1 for b in bodies)


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
