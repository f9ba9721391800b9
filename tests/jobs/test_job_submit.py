"""`ray job submit` and `rayeval submit` against a real `ray start --head` cluster started here."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from rayeval.cli import main
from tests.conftest import free_port
from tests.support.tasks import inference_task, write_items

pytestmark = pytest.mark.ray  # a cluster of its own (`ray start --head`)

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def head_cluster(tmp_path_factory):
    """A separate Ray cluster from `ray start --head --block`, stopped by PID (never `ray stop`)."""
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray puts unix sockets in it
    home = tmp_path_factory.mktemp("job-home")
    env = {**os.environ, "RAYEVAL_HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env["RAY_enable_metrics_collection"] = "1"  # this cluster exports metrics (the test session's does not)
    env.pop("RAY_ADDRESS", None)
    proc = None
    for attempt in range(3):  # a port picked free may be taken by the time Ray binds it: try fresh ones
        dashboard, metrics = free_port(), free_port()
        address = f"http://127.0.0.1:{dashboard}"
        cmd = [
            str(BIN / "ray"), "start", "--head", "--block", "--num-cpus=4", f"--temp-dir={temp_dir}",
            f"--port={free_port()}", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
            f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={metrics}",
            f"--runtime-env-agent-port={free_port()}",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"{address}/api/version", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else "(still starting)"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            if attempt == 2:
                pytest.fail(f"ray start --head did not come up: {out[-3000:]}")
            continue
        break
    env["RAYEVAL_TEST_METRICS_URL"] = f"http://127.0.0.1:{metrics}/metrics"
    yield address, env
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_job_submit_runs_the_task_entrypoint(head_cluster, stub_server, tmp_path):
    address, env = head_cluster
    server = stub_server()
    workdir = tmp_path / "work"
    write_items(workdir / "data" / "items.jsonl", 30)
    task = inference_task(
        Path("data/items.jsonl"), tmp_path / "out", [{"name": "m", "url": server.url, "model": "stub-model"}],
        name="jobtask",
    )  # fmt: skip
    (workdir / "task.yaml").write_text(yaml.safe_dump(task))
    result = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(workdir), "--",
         "python", "-m", "rayeval.jobs.run_task", "task.yaml"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "numeric_match" in result.stdout and "succeeded" in result.stdout
    assert "[rayeval]   m / q: 30/30 done, 0 errors, 0 remaining" in result.stdout  # progress per model x set
    (task_dir,) = [p for p in (tmp_path / "out").iterdir() if p.name.startswith("jobtask-")]
    summary = json.loads((task_dir / "summary.json").read_text())
    assert {(r["metric"], r["value"], r["items"], r["errors"]) for r in summary} == {
        ("numeric_match", 1.0, 30, 0),
        ("exact_match", 0.0, 30, 0),
    }
    assert server.total_requests == 30
    _check_metrics_exported(env["RAYEVAL_TEST_METRICS_URL"], task_dir.name, items=30)


def _check_metrics_exported(url: str, task_id: str, *, items: int) -> None:
    """The coordinator's progress gauges and item counters reach the node's Prometheus endpoint
    (what the dashboard's metrics view and any Prometheus scrape read)."""
    wanted = {
        "ray_rayeval_task_progress": 1.0,
        "ray_rayeval_items_evaluated_total": float(items),
        "ray_rayeval_items_remaining": 0.0,
        "ray_rayeval_items_reused": 0.0,
    }
    found: dict[str, float] = {}
    deadline = time.monotonic() + 60  # metrics are pushed to the agent every few seconds
    while time.monotonic() < deadline and found != wanted:
        text = httpx.get(url, timeout=5).text
        for line in text.splitlines():
            name = line.split("{", 1)[0]
            if name in wanted and f'task_id="{task_id}"' in line and 'model="m"' in line and 'eval_set="q"' in line:
                found[name] = float(line.rsplit(" ", 1)[1])
        time.sleep(1.0)
    assert found == wanted


def test_rayeval_submit_returns_a_task_id_and_waits(head_cluster, stub_server, tmp_path, monkeypatch):
    address, env = head_cluster
    assert "RAYEVAL_TEST_JOB_KEY" not in env  # only the submitting shell has it: submit forwards it
    monkeypatch.setenv("RAYEVAL_TEST_JOB_KEY", "job-secret-999")
    server = stub_server(api_key="job-secret-999")
    data = write_items(tmp_path / "items.jsonl", 25)
    auth = "Bearer ${env:RAYEVAL_TEST_JOB_KEY}"
    task = inference_task(
        data, tmp_path / "out", [{"name": "m", "url": server.url, "model": "stub-model", "auth_header_value": auth}],
        name="submitted",
    )  # fmt: skip
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    result = CliRunner().invoke(main, ["submit", str(tmp_path / "task.yaml"), "--address", address, "--wait"])
    assert result.exit_code == 0, result.output
    task_id = result.output.splitlines()[0]
    assert task_id.startswith("submitted-")
    assert "numeric_match  1.0000  25" in result.output
    record = json.loads((tmp_path / "out" / task_id / "task.json").read_text())
    assert record["state"] == "succeeded" and record["job_id"]
    stored = "".join(p.read_text(errors="replace") for p in (tmp_path / "out").rglob("*.json"))
    assert "job-secret-999" not in stored
    logs = CliRunner().invoke(main, ["logs", task_id, "--output", str(tmp_path / "out"), "--address", address])
    assert logs.exit_code == 0, logs.output
    assert "pipeline started (read -> inference -> scoring -> writer)" in logs.output
    assert f"task {task_id} succeeded: 25 items stored, 0 with errors, 0 retries" in logs.output
    assert f"--- driver output of Ray job {task_id}" in logs.output and f"[rayeval] task id: {task_id}" in logs.output
    assert "job-secret-999" not in logs.output
    job = httpx.get(f"{address}/api/jobs/{task_id}", timeout=10).json()
    assert "job-secret-999" not in json.dumps(job)  # not in the job's runtime_env or entrypoint either
