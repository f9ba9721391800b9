"""A task that cannot get its resources says what it waits for, and fails in time naming the resource
and what the cluster has; nothing is sent to the model meanwhile."""

from __future__ import annotations

import time

import pytest

import rayeval
from rayeval.analysis.text import progress_bar
from rayeval.errors import RayevalError
from tests.support.tasks import stub_task

pytestmark = pytest.mark.ray


def test_a_resource_no_node_has_is_named_while_waiting_and_in_the_failure(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.01)
    task = stub_task(
        tmp_path,
        server,
        40,
        name="no-such-resource",
        resources={"wait_timeout_s": 12, "stage_resources": {"inference": {"accelerator-x": 1}}},
    )
    handle = rayeval.run(task, wait=False)
    deadline = time.monotonic() + 30
    while not handle.status().get("waiting"):
        assert time.monotonic() < deadline, "the task never said it was waiting"
        time.sleep(0.3)
    record = handle.status()
    assert record["state"] == "running"
    wait = record["waiting"][0]
    assert wait["stage"] == "inference" and wait["actors"] == 2 and wait["needs"] == {"CPU": 0.25, "accelerator-x": 1}
    line = progress_bar(record)
    assert "waiting for resources: 2 inference actors (each CPU 0.25, accelerator-x 1) for" in line
    with pytest.raises(RayevalError) as failure:
        handle.wait(timeout=60)
    message = str(failure.value)
    assert "resources.wait_timeout_s" in message and "no node has accelerator-x" in message
    assert "the cluster has 1 node" in message and "CPU 4" in message
    assert handle.status()["state"] == "failed"
    assert server.total_requests == 0
