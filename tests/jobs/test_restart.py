"""Running a task again: after a stop, after its driver was killed with SIGKILL, and for its failed items.
Every item ends up stored exactly once, and items committed before were never sent to the model again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import ray
from click.testing import CliRunner

import rayeval
from rayeval.actors.coordinator import get_coordinator
from rayeval.cli import main
from rayeval.records import driver_gone
from rayeval.store.results import ResultsStore
from tests.support.tasks import inference_task, write_items

N = 300


def _task(tmp_path, server, name, **params):
    data = write_items(tmp_path / "items.jsonl", N)
    model = [{"name": "m", "url": server.url, "model": "stub-model"}]
    return inference_task(data, tmp_path / "out", model, parameters={"MAX_CONCURRENCY": 4, **params}, name=name)


def _stored(tmp_path, task_id) -> list[str]:
    store = ResultsStore(str(tmp_path / "out"))
    if not store.has_results(task_id):
        return []
    return store.results_dataset(task_id).to_table(columns=["item_id"])["item_id"].to_pylist()


def _quiet(server) -> int:
    """Wait until the model gets no more requests (a dead driver's actors die with it); the count then."""
    last, deadline = -1, time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.total_requests == last and server.in_flight == 0:
            return last
        last = server.total_requests
        time.sleep(1.0)
    raise AssertionError("the model kept getting requests")


def _check_complete(tmp_path, task_id, record):
    assert record["state"] == "succeeded"
    ids = _stored(tmp_path, task_id)
    assert sorted(ids) == sorted(f"item-{i}" for i in range(N))  # every item, each once
    progress = record["progress"]["m"]["q"]
    counts = {k: progress[k] for k in ("done", "errors", "reused", "total")}
    assert counts == {"done": N, "errors": 0, "reused": 0, "total": N}
    assert all(row["items"] == N and row["errors"] == 0 for row in record["summary"])


def test_restart_after_a_stop_runs_only_what_was_not_committed(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.2, record=False)
    handle = rayeval.run(_task(tmp_path, server, "restart-stop"), wait=False)
    while server.total_requests < 60 or handle.status()["progress"]["m"]["q"]["done"] == 0:
        time.sleep(0.1)  # some items reached the writer (a stop commits what it holds)
    handle.stop(wait=60)
    committed = len(_stored(tmp_path, handle.task_id))
    before = _quiet(server)
    assert 0 < committed < N
    record = rayeval.restart(handle.task_id)
    assert server.total_requests - before == N - committed  # the committed items were not asked again
    _check_complete(tmp_path, handle.task_id, record)
    assert record["runs"] == 2


def test_restart_after_the_driver_was_killed(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.5, record=False)  # 8 items/s: files are committed every 10 s, long before the end
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(_task(tmp_path, server, "restart-kill")))
    env = {**os.environ, "RAY_ADDRESS": ray_cluster}
    driver = subprocess.Popen(
        [sys.executable, "-m", "rayeval.jobs.run_task", str(task_file), "--task-id", "killed-1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while len(_stored(tmp_path, "killed-1")) < 64:  # some files committed
        assert time.monotonic() < deadline and driver.poll() is None
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    before = _quiet(server)
    committed = len(_stored(tmp_path, "killed-1"))
    assert 64 <= committed < N and len(set(_stored(tmp_path, "killed-1"))) == committed
    coordinator = get_coordinator()
    while not driver_gone(ray.get(coordinator.get.remote("killed-1"))):  # silent for HEARTBEAT_STALE_S
        assert time.monotonic() < deadline
        time.sleep(0.5)
    shown = CliRunner().invoke(main, ["status", "killed-1", "--json"])
    assert json.loads(shown.output)["state"] == "interrupted"
    began = time.monotonic()
    stopped = CliRunner().invoke(main, ["stop", "killed-1"])  # nothing runs it: stopped at once, not waited for
    assert stopped.exit_code == 0 and "stopped" in stopped.output and time.monotonic() - began < 10
    result = CliRunner().invoke(main, ["restart", "killed-1"])
    assert result.exit_code == 0, result.output
    assert server.total_requests - before == N - committed
    _check_complete(tmp_path, "killed-1", rayeval.TaskHandle("killed-1", str(tmp_path / "out")).status())


def test_restart_failed_runs_the_failed_items_again(ray_cluster, stub_server, tmp_path):
    server = stub_server(record=False)
    server.set_faults(rate=0.2, kinds=["500"], seed=7)
    handle = rayeval.run(_task(tmp_path, server, "restart-failed"))
    first = handle.status()
    failed = first["progress"]["m"]["q"]["errors"]
    assert first["state"] == "succeeded" and 0 < failed < N
    server.set_faults(rate=0.0)
    before = server.total_requests
    nothing = rayeval.restart(handle.task_id)  # without --failed: everything is done already
    assert server.total_requests == before and nothing["progress"]["m"]["q"]["errors"] == failed
    record = rayeval.restart(handle.task_id, failed=True)
    assert server.total_requests - before == failed
    _check_complete(tmp_path, handle.task_id, record)
    logs = CliRunner().invoke(main, ["logs", handle.task_id]).output
    assert f"{failed} items failed with: HTTP 500" in logs  # the first run's errors, by kind
    assert f"run 3: {N - failed} items already committed are skipped; {failed} failed rows taken out" in logs
    assert f"succeeded: {N} items stored, 0 with errors" in logs


def test_a_running_task_is_not_restarted(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.2, record=False)
    handle = rayeval.run(_task(tmp_path, server, "restart-busy"), wait=False)
    while server.total_requests < 10:
        time.sleep(0.1)
    with pytest.raises(rayeval.RayevalError, match="is running"):
        rayeval.restart(handle.task_id)
    handle.stop(wait=60)
