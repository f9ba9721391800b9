"""Reuse of earlier tasks' results: per item, keyed on fingerprints, counted by the test server.

A task that evaluates the same model name on the same set name takes every item an earlier task
stored with the same fingerprint and no error, without asking the model (or, for scores, the judge)
again, once reuse is turned on (it is off by default); a changed temperature or judge prompt, `reuse:
false`, naming other tasks, or a service whose model was created after an answer turns it off.
"""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

import rayeval
from rayeval.cli import main
from rayeval.errors import SpecError
from rayeval.schema import STREAM_SCHEMA
from rayeval.spec import ReuseSpec, parse_task
from rayeval.store.fingerprint import fp64_array
from rayeval.store.reuse import ReuseSource, candidate_sources, take_reused
from tests.support.tasks import inference_task, write_items

N = 40


# ----------------------------------------------------------------------------- pure parts


def _stored_rows() -> pa.Table:
    return pa.table(
        {
            "item_id": ["a", "b", "c", "d"],
            "query": ["qa", "qb", "qc", "qd"],
            "reference": ["#### 1"] * 4,
            "prediction": ["1", "2", None, "4"],
            "error": [None, None, "HTTP 500", None],
            "item_fp": ["aa" * 12, "bb" * 12, "cc" * 12, "dd" * 12],
            "metric_fps": [json.dumps({"numeric_match": "N1", "judge_m": "J1"})] * 3
            + [json.dumps({"numeric_match": "N0", "judge_m": "J1"})],
            "details": [None, json.dumps({"judge_m": {"error": "judge down"}}), None, None],
            "score__numeric_match": [1.0, 0.0, None, 1.0],
            "score__judge_m": [0.5, None, None, 1.0],
            "latency_ms": [10.0, 11.0, 12.0, 13.0],
        }
    )


def test_take_reused_keeps_assigned_rows_without_error_and_carries_unchanged_metrics():
    keys = np.sort(fp64_array(["aa" * 12, "bb" * 12, "cc" * 12, "dd" * 12]))
    out = take_reused(
        _stored_rows(),
        keys=keys,
        model="m",
        eval_set="s",
        source="old-task",
        metric_fps={"numeric_match": "N1", "judge_m": "J1"},
        metric_outputs={"numeric_match": ["numeric_match"], "judge_m": ["judge_m"]},
    )
    assert out.schema == STREAM_SCHEMA
    rows = {r["item_id"]: r for r in out.to_pylist()}
    assert sorted(rows) == ["a", "b", "d"]  # c failed: it runs again
    assert {r["model"] for r in rows.values()} == {"m"} and {r["reused_from"] for r in rows.values()} == {"old-task"}
    assert rows["a"]["latency_ms"] == 10.0 and rows["a"]["prediction"] == "1"
    carried = {k: json.loads(r["carried"]) if r["carried"] else {} for k, r in rows.items()}
    assert carried["a"] == {
        "numeric_match": {"scores": {"numeric_match": 1.0}, "details": None},
        "judge_m": {"scores": {"judge_m": 0.5}, "details": None},
    }
    assert set(carried["b"]) == {"numeric_match"}  # the judge step failed there: asked again
    assert set(carried["d"]) == {"judge_m"}  # numeric_match's configuration changed since


def test_take_reused_leaves_rows_not_assigned_to_this_source():
    keys = np.sort(fp64_array(["dd" * 12]))
    out = take_reused(_stored_rows(), keys=keys, model="m", eval_set="s", source="t", metric_fps={}, metric_outputs={})
    assert out.column("item_id").to_pylist() == ["d"]
    assert out.column("carried").to_pylist() == [None]


