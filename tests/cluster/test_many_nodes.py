"""rayeval on several real Ray nodes (a raylet each, on this host): the stages' actors spread over the
nodes that declare their resources, results land where the driver reads them, and the results equal a
single-node run's, item by item."""

from __future__ import annotations

import pytest

import rayeval
from rayeval.cluster.placement import output_node
from rayeval.errors import SpecError
from tests.support.clusters import multi_node
from tests.support.judged import judge_rule
from tests.support.tasks import inference_task, write_items

pytestmark = [pytest.mark.ray, pytest.mark.cluster]

N = 240


def _task(tmp_path, server, judge, output, stage_resources=None):
    data = write_items(tmp_path / "items.jsonl", N)
    task = inference_task(
        data,
        output,
        [{"name": "m", "url": server.url, "model": "stub-model"}],
        parameters={"MAX_CONCURRENCY": 8, "MAX_JUDGING_CONCURRENCY": 8},
        name="spread",
        reuse=False,
        judges=[{"name": "referee", "url": judge.url, "model": "stub-model"}],
        resources={
            "inference_actors": 4,
            "scoring_actors": 2,
            "stage_resources": stage_resources or {},
        },
    )
    judged = {
        "name": "judged",
        "judge": {
            "model": "referee",
            "prompt": "Question: {query}\nReference: {reference}\nAnswer: {prediction}",
            "parser": {"kind": "regex", "pattern": r"Score: ([01])"},
        },
    }
    task["evaluation_sets"][0]["metrics"].append(judged)
    return task


def _rows(handle) -> dict[str, tuple]:
    table = handle.items().to_table()
    keep = ["prediction", "error", "score__numeric_match", "score__exact_match", "score__judged"]
    rows = {}
    for r in table.to_pylist():
        assert r["item_id"] not in rows, f"item {r['item_id']} stored twice"
        rows[r["item_id"]] = tuple(r[k] for k in keep)
    return rows


def test_a_local_output_is_refused_where_the_driver_and_the_coordinator_do_not_share_a_disk(ray_cluster):
    import ray

    here = ray.get_runtime_context().get_node_id()
    assert output_node("/some/folder", here) == here
    assert output_node("file:///shared/results", "another-node") is None  # shared storage: anywhere
    with pytest.raises(SpecError, match=r"local folder.*file:///path on a filesystem every node mounts"):
        output_node("/some/folder", "f" * 56)


def test_stages_spread_over_the_nodes_and_results_equal_a_single_node_run(
    ray_cluster, stub_server, tmp_path, rayeval_home
):
    server = stub_server(latency=0.02)
    judge = stub_server(latency=0.01, responder=judge_rule)
    single = rayeval.run(_task(tmp_path, server, judge, tmp_path / "single"))  # the shared one-node cluster
    expected = _rows(single)
    assert len(expected) == N

    workers = [
        {"num_cpus": 2, "resources": {"io": 2}},
        {"num_cpus": 2, "resources": {"io": 2}},
        {"num_cpus": 2, "resources": {"score": 2}},
    ]
    with multi_node({"num_cpus": 1}, workers) as cluster:
        io_nodes = {n.node_id for n in cluster.workers_in_order[:2]}
        score_node = cluster.workers_in_order[2].node_id
        head = cluster.head_node.node_id
        stages = {"inference": {"io": 1}, "judging": {"io": 1}, "scoring": {"score": 1}}
        handle = rayeval.run(_task(tmp_path, server, judge, tmp_path / "multi", stages))
        record = handle.status()
        assert record["state"] == "succeeded"
        placement = record["placement"]
        # Four inference actors asking for 1 `io` each: two on each node that has 2.
        assert set(placement["inference"]) == io_nodes
        assert set(placement["judging"]) <= io_nodes
        assert set(placement["scoring"]) == {score_node}
        # A local output is on the driver's disk: the writer is pinned to the driver's node (the head).
        assert placement["writer"] == [head]
        assert _rows(handle) == expected  # the same results, item by item
