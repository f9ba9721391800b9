"""The whole local Ray cluster killed mid-task (driver, GCS, raylet, coordinator, every actor): a new
cluster's coordinator rebuilds the registry and progress from the results store, and `restart`
finishes the task with every item stored once and no committed item sent to the model again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.jobs.test_restart import N, _check_complete, _quiet, _stored, _task

DRIVER = """
import json, sys
import ray, rayeval
from rayeval.cluster import connect
# A local cluster as `rayeval run` starts one: started again (up to three starts) if it missed Ray's start-up windows.
connect(num_cpus=4, log_to_driver=False, join_running=False)
ray.data.DataContext.get_current().enable_progress_bars = False
step, task_id = sys.argv[1], sys.argv[2]
if step == "run":
    rayeval.run(json.load(open(sys.argv[3])), task_id=task_id, log_to_driver=False)
else:
    from rayeval.actors.coordinator import get_coordinator
    print("RECORD " + json.dumps(ray.get(get_coordinator().get.remote(task_id))), flush=True)
    record = rayeval.restart(task_id, log_to_driver=False)
    print("FINAL " + json.dumps(record), flush=True)
"""


def _env(home) -> dict[str, str]:
    env = {**os.environ, "RAYEVAL_HOME": str(home)}
    env.pop("RAY_ADDRESS", None)  # a cluster of its own, started in the driver
    return env


def test_the_whole_local_cluster_restarted(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.5, record=False)  # 8 items/s: files are committed every 10 s
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(_task(tmp_path, server, "cluster-kill")))
    home = tmp_path / "home"
    first = subprocess.Popen(
        [sys.executable, str(script), "run", "whole-1", str(task_file)],
        env=_env(home),
        start_new_session=True,  # its own process group: the driver and the cluster it started
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while len(_stored(tmp_path, "whole-1")) < 64:
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # driver, GCS, raylet, workers: the whole cluster
    first.wait()
    before = _quiet(server)
    committed = len(_stored(tmp_path, "whole-1"))
    assert 64 <= committed < N

    second = subprocess.run(
        [sys.executable, str(script), "restart", "whole-1"],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
    )
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    lines = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in second.stdout.splitlines()
             if line.startswith(("RECORD ", "FINAL "))}  # fmt: skip
    reloaded = lines["RECORD"]  # what the new cluster's coordinator rebuilt from storage
    assert reloaded["state"] == "interrupted" and reloaded["name"] == "cluster-kill"
    assert reloaded["progress"]["m"]["q"]["total"] == N
    assert reloaded["progress"]["m"]["q"]["done"] == committed  # counted again from the committed results
    assert server.total_requests - before == N - committed  # committed items were not asked again
    _check_complete(tmp_path, "whole-1", lines["FINAL"])
    assert lines["FINAL"]["runs"] == 2
