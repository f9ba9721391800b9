"""A local cluster that misses Ray's fixed 30 s start-up window (its raylet not registered with the GCS in
time, as on a machine busy with other work) is cleaned up and started again by `rayeval run`'s connect.

The start is made to miss the window for real: in a new process, a thread stops (SIGSTOP) the first
raylet that Ray starts, so it cannot register. What must hold: the first start's processes are gone,
the second start gives a working cluster of one node, and the user is told why the start took longer."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SCRIPT = """
import json, threading, time
import psutil, ray
from rayeval.cluster.connect import connect

frozen = []

def freeze_the_first_raylet():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not frozen:
        for p in psutil.Process().children(recursive=True):
            try:
                if p.name() == "raylet":
                    p.suspend()
                    frozen.append(p)
                    return
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.02)

threading.Thread(target=freeze_the_first_raylet, daemon=True).start()
connect(num_cpus=1, log_to_driver=False, join_running=False)
first_start = [p.pid for p in frozen]
first_alive = [p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in frozen]

@ray.remote(num_cpus=0)
def where():
    return ray.get_runtime_context().get_node_id()

nodes = [n for n in ray.nodes() if n["Alive"]]
print(json.dumps({"frozen": first_start, "frozen_alive": first_alive, "nodes": len(nodes),
                  "task_ran_on": ray.get(where.remote()), "node": nodes[0]["NodeID"]}))
ray.shutdown()
"""


def test_a_start_that_missed_rays_window_is_cleaned_up_and_made_again(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=240
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["frozen"]) == 1, result  # the first start's raylet was stopped: the window was missed
    assert result["frozen_alive"] == [False]  # ... and killed, not left behind
    assert result["nodes"] == 1 and result["task_ran_on"] == result["node"]  # the second start works
    assert "missed Ray's 30 s start-up window (a busy machine?); starting again (attempt 2 of 3)" in out.stderr
