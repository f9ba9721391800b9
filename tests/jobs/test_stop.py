"""Stopping a running task: no new requests, what was evaluated is committed once and summarised."""

from __future__ import annotations

import re
import time

from click.testing import CliRunner

import rayeval
from rayeval.cli import main
from tests.support.tasks import inference_task, write_items

N = 400


def _start(tmp_path, server, name):
    data = write_items(tmp_path / "items.jsonl", N)
    task = inference_task(
        data,
        tmp_path / "out",
        [{"name": "m", "url": server.url, "model": "stub-model"}],
        parameters={"MAX_CONCURRENCY": 4},
    )
    task["name"] = name
    handle = rayeval.run(task, wait=False)
    deadline = time.monotonic() + 120
    while server.total_requests < 80:  # well into the run
        assert time.monotonic() < deadline and not handle.done()
        time.sleep(0.1)
    return handle


def _check_stopped(handle, server, record):
    assert record["state"] == "stopped"
    sent = server.total_requests
    time.sleep(1.5)
    assert server.total_requests == sent and server.in_flight == 0  # nothing more goes to the model
    ids = handle.items().to_table(columns=["item_id"])["item_id"].to_pylist()
    assert 0 < len(ids) < N and len(set(ids)) == len(ids)  # kept, each once
    assert len(ids) <= sent
    assert len(ids) == record["progress"]["m"]["q"]["done"]
    assert all(row["items"] == len(ids) for row in handle.results())  # the summary covers what was kept


def test_stop_from_the_python_api(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.2, record=False)
    handle = _start(tmp_path, server, "stoppable")
    record = handle.stop(wait=60)
    _check_stopped(handle, server, record)


def test_stop_from_the_command_line(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.2, record=False)
    handle = _start(tmp_path, server, "stoppable-cli")
    deadline = time.monotonic() + 60
    while True:  # once the first items are stored, status shows the rate and the time left
        shown = CliRunner().invoke(main, ["status", handle.task_id]).output
        if re.search(r"entries, 0 errors, \d+\.\d items/s, ETA \d+m\d\ds", shown):
            # and per model x set: done, errors, remaining, rate, ETA
            stages = r"(inferred \d+, )?(scored \d+, )?"
            rate = r"\d+ remaining, \d+\.\d items/s, ETA \d+m\d\ds"
            assert re.search(rf"m / q: \d+/\d+ done, {stages}0 errors, {rate}", shown)
            break
        assert time.monotonic() < deadline and "rate: starting" in shown, shown
        time.sleep(0.5)
    result = CliRunner().invoke(main, ["stop", handle.task_id])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == f"task {handle.task_id}: stopped"
    _check_stopped(handle, server, handle.status())
    missing = CliRunner().invoke(main, ["stop", "no-such-task"])
    assert missing.exit_code != 0 and "knows no task 'no-such-task'" in missing.output
