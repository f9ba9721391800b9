"""What rayeval promises under faults, case by case (README: What rayeval promises under faults).

Each case runs a task of N items against a stub service that misbehaves in one way and checks the
rows stored: one per item, no id twice, nothing lost, and errors only where the retries cannot help.
The cases about runs (a driver killed then restarted, two restarts at once, a frozen driver thawed
after a restart, a stop then a restart) live beside the code they test: tests/jobs/test_restart.py
and tests/jobs/test_fencing.py.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

import rayeval
from tests.support.clusters import free_port
from tests.support.tasks import stub_task

N = 200


def _run(tmp_path, server, name, **params):
    task = stub_task(tmp_path, server, N, name=name, parameters={"MAX_CONCURRENCY": 8, **params})
    handle = rayeval.run(task)
    rows = handle.items().to_table(columns=["item_id", "error", "attempts"]).to_pylist()
    counts = Counter(r["item_id"] for r in rows)
    assert len(rows) == N and set(counts.values()) == {1}, f"{len(rows)} rows, {len(counts)} distinct ids"
    assert set(counts) == {f"item-{i}" for i in range(N)}  # nothing lost
    record = handle.status()
    assert record["state"] == "succeeded"
    assert record["progress"]["m"]["q"]["done"] == N
    return rows, record


@pytest.mark.parametrize(
    "kinds, extra",
    [
        (("500",), {}),
        (("429",), {"retry_after": 0.1}),
        (("timeout",), {"hang_seconds": 30.0}),
        (("malformed", "malformed_json"), {}),
    ],
    ids=["http-500", "http-429-retry-after", "time-outs", "malformed-bodies"],
)
def test_transient_faults_with_retries_end_with_every_item_answered_once(
    ray_cluster, stub_server, tmp_path, kinds, extra
):
    server = stub_server(latency=0.005, record=False)
    server.set_faults(rate=0.1, kinds=kinds, seed=11, per_prompt_failures=2, **extra)
    rows, record = _run(tmp_path, server, f"matrix-{kinds[0]}", MAX_RETRY_PER_QUERY=3, REQUEST_TIMEOUT=1)
    faulty = len(server.faulted_prompts)
    assert faulty > 5 and [r for r in rows if r["error"]] == []
    assert sum(r["attempts"] for r in rows) == N + 2 * faulty  # each faulty prompt failed twice, then passed
    assert record["progress"]["m"]["q"]["errors"] == 0


def test_faults_without_retries_are_item_errors_counted_once(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.005, record=False)
    server.set_faults(rate=0.1, kinds=("500",), seed=12, per_prompt_failures=1)
    rows, record = _run(tmp_path, server, "matrix-no-retry", MAX_RETRY_PER_QUERY=0)
    failed = [r for r in rows if r["error"]]
    assert len(failed) == len(server.faulted_prompts) > 5
    assert all(r["attempts"] == 1 and r["error"].startswith("HTTP 500") for r in failed)
    assert record["progress"]["m"]["q"]["errors"] == len(failed)


def test_a_service_killed_and_restarted_mid_run_loses_nothing(ray_cluster, stub_server, tmp_path):
    from tests.support.openai_server import OpenAIStubServer

    port = free_port()
    first = stub_server(latency=0.05, record=False, port=port)
    second: list[OpenAIStubServer] = []

    def kill_and_restart() -> None:
        while first.total_requests < N // 4:
            time.sleep(0.05)
        first.stop()  # connections refused from here on
        time.sleep(2.0)
        second.append(stub_server(latency=0.05, record=False, port=port))

    thread = threading.Thread(target=kill_and_restart)
    thread.start()
    rows, _ = _run(tmp_path, first, "matrix-server-kill", MAX_RETRY_PER_QUERY=8)
    thread.join()
    assert [r for r in rows if r["error"]] == []
    assert second and second[0].total_requests > 0  # the rest was answered by the restarted service


def test_requests_given_up_count_against_max_concurrency_until_a_server_can_notice(ray_cluster, stub_server, tmp_path):
    """The exact guarantee (README: Inference): at most MAX_CONCURRENCY requests open at once; one given up at
    REQUEST_TIMEOUT has its connection closed, and its permit is freed only after a grace, so a server that
    drops requests whose client left never works on more than MAX_CONCURRENCY at once."""
    server = stub_server(latency=0.01, record=False, abort_on_disconnect=True)
    server.set_faults(rate=0.4, kinds=("timeout",), seed=13, per_prompt_failures=1, hang_seconds=30.0)
    rows, _ = _run(tmp_path, server, "matrix-abandoned", MAX_CONCURRENCY=4, MAX_RETRY_PER_QUERY=2, REQUEST_TIMEOUT=0.5)
    assert len(server.faulted_prompts) > 20 and [r for r in rows if r["error"]] == []
    assert server.max_in_flight <= 4