def test_candidate_sources_are_newest_first_named_or_all_never_itself():
    records = [
        {"task_id": "old", "name": "nightly", "created_at": 1, "output": "/o", "progress": {"m": {"s": {}}}},
        {"task_id": "new", "name": "nightly", "created_at": 3, "output": "/o", "progress": {"m": {"s": {}}}},
        {"task_id": "other", "name": "x", "created_at": 2, "output": "/o", "progress": {"m": {"t": {}}}},
        {"task_id": "me", "name": "me", "created_at": 4, "output": "/o", "progress": {"m": {"s": {}}}},
    ]
    assert candidate_sources(records, "me", "m", "s", None) == [ReuseSource("new", "/o"), ReuseSource("old", "/o")]
    assert candidate_sources(records, "me", "m", "s", ["old"]) == [ReuseSource("old", "/o")]
    named = candidate_sources(records, "me", "m", "s", ["nightly"])
    assert named == [ReuseSource("new", "/o"), ReuseSource("old", "/o")]
    assert candidate_sources(records, "me", "m", "t", None) == [ReuseSource("other", "/o")]
    assert candidate_sources(records, "me", "m2", "s", None) == []  # nobody evaluated m2 on s
    records[0]["model_fps"] = {"m": "fp-1"}
    # Only a task that ran the model with the same fingerprint can hold matching items.
    assert candidate_sources(records, "me", "m", "s", None, model_fp="fp-1") == [ReuseSource("old", "/o")]


def test_reuse_is_off_unless_turned_on_by_true_or_by_naming_tasks(tmp_path):
    base = inference_task(tmp_path / "x.jsonl", tmp_path / "out", [{"name": "m", "url": "http://127.0.0.1:9/v1"}])
    del base["reuse"]  # the spec's default
    assert parse_task(base).reuse.enabled is False and "reuse" not in parse_task(base).model_fields_set
    assert parse_task({**base, "reuse": False}).reuse.enabled is False
    on = parse_task({**base, "reuse": True}).reuse
    assert on.enabled and on.tasks is None  # any earlier task the tags may see
    spec = parse_task({**base, "reuse": {"tasks": ["nightly"]}})
    assert spec.reuse.enabled and spec.reuse.tasks == ["nightly"]
    assert parse_task({**base, "reuse": {"enabled": True}}).reuse.enabled  # files of the earlier schema
    with pytest.raises(SpecError, match="`tasks` names where to reuse from, but `enabled` is false"):
        parse_task({**base, "reuse": {"enabled": False, "tasks": ["nightly"]}})


def test_reuse_from_the_command_line_and_the_notice_said_once(tmp_path, monkeypatch, capsys):
    import yaml

    from rayeval.api import with_reuse
    from rayeval.cli.tasks import _task_with_reuse

    monkeypatch.setenv("RAYEVAL_HOME", str(tmp_path / "home"))
    base = inference_task(tmp_path / "x.jsonl", tmp_path / "out", [{"name": "m", "url": "http://127.0.0.1:9/v1"}])
    del base["reuse"]
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(base))
    assert with_reuse(str(path)).reuse.enabled is False
    assert with_reuse(str(path), reuse=True).reuse == ReuseSpec(enabled=True, tasks=None)
    from_two = with_reuse(str(path), sources=("nightly", "t-20261201"))
    assert from_two.reuse == ReuseSpec(enabled=True, tasks=["nightly", "t-20261201"])
    assert from_two.source == str(path)  # relative paths still resolve against the task file

    # A first run on a fresh machine has nothing to reuse: no notice (and none later).
    assert _task_with_reuse(str(path), False, ()).reuse.enabled is False
    assert capsys.readouterr().err == "" and (tmp_path / "home" / "notices" / "reuse-off-by-default").exists()
    # Where earlier tasks are indexed, a task file that does not say gets it, once per RAYEVAL_HOME.
    monkeypatch.setenv("RAYEVAL_HOME", str(tmp_path / "used"))
    (tmp_path / "used" / "tasks" / "earlier-20261201-000000-abcdef").mkdir(parents=True)
    assert _task_with_reuse(str(path), False, ()).reuse.enabled is False
    first = capsys.readouterr().err
    assert "reuse of earlier tasks' results is off unless turned on" in first and "--reuse" in first
    _task_with_reuse(str(path), False, ())
    assert capsys.readouterr().err == ""
    # One that says (or a command line that does) is not told at all.
    monkeypatch.setenv("RAYEVAL_HOME", str(tmp_path / "home2"))
    assert _task_with_reuse(str(path), True, ()).reuse.enabled
    path.write_text(yaml.safe_dump({**base, "reuse": False}))
    _task_with_reuse(str(path), False, ())
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- on the cluster


