"""A replica of a hosted model (Ray Serve + vLLM on the CPU) lost mid-run: the requests it had in flight
are retried per MAX_RETRY_PER_QUERY (item errors when retries are 0), Serve brings a replica back, the
task finishes with every item stored once, and the task's event log says what happened."""

from __future__ import annotations

import time

import pytest

import rayeval
from tests.support.tasks import inference_task, write_items

pytestmark = [pytest.mark.ray, pytest.mark.slow]

N = 120
CONCURRENCY = 4


def _kill_a_replica(app: str) -> str:
    """Kill one live replica actor of the application's LLM server deployment and wait until Ray's actor
    table has it dead (ray.kill only asks; on a loaded machine the table says so seconds later); returns
    its name. (Serve may be replacing a replica whose health check timed out: any live one will do.)"""
    import ray
    from ray._private.state import state

    live = {
        actor_id: a["Name"]
        for actor_id, a in state.actor_table(None).items()
        if a["State"] == "ALIVE" and a["ActorClassName"].startswith(f"ServeReplica:{app}:LLMServer")
    }
    assert live, f"no live LLMServer replica of {app}"
    actor_id, name = next(iter(live.items()))
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    deadline = time.monotonic() + 60
    while state.actor_table(actor_id)["State"] != "DEAD":
        assert time.monotonic() < deadline, f"replica {name} still not dead 60 s after ray.kill"
        time.sleep(0.2)
    return name


def _pinned_engine_threads(app: str) -> tuple[int, list[tuple[int, list[int]]]]:
    """How many processes the application's live replicas have (the replica actors and their vLLM engine
    processes), and the threads among them that may not run on every CPU this process may.
    (vLLM's own binding pinned every engine of a node to one core; rayeval's CPU replicas run unpinned.)"""
    import os

    import psutil
    from ray._private.state import state

    everywhere = os.sched_getaffinity(0)
    actors = [
        a["Pid"]
        for a in state.actor_table(None).values()
        if a["State"] == "ALIVE" and a["ActorClassName"].startswith(f"ServeReplica:{app}:LLMServer")
    ]
    processes = [p for pid in actors for p in (psutil.Process(pid), *psutil.Process(pid).children(recursive=True))]
    pinned = []
    for process in processes:
        for thread in process.threads():
            try:
                allowed = os.sched_getaffinity(thread.id)
            except OSError:  # the thread ended meanwhile
                continue
            if allowed != everywhere:
                pinned.append((thread.id, sorted(allowed)))
    return len(processes), pinned


def _replicas_lost(record: dict) -> int:
    """How many replicas of the task's model stopped during the run, by its event log (the test's kill,
    and any Serve replaced on its own when a health check timed out on a loaded machine)."""
    return sum("model tiny: a replica (" in e["message"] and "stopped" in e["message"] for e in record["events"])


def _run_and_kill(tmp_path, name: str, retries: int, check_threads: bool = False) -> tuple[dict, list[dict]]:
    data = write_items(tmp_path / f"{name}.jsonl", N)
    model = {
        "name": "tiny",
        "builtin": "tiny-random-llama",
        "engine": {"max_model_len": 256, "replicas": 2, "keep": True},  # kept: the second run joins it
    }
    task = inference_task(
        data,
        tmp_path / name,
        [model],
        parameters={
            "MAX_CONCURRENCY": CONCURRENCY,
            "MAX_RETRY_PER_QUERY": retries,
            "MAX_TOKENS": 8,
            "DO_SAMPLE": False,
        },
        name=name,
        reuse=False,
    )
    handle = rayeval.run(task, wait=False)
    deadline = time.monotonic() + 600  # two vLLM replicas start first: over 300 s on a loaded machine
    while True:  # a quarter inferred (not stored: the writer's flushes lag, and the kill must come mid-run)
        record = handle.status()
        if record.get("stages", {}).get("tiny", {}).get("q", {}).get("inferred", 0) >= N // 4:
            break
        assert time.monotonic() < deadline and record["state"] in ("pending", "running"), record.get("error")
        time.sleep(0.2)
    app = record["deployments"]["tiny"]["app"]
    if check_threads:  # both replicas are up (the deployment was healthy), each with its engine processes
        processes, pinned = _pinned_engine_threads(app)
        assert processes >= 4 and pinned == [], (processes, pinned)
    _kill_a_replica(app)
    # The task must still be running once Ray has the replica dead, or the test proves nothing.
    assert handle.status()["state"] == "running", "the task ended before the replica was lost: make it longer"
    record = handle.wait(timeout=600)
    rows = handle.items().to_table(columns=["item_id", "error", "attempts"]).to_pylist()
    return record, rows


def test_a_lost_replica_is_retried_around_and_replaced(ray_cluster, tmp_path):
    from ray import serve

    try:
        record, rows = _run_and_kill(tmp_path, "replica-lost", retries=3, check_threads=True)
        assert record["state"] == "succeeded"
        assert len(rows) == N and len({r["item_id"] for r in rows}) == N
        assert [r for r in rows if r["error"]] == []  # what the lost replica had in flight was sent again
        events = "\n".join(e["message"] for e in record["events"])
        assert "model tiny: a replica (LLMServer" in events and "stopped" in events

        record, rows = _run_and_kill(tmp_path, "replica-lost-no-retry", retries=0)
        assert record["state"] == "succeeded"
        assert len(rows) == N and len({r["item_id"] for r in rows}) == N
        failed = [r for r in rows if r["error"]]
        # Without retries, a request the lost replica had in flight is an item error (Serve's router sends
        # again, by itself, those the replica had not started): at most what was in flight, each sent once.
        lost = _replicas_lost(record)
        assert lost >= 1
        assert len(failed) <= CONCURRENCY * lost, ([r["error"] for r in failed], lost)
        assert all(r["attempts"] == 1 for r in failed)
    finally:
        for app in [a for a in serve.status().applications if a.startswith("rayeval-tiny")]:
            serve.delete(app)
