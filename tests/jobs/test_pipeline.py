"""The streaming pipeline end to end: real Ray, real HTTP on 127.0.0.1, real Parquet."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc

import rayeval
from rayeval.records import progress_fraction
from tests.support.tasks import inference_task, write_items


def _rows(handle, columns=("model", "item_id", "error", "attempts", "score__numeric_match")):
    return handle.items().to_table(columns=list(columns)).to_pylist()


def _files_text(root: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file())


def test_hyperparameters_reach_the_server_and_secrets_stay_out(ray_cluster, stub_server, tmp_path, monkeypatch):
    server = stub_server(latency=0.01, api_key="sk-very-secret-key", models=("greedy", "sampled"))
    monkeypatch.setenv("STUB_KEY", "Bearer sk-very-secret-key")
    data = write_items(tmp_path / "items.jsonl", 20)
    common = {"url": server.url, "auth_header_value": "${env:STUB_KEY}"}
    task = inference_task(
        data,
        tmp_path / "out",
        [
            {"name": "greedy", **common, "parameters": {"do_sample": False}},
            {"name": "sampled", "model": "sampled", "api": "completions", **common},
        ],
        parameters={"max_tokens": 32, "temperature": 0.9, "top_p": 0.5, "top_k": 5, "repetition_penalty": 1.1},
    )
    handle = rayeval.run(task)

    bodies = {m: [b for b in server.received if b["model"] == m] for m in ("greedy", "sampled")}
    assert len(bodies["greedy"]) == len(bodies["sampled"]) == 20
    for body in bodies["greedy"]:
        assert body["temperature"] == 0.0 and "top_p" not in body and "top_k" not in body  # greedy is greedy
        assert body["max_tokens"] == 32 and "repetition_penalty" not in body
        assert body["messages"][-1]["role"] == "user"
    for body in bodies["sampled"]:
        assert (body["temperature"], body["top_p"], body["top_k"], body["repetition_penalty"]) == (0.9, 0.5, 5, 1.1)
        assert body["max_tokens"] == 32 and "prompt" in body
    assert all(h["authorization"] == "Bearer sk-very-secret-key" for h in server.headers_seen)

    summary = {(r["model"], r["metric"]): r for r in handle.results()}
    for model in ("greedy", "sampled"):
        row = summary[(model, "numeric_match")]
        assert (row["value"], row["items"], row["errors"]) == (1.0, 20, 0)
    rows = _rows(handle)
    assert Counter((r["model"], r["item_id"]) for r in rows) == {
        (m, f"item-{i}"): 1 for m in ("greedy", "sampled") for i in range(20)
    }
    record = handle.status()
    for model in ("greedy", "sampled"):  # what each stage handled, beside what is stored
        assert record["stages"][model]["q"] == {"inferred": 20, "scored": 20}, record["stages"]
    events = [e["message"] for e in record["events"]]
    assert any("model greedy: do_sample is false (greedy): temperature, top_p, top_k, repetition_penalty not sent"
               in e for e in events)  # fmt: skip
    assert any("model sampled: temperature and top_p and top_k are all set: set only one" in e for e in events)
    assert record["state"] == "succeeded" and progress_fraction(record) == 1.0
    assert "sk-very-secret-key" not in _files_text(tmp_path / "out")


def test_max_concurrency_holds_across_actors(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.2, record=False)
    data = write_items(tmp_path / "items.jsonl", 150)
    task = inference_task(
        data,
        tmp_path / "out",
        [{"name": "m", "url": server.url, "model": "stub-model"}],
        parameters={"MAX_CONCURRENCY": 5},
        resources={"inference_actors": 2, "batch_size": 8},
    )
    handle = rayeval.run(task)
    assert server.total_requests == 150
    assert server.max_in_flight == 5
    assert server.in_flight_fraction(5) >= 0.6, server.in_flight_seconds
    assert handle.results()[0]["value"] == 1.0


def _fault_run(stub_server, tmp_path, retries):
    server = stub_server(latency=0.005)
    server.set_faults(
        rate=0.3,
        kinds=("500", "503", "429", "malformed", "malformed_json"),
        retry_after=0.05,
        seed=7,
        per_prompt_failures=2,
    )
    data = write_items(tmp_path / "items.jsonl", 60)
    task = inference_task(
        data,
        tmp_path / f"out{retries}",
        [{"name": "m", "url": server.url, "model": "stub-model"}],
        parameters={"MAX_RETRY_PER_QUERY": retries, "MAX_CONCURRENCY": 8},
    )
    return server, rayeval.run(task)


def test_transient_faults_are_retried_until_every_item_succeeds(ray_cluster, stub_server, tmp_path):
    began = time.time()
    server, handle = _fault_run(stub_server, tmp_path, retries=3)
    faulty = len(server.faulted_prompts)
    assert 8 <= faulty <= 30  # ~30% of 60
    rows = _rows(handle, ("item_id", "error", "attempts", "started_at", "latency_ms"))
    assert len(rows) == 60 and all(r["error"] is None for r in rows)
    assert sum(r["attempts"] for r in rows) == 60 + 2 * faulty
    # started_at is the first attempt's send time (a UTC timestamp); latency that of the last attempt
    assert all(began < r["started_at"].timestamp() < time.time() and r["latency_ms"] > 0 for r in rows)
    assert all(r["started_at"].tzinfo is not None for r in rows)
    assert handle.results()[0]["value"] == 1.0


def test_without_retries_failed_items_are_recorded_and_the_rest_scored(ray_cluster, stub_server, tmp_path):
    server, handle = _fault_run(stub_server, tmp_path, retries=0)
    faulty = len(server.faulted_prompts)
    rows = _rows(handle)
    assert Counter(r["item_id"] for r in rows) == {f"item-{i}": 1 for i in range(60)}
    failed = [r for r in rows if r["error"] is not None]
    assert len(failed) == faulty > 0
    assert all(r["score__numeric_match"] is None and r["attempts"] == 1 for r in failed)
    assert all(r["score__numeric_match"] == 1.0 for r in rows if r["error"] is None)
    row = next(r for r in handle.results() if r["metric"] == "numeric_match")
    assert (row["items"], row["errors"], row["scored"], row["value"]) == (60, faulty, 60 - faulty, 1.0)
    record = handle.status()
    assert progress_fraction(record) == 1.0
    assert record["progress"]["m"]["q"] == {"done": 60, "errors": faulty, "reused": 0, "total": 60}


def _gsm8k_answer(text: str) -> float | None:
    """Independent GSM8K answer rule: scan tokens from the end for the first that parses as a number."""
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    for token in reversed(text.replace("\n", " ").split(" ")):
        cleaned = token.strip().replace(",", "").replace("$", "").rstrip(".").strip("*:()")
        for candidate in (cleaned, "".join(ch for ch in cleaned if ch.isdigit() or ch in ".-")):
            try:
                return float(candidate)
            except ValueError:
                continue
    return None


def test_evaluation_only_on_real_gsm8k_matches_an_independent_computation(ray_cluster, gsm8k_predictions, tmp_path):
    files = {p.stem.replace("_", "-"): p for p in sorted(gsm8k_predictions.glob("*.jsonl"))}
    task = {
        "name": "gsm8k",
        "mode": "evaluation_only",
        "output": str(tmp_path / "out"),
        "models": [{"name": name} for name in files],
        "evaluation_sets": [
            {
                "name": "gsm8k",
                "columns": {"id": "id", "query": "question", "reference": "answer"},
                "prediction_files": {name: str(p) for name, p in files.items()},
                "metrics": ["numeric_match"],
            }
        ],
    }
    handle = rayeval.run(task)
    summary = {r["model"]: r for r in handle.results()}
    stored = handle.items().to_table(columns=["model", "item_id", "score__numeric_match"])
    for name, path in files.items():
        items = [json.loads(line) for line in path.read_text().splitlines()]
        expected = {it["id"]: float(_gsm8k_answer(it["prediction"]) == _gsm8k_answer(it["answer"])) for it in items}
        mine = stored.filter(pc.equal(stored["model"], name)).to_pylist()
        assert {r["item_id"]: r["score__numeric_match"] for r in mine} == expected
        assert summary[name]["items"] == 1319 and summary[name]["errors"] == 0
        assert abs(summary[name]["value"] - sum(expected.values()) / len(expected)) < 1e-12
    assert 0.05 < summary["6b-finetuning"]["value"] < summary["175b-verification"]["value"] < 0.95
