"""The coordinator: progress visible from another driver, state back after a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import ray

import rayeval
from rayeval.actors.coordinator import get_coordinator
from rayeval.records import progress_fraction
from tests.support.tasks import gsm8k_task, inference_task, write_items

SECOND_DRIVER = textwrap.dedent(
    """
    import json, sys, time
    import ray
    ray.init(address=sys.argv[1], logging_level="error")
    coordinator = ray.get_actor("coordinator", namespace="rayeval")
    seen = []
    deadline = time.monotonic() + 240  # the pipeline's actors start first: a minute and more on a busy machine
    while time.monotonic() < deadline:
        record = ray.get(coordinator.get.remote(sys.argv[2]))
        if record:
            p = record["progress"]["m"]["q"]
            seen.append((record["state"], p["done"], p["total"]))
            if 0 < p["done"] < p["total"]:
                break
        time.sleep(0.2)
    print(json.dumps(seen))
    """
)


def test_progress_from_a_second_driver_and_coordinator_restart(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.1, record=False)
    data = write_items(tmp_path / "items.jsonl", 400)
    task = inference_task(
        data,
        tmp_path / "out",
        [{"name": "m", "url": server.url, "model": "stub-model"}],
        parameters={"MAX_CONCURRENCY": 4},
        name="watched",
    )
    handle = rayeval.run(task, wait=False, task_id="watched-1")
    driver = subprocess.run(
        [sys.executable, "-c", SECOND_DRIVER, ray_cluster, "watched-1"], capture_output=True, text=True, timeout=300
    )
    assert driver.returncode == 0, driver.stderr[-2000:]
    seen = json.loads(driver.stdout.strip().splitlines()[-1])
    state, done, total = seen[-1]
    assert state == "running" and 0 < done < total == 400

    coordinator = get_coordinator()
    before = ray.get(coordinator.get.remote("watched-1"))["progress"]["m"]["q"]["done"]
    ray.kill(coordinator, no_restart=False)  # Ray restarts it; it reloads from the store
    deadline = time.monotonic() + 30
    while True:
        try:
            record = ray.get(get_coordinator().get.remote("watched-1"), timeout=10)
            break
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert record["task_id"] == "watched-1" and record["name"] == "watched"
    assert record["progress"]["m"]["q"]["done"] >= min(before, 1)

    final = handle.wait(timeout=120)
    assert final["state"] == "succeeded"
    assert progress_fraction(final) == 1.0
    assert final["progress"]["m"]["q"] == {"done": 400, "errors": 0, "reused": 0, "total": 400}
    assert ray.get(get_coordinator().get.remote("watched"))["task_id"] == "watched-1"
    assert handle.results()[0]["items"] == 400


def test_restarted_coordinator_rebuilds_the_registry_from_storage(ray_cluster, gsm8k_predictions, tmp_path):
    task = gsm8k_task(gsm8k_predictions, tmp_path / "out", name="small", limit=50)
    handle = rayeval.run(task)
    coordinator = get_coordinator()
    ray.kill(coordinator, no_restart=True)  # gone for good: a new one must read the store
    deadline = time.monotonic() + 30
    while True:
        try:
            ray.get_actor("coordinator", namespace="rayeval")
            assert time.monotonic() < deadline
            time.sleep(0.2)
        except ValueError:
            break
    record = ray.get(get_coordinator().get.remote(handle.task_id))
    assert record["state"] == "succeeded"
    assert record["progress"]["a"]["gsm8k"] == {"done": 50, "errors": 0, "reused": 0, "total": 50}
    assert record["summary"][0]["items"] == 50