def _rows(handle) -> dict[str, dict]:
    return {r["item_id"]: r for r in handle.items().to_table().to_pylist()}


def _scores(handle) -> set[tuple]:
    return {(r["metric"], r["value"], r["items"], r["errors"]) for r in handle.results()}


def test_inference_results_are_reused_across_tasks_only_while_the_fingerprint_holds(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.01)
    data = write_items(tmp_path / "items.jsonl", N)
    model = [{"name": "m", "url": server.url, "model": "stub-model"}]
    first = rayeval.run(inference_task(data, tmp_path / "out", model, name="reuse-a"))
    assert server.total_requests == N

    second = rayeval.run(inference_task(data, tmp_path / "out", model, name="reuse-b", reuse={"tasks": ["reuse-a"]}))
    assert server.total_requests == N  # nothing asked again
    a, b = _rows(first), _rows(second)
    assert sorted(b) == sorted(a) and len(b) == N
    assert {r["reused_from"] for r in b.values()} == {first.task_id}
    assert all(b[k]["prediction"] == a[k]["prediction"] and b[k]["item_fp"] == a[k]["item_fp"] for k in a)
    assert _scores(second) == _scores(first)
    record = second.status()
    assert record["reused"] == {"total": N, "sources": {first.task_id: N}}
    assert record["progress"]["m"]["q"]["reused"] == N
    logs = " ".join(e["message"] for e in record["events"])
    assert f"{N} items reused from earlier tasks ({first.task_id}: {N})" in logs
    shown = CliRunner().invoke(main, ["results", second.task_id]).output
    assert f"reused {N} items from earlier tasks: {first.task_id} ({N})" in shown
    status = CliRunner().invoke(main, ["status", second.task_id]).output
    assert re.search(rf"m / q: {N}/{N} done, (scored {N}, )?0 errors, {N} reused, 0 remaining", status), status

    # A changed temperature changes every item's fingerprint: all asked again.
    hot = rayeval.run(
        inference_task(data, tmp_path / "out", model, name="reuse-c", parameters={"temperature": 0.5}, reuse=True)
    )
    assert server.total_requests == 2 * N
    assert {r["reused_from"] for r in _rows(hot).values()} == {None}

    # Reuse turned off, or limited to tasks without these items: everything runs.
    rayeval.run(inference_task(data, tmp_path / "out", model, name="reuse-d", reuse=False))
    assert server.total_requests == 3 * N
    rayeval.run(inference_task(data, tmp_path / "out", model, name="reuse-e", reuse={"tasks": ["reuse-c"]}))
    assert server.total_requests == 4 * N  # reuse-c holds them at temperature 0.5 only


def test_partial_results_are_reused_and_a_new_metric_is_computed_without_inference(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.01)
    data = write_items(tmp_path / "items.jsonl", N)
    model = [{"name": "m", "url": server.url, "model": "stub-model"}]
    part = inference_task(data, tmp_path / "out", model, name="part")
    part["evaluation_sets"][0]["limit"] = 25
    server.fail_first(5)  # 5 of the 25 fail (no retries): they are not reused
    earlier = rayeval.run(part)
    failed = {k for k, r in _rows(earlier).items() if r["error"]}
    assert len(failed) == 5 and server.total_requests == 25

    full = inference_task(data, tmp_path / "out", model, name="full", reuse={"tasks": ["part"]})
    full["evaluation_sets"][0]["metrics"] = ["numeric_match", "exact_match", "f1"]
    later = rayeval.run(full)
    assert server.total_requests == 25 + (N - 20)  # the 15 never run and the 5 that failed
    rows = _rows(later)
    reused = {k for k, r in rows.items() if r["reused_from"] == earlier.task_id}
    assert len(reused) == 20 and not reused & failed
    assert all(r["error"] is None and r["score__f1"] is not None for r in rows.values())
    by_metric = {r["metric"]: r for r in later.results()}
    assert by_metric["numeric_match"]["value"] == 1.0 and by_metric["f1"]["items"] == N


