"""Losing things mid-run on a cluster of several real Ray nodes, with nothing lost or stored twice: a
worker node holding inference actors, the node holding the results writer, and the coordinator.

Each case counts the requests the stub server received and reads the Parquet results back: every item
is stored exactly once, and requests are sent again only for items that were in flight on what was lost.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

import rayeval
from rayeval.errors import RayevalError
from tests.support.clusters import multi_node
from tests.support.openai_server import prompt_text
from tests.support.tasks import stub_task

pytestmark = [pytest.mark.ray, pytest.mark.cluster]


def _stored(handle) -> list[str]:
    if not handle.store.has_results(handle.task_id):
        return []
    ids = handle.items().to_table(columns=["item_id", "error"]).to_pylist()
    assert all(r["error"] is None for r in ids), [r for r in ids if r["error"]][:3]
    return [r["item_id"] for r in ids]


def _sent(server) -> Counter:
    """How many times each query reached the server."""
    return Counter(prompt_text(body) for body in server.received)


def _quiet(server, seconds: float = 1.5) -> int:
    """The server's request count once no request arrived for `seconds` (the run's stragglers are in)."""
    seen = -1
    while server.total_requests != seen:
        seen = server.total_requests
        time.sleep(seconds)
    return seen


def _wait_for(server, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while server.total_requests < n:
        assert time.monotonic() < deadline, f"only {server.total_requests} requests in {timeout} s"
        time.sleep(0.05)


def test_losing_a_worker_node_with_inference_actors_loses_and_doubles_nothing(stub_server, tmp_path, rayeval_home):
    n, concurrency = 1500, 8
    server = stub_server(latency=0.05)
    workers = [{"num_cpus": 2, "resources": {"io": 2}}, {"num_cpus": 2, "resources": {"io": 2}}]
    with multi_node({"num_cpus": 2}, workers) as cluster:
        task = stub_task(
            tmp_path,
            server,
            n,
            name="node-lost",
            parameters={"MAX_CONCURRENCY": concurrency},
            resources={"inference_actors": 2, "stage_resources": {"inference": {"io": 1}}},
        )
        handle = rayeval.run(task, wait=False)
        _wait_for(server, n // 4)
        placement = handle.status().get("placement", {})
        victim = next(w for w in cluster.workers_in_order if w.node_id in placement.get("inference", []))
        cluster.remove_node(victim)  # its inference actors die with it, mid-request
        record = handle.wait(timeout=300)
        assert record["state"] == "succeeded"
        ids = _stored(handle)
        assert len(ids) == n and len(set(ids)) == n  # every item stored exactly once
        sent = _sent(server)
        again = sum(c - 1 for c in sent.values())
        # Sent twice: at most what the lost actors had in flight or answered but not yet handed on
        # (their blocks died with the node's object store), a few batches' worth per actor.
        assert len(sent) == n and again <= 4 * 64, f"{again} requests sent again"
        events = "\n".join(e["message"] for e in record["events"])
        assert f"node {victim.node_id[:12]}" in events and "was lost" in events
        print(f"node lost: {n} items, {server.total_requests} requests, {again} sent again, {len(ids)} rows")


def test_losing_the_writers_node_fails_clearly_and_a_restart_completes(stub_server, tmp_path, rayeval_home):
    n = 1200
    server = stub_server(latency=0.05)
    workers = [{"num_cpus": 2, "resources": {"writer": 1}}, {"num_cpus": 2}]
    with multi_node({"num_cpus": 2}, workers) as cluster:
        task = stub_task(
            tmp_path,
            server,
            n,
            name="writer-lost",
            output=f"file://{tmp_path / 'shared-out'}",  # shared storage: the writer may run on any node
            parameters={"MAX_CONCURRENCY": 8},
            resources={"stage_resources": {"writer": {"writer": 1}}},
        )
        handle = rayeval.run(task, wait=False)
        _wait_for(server, n // 3)
        assert handle.status()["placement"]["writer"] == [cluster.workers_in_order[0].node_id]
        cluster.remove_node(cluster.workers_in_order[0])
        with pytest.raises(RayevalError, match="the results writer was lost.*rayeval restart"):
            handle.wait(timeout=120)
        committed = len(_stored(handle))  # what the writer had committed before its node went
        sent = _quiet(server)
        assert committed < n
        cluster.add_node(num_cpus=2, resources={"writer": 1})  # somewhere for a writer again
        cluster.wait_for_nodes()
        record = rayeval.restart(handle.task_id)
        assert record["state"] == "succeeded"
        ids = _stored(handle)
        assert len(ids) == n and len(set(ids)) == n
        # The restart asked exactly for the items not committed: what the lost writer held or was in flight.
        assert server.total_requests == sent + n - committed
        again = sum(c - 1 for c in _sent(server).values())
        print(f"writer lost: {n} items, {server.total_requests} requests, {again} sent again, {len(ids)} rows")


def test_a_killed_coordinator_comes_back_with_the_right_progress(ray_cluster, stub_server, tmp_path):
    import ray

    from rayeval.actors.coordinator import get_coordinator

    n = 800
    server = stub_server(latency=0.05)
    task = stub_task(tmp_path, server, n, name="coordinator-killed", parameters={"MAX_CONCURRENCY": 8})
    handle = rayeval.run(task, wait=False)
    _wait_for(server, n // 3)
    ray.kill(get_coordinator(create=False), no_restart=False)  # Ray restarts it; it reloads from storage
    seen = []
    deadline = time.monotonic() + 120
    while not handle.done():
        assert time.monotonic() < deadline
        record = ray.get(get_coordinator(create=False).get.remote(handle.task_id))
        if record is not None:
            p = record["progress"]["m"]["q"]
            seen.append((p["done"], server.total_requests))
        time.sleep(0.3)
    record = handle.wait(timeout=60)
    assert record["state"] == "succeeded"
    assert record["progress"]["m"]["q"]["done"] == n == len(set(_stored(handle)))
    # While it ran, the progress never went past what the server had answered (no report counted twice).
    assert all(done <= answered for done, answered in seen)
