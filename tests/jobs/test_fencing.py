"""At most one live run per task (fencing): two restarts at once, and a frozen driver thawed after a
restart took over. Every item ends up stored exactly once, whatever the runs did."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import ray

import rayeval
from rayeval.actors.coordinator import get_coordinator
from rayeval.records import driver_gone
from rayeval.store.results import ResultsStore
from tests.support.tasks import inference_task, write_items

N = 300
BIN = Path(sys.executable).parent


def _task_file(tmp_path, server, name) -> Path:
    data = write_items(tmp_path / "items.jsonl", N)
    model = [{"name": "m", "url": server.url, "model": "stub-model"}]
    task = inference_task(data, tmp_path / "out", model, parameters={"MAX_CONCURRENCY": 4}, name=name, reuse=False)
    path = tmp_path / "task.json"
    path.write_text(json.dumps(task))
    return path


def _stored(tmp_path, task_id) -> list[str]:
    store = ResultsStore(str(tmp_path / "out"))
    if not store.has_results(task_id):
        return []
    return store.results_dataset(task_id).to_table(columns=["item_id"])["item_id"].to_pylist()


def _driver(task_file: Path, task_id: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rayeval.jobs.run_task", str(task_file), "--task-id", task_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _until(cond, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _all_once(tmp_path, task_id) -> list[str]:
    ids = _stored(tmp_path, task_id)
    assert len(ids) == N, f"{len(ids)} rows for {N} items ({len(ids) - len(set(ids))} stored twice)"
    assert sorted(set(ids)) == sorted(f"item-{i}" for i in range(N))
    return ids


def _gone(task_id: str) -> bool:
    return driver_gone(ray.get(get_coordinator().get.remote(task_id)))


def _killed_after_a_file(tmp_path, task_file: Path, task_id: str, env: dict) -> None:
    """Run the task in a driver of its own, SIGKILL it once a file is committed, wait until it counts as gone."""
    driver = _driver(task_file, task_id, env)
    _until(lambda: len(_stored(tmp_path, task_id)) >= 32, "a first file")
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    _until(lambda: _gone(task_id), "the killed driver to count as gone", timeout=60)


def test_two_restarts_at_once_run_one_at_a_time(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.25, record=False)  # a run takes about 20 s: long enough to overlap
    env = {**os.environ, "RAY_ADDRESS": ray_cluster}
    task_file = _task_file(tmp_path, server, "fence-twice")
    _killed_after_a_file(tmp_path, task_file, "twice-1", env)
    restart = [str(BIN / "rayeval"), "restart", "twice-1", "--quiet"]
    procs = [
        subprocess.Popen(restart, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outputs
    refused = outputs[[p.returncode for p in procs].index(1)]
    assert "rayeval: error: task twice-1 is" in refused and "stop it first" in refused, refused
    _all_once(tmp_path, "twice-1")
    record = rayeval.TaskHandle("twice-1", str(tmp_path / "out")).status()
    assert record["state"] == "succeeded" and record["progress"]["m"]["q"]["done"] == N
    assert record["summary"] and all(r["items"] == N for r in record["summary"])  # each metric counts N once

    # Waiting instead of refusing: the second restart runs after the first, and finds nothing to do.
    _killed_after_a_file(tmp_path, task_file, "twice-2", env)
    restart = [str(BIN / "rayeval"), "restart", "twice-2", "--quiet", "--if-running", "wait"]
    procs = []
    for _ in range(2):
        procs.append(subprocess.Popen(restart, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        time.sleep(1.0)
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "waiting for run" in outputs[1], outputs[1]
    _all_once(tmp_path, "twice-2")
    record = rayeval.TaskHandle("twice-2", str(tmp_path / "out")).status()
    assert record["state"] == "succeeded" and record["runs"] == 3


def test_a_frozen_driver_thawed_after_a_restart_commits_nothing(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.25, record=False)  # the restart runs ~17 s: thawed while it still does
    env = {**os.environ, "RAY_ADDRESS": ray_cluster}
    task_file = _task_file(tmp_path, server, "fence-frozen")
    old = _driver(task_file, "frozen-1", env)
    _until(lambda: len(_stored(tmp_path, "frozen-1")) >= 32, "a first file")
    old.send_signal(signal.SIGSTOP)  # Ctrl-Z, a paused laptop
    try:
        _until(lambda: _gone("frozen-1"), "the frozen driver to count as gone", timeout=60)
        result: dict = {}

        def restart() -> None:
            try:
                result["record"] = rayeval.restart("frozen-1")
            except Exception as e:  # shown by the assertion below
                result["error"] = e

        thread = threading.Thread(target=restart)
        thread.start()
        _until(lambda: ray.get(get_coordinator().get.remote("frozen-1"))["runs"] == 2, "the restart's lease")
        _until(lambda: server.total_requests > 0 and server.in_flight > 0, "the restart's requests")
    finally:
        old.send_signal(signal.SIGCONT)
    out = old.communicate(timeout=120)[0]
    assert old.returncode != 0 and "lost its lease" in out, out[-3000:]
    thread.join(timeout=300)
    assert "error" not in result, result.get("error")
    record = result["record"]
    assert record["state"] == "succeeded" and record["runs"] == 2
    _all_once(tmp_path, "frozen-1")
    assert record["progress"]["m"]["q"]["done"] == N
    assert record["summary"] and all(r["items"] == N for r in record["summary"])