def test_judge_scores_are_carried_until_the_judge_prompt_changes(ray_cluster, stub_server, tmp_path):
    from tests.support.judged import judge_rule
    from tests.support.judged import judged_task as _task

    judge = stub_server(latency=0.01, responder=judge_rule)
    task, rows = _task(tmp_path, judge.url, concurrency=4)
    first = rayeval.run({**task, "name": "judged-a"})
    assert judge.total_requests == len(rows)

    again = rayeval.run({**task, "name": "judged-b", "reuse": True})
    assert judge.total_requests == len(rows)  # every judge score carried over
    a, b = _rows(first), _rows(again)
    assert {r["reused_from"] for r in b.values()} == {first.task_id}
    assert all(b[k]["score__correct"] == a[k]["score__correct"] for k in a)
    assert all(json.loads(b[k]["details"])["correct"] == json.loads(a[k]["details"])["correct"] for k in a)
    assert _scores(again) == _scores(first)

    # A new prompt: the predictions are reused (Evaluation Only: the set's own), the judge is asked again.
    changed = json.loads(json.dumps(task))
    judge_ref = changed["evaluation_sets"][0]["metrics"][0]
    judge_ref["judge"]["prompt"] = "Please.\n" + judge_ref["judge"]["prompt"]
    third = rayeval.run({**changed, "name": "judged-c", "reuse": True})
    assert judge.total_requests == 2 * len(rows)
    assert {r["reused_from"] for r in _rows(third).values()} == {again.task_id}
    assert _scores(third) == _scores(first)


def test_take_reused_reads_started_at_stored_as_timestamp_or_as_seconds():
    from rayeval.schema import stored_times

    keys = np.sort(fp64_array(["aa" * 12]))
    seconds = _stored_rows().append_column("started_at", pa.array([1.7e9 + 0.5] * 4, pa.float64()))
    for stored in (seconds, stored_times(seconds)):  # files of today's rayeval, and of older ones
        out = take_reused(stored, keys=keys, model="m", eval_set="s", source="t", metric_fps={}, metric_outputs={})
        assert out.schema == STREAM_SCHEMA and out.column("started_at").to_pylist() == [1.7e9 + 0.5]


def test_a_service_that_stamps_each_answer_as_created_says_nothing_about_staleness(stub_server):
    from rayeval.inference.client import resolve_endpoint
    from rayeval.inference.model_created import model_created
    from rayeval.spec import ModelSpec

    def ask(server, model_id="stub-model"):
        return model_created(resolve_endpoint(ModelSpec(name="m", url=server.url, model=model_id), None, 10))

    steady = stub_server()
    created = ask(steady)
    assert created is not None and abs(created - time.time()) < 60
    steady.redeploy()
    assert ask(steady) >= created
    assert ask(stub_server(created_is_now=True)) is None  # vLLM's /v1/models: the time of the answer
    assert ask(steady, "not-served") is None


def test_answers_sent_before_the_service_model_was_created_are_not_reused(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.01)
    data = write_items(tmp_path / "items.jsonl", N)
    model = [{"name": "m", "url": server.url, "model": "stub-model"}]
    before = rayeval.run(inference_task(data, tmp_path / "out", model, name="stale-a"))
    assert server.total_requests == N
    time.sleep(1.1)  # `created` has one-second resolution
    server.redeploy()  # same URL and model id, new weights: /v1/models says it was created now

    after = rayeval.run(inference_task(data, tmp_path / "out", model, name="stale-b", reuse=True))
    assert server.total_requests == 2 * N  # every answer of stale-a predates the model: asked again
    assert {r["reused_from"] for r in _rows(after).values()} == {None}
    events = " ".join(e["message"] for e in after.status()["events"])
    assert f"model m, set q: {N} answers earlier tasks hold were sent before the service's model was created" in events

    # Answers given by the redeployed model are fresh: taken.
    again = rayeval.run(inference_task(data, tmp_path / "out", model, name="stale-c", reuse=True))
    assert server.total_requests == 2 * N
    assert {r["reused_from"] for r in _rows(again).values()} == {after.task_id}
    assert before.task_id not in {r["reused_from"] for r in _rows(again).values()}
