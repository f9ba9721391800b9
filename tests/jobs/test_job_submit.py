"""`ray job submit` and `rayeval submit` against a real `ray start --head` cluster started here."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import free_port
from tests.support.clusters import head_node
from tests.support.tasks import inference_task, write_items

pytestmark = pytest.mark.ray  # a cluster of its own (`ray start --head`)

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def head_cluster(tmp_path_factory):
    """A separate Ray cluster from `ray start --head --block`, with Ray's token authentication on, as a
    real cluster has it; stopped by PID (never `ray stop`). Yields its dashboard address and the
    environment of a user who has the token the way Ray documents it (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN)."""
    home = tmp_path_factory.mktemp("job-home")
    env = {**os.environ, "RAYEVAL_HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env["RAY_enable_metrics_collection"] = "1"  # this cluster exports metrics (the test session's does not)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), HOME=str(home))
    env["RAYEVAL_SERVE_PORT"] = str(free_port())  # its Serve proxy apart from any other cluster's
    env.pop("RAY_ADDRESS", None)
    with head_node(env, prefix="rt") as head:
        env["RAYEVAL_TEST_METRICS_URL"] = f"http://127.0.0.1:{head.metrics_port}/metrics"
        env["RAYEVAL_TEST_GCS_ADDRESS"] = head.gcs  # what `ray start` prints for RAY_ADDRESS
        yield head.dashboard, env


def _auth(env: dict) -> dict:
    """The header a client with the cluster's token sends to its dashboard."""
    return {"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"}


def _rayeval(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The `rayeval` command line, as a user runs it in a shell with `env`."""
    return subprocess.run([str(BIN / "rayeval"), *args], env=env, capture_output=True, text=True, timeout=timeout)


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
    assert "[rayeval]   m / q: 30/30 done, inferred 30, scored 30, 0 errors, 0 remaining" in result.stdout  # per stage
    # The job's output is rayeval's: no line per request, no Ray Data progress or execution plan dumps.
    assert "HTTP Request" not in result.stdout and "Running Dataset" not in result.stdout
    assert "Execution plan" not in result.stdout and "Tip:" not in result.stdout
    (task_dir,) = [p for p in (tmp_path / "out").iterdir() if p.name.startswith("jobtask-")]
    summary = json.loads((task_dir / "summary.json").read_text())
    assert {(r["metric"], r["value"], r["items"], r["errors"]) for r in summary} == {
        ("numeric_match", 1.0, 30, 0),
        ("exact_match", 0.0, 30, 0),
    }
    assert server.total_requests == 30
    _check_metrics_exported(env["RAYEVAL_TEST_METRICS_URL"], task_dir.name, items=30)


def test_ray_job_stop_is_a_stop(head_cluster, stub_server, tmp_path):
    """`ray job stop` sends the driver SIGTERM (SIGKILL 3 s later): the task ends `stopped`, not `failed` with
    SystemExit 15, and what it stored is each item once."""
    address, env = head_cluster
    server = stub_server(latency=0.3)
    workdir = tmp_path / "work"
    write_items(workdir / "data" / "items.jsonl", 400)
    task = inference_task(
        Path("data/items.jsonl"), tmp_path / "out", [{"name": "m", "url": server.url, "model": "stub-model"}],
        parameters={"MAX_CONCURRENCY": 2}, name="job-stop",
    )  # fmt: skip
    (workdir / "task.yaml").write_text(yaml.safe_dump(task))
    ray = str(BIN / "ray")
    submitted = subprocess.run(
        [ray, "job", "submit", "--no-wait", "--address", address, "--working-dir", str(workdir), "--",
         "python", "-m", "rayeval.jobs.run_task", "task.yaml"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    job_id = submitted.stdout.split("Job '", 1)[1].split("'", 1)[0]
    deadline = time.monotonic() + 120
    while server.total_requests < 10:
        assert time.monotonic() < deadline, "the submitted task did not start"
        time.sleep(0.5)
    stop = subprocess.run([ray, "job", "stop", "--address", address, job_id], env=env, capture_output=True, text=True)
    assert stop.returncode == 0, stop.stderr[-3000:]
    logs = subprocess.run([ray, "job", "logs", "--address", address, job_id], env=env, capture_output=True, text=True)
    task_id = logs.stdout.split("[rayeval] task id: ", 1)[1].split()[0]
    assert f"[rayeval] {task_id}: stop requested (SIGTERM)" in logs.stdout
    assert "SystemExit" not in logs.stdout
    deadline = time.monotonic() + 60  # a driver killed before it finished shows `stopped` once it is silent
    while True:
        status = _rayeval(env, "status", task_id, "--address", address, "--json")
        assert status.returncode == 0, status.stderr
        record = json.loads(status.stdout)
        if record["state"] != "stopping" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert record["state"] == "stopped", record.get("error")
    sent = server.total_requests
    time.sleep(1.5)
    assert server.total_requests == sent  # nothing goes on sending
    results = tmp_path / "out" / task_id / "results"  # what was committed (none if killed before a commit)
    ids = []
    if results.exists():
        import pyarrow.dataset as pads

        ids = pads.dataset(results, format="parquet", partitioning="hive").to_table(columns=["item_id"])
        ids = ids.column(0).to_pylist()
    assert len(ids) == len(set(ids)) and len(ids) < 400


def _check_metrics_exported(url: str, task_id: str, *, items: int) -> None:
    """The coordinator's progress gauges and item counters reach the node's Prometheus endpoint
    (what the dashboard's metrics view and any Prometheus scrape read)."""
    wanted = {
        "ray_rayeval_task_progress": 1.0,
        "ray_rayeval_items_evaluated_total": float(items),
        "ray_rayeval_items_remaining": 0.0,
        "ray_rayeval_items_reused": 0.0,
    }
    stages = {"inferred": float(items), "scored": float(items)}  # ray_rayeval_items_stage_total, by stage
    found: dict[str, float] = {}
    seen_stages: dict[str, float] = {}
    deadline = time.monotonic() + 60  # metrics are pushed to the agent every few seconds
    while time.monotonic() < deadline and (found != wanted or seen_stages != stages):
        text = httpx.get(url, timeout=5).text
        for line in text.splitlines():
            name = line.split("{", 1)[0]
            if not (f'task_id="{task_id}"' in line and 'model="m"' in line and 'eval_set="q"' in line):
                continue
            if name in wanted:
                found[name] = float(line.rsplit(" ", 1)[1])
            elif name == "ray_rayeval_items_stage_total":
                seen_stages[line.split('stage="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
        time.sleep(1.0)
    assert found == wanted and seen_stages == stages
    # The Grafana dashboard (`rayeval grafana`) charts these very names (and the error counter, which
    # Ray exports once an item has failed).
    from rayeval.actors.progress_metrics import grafana_dashboard

    charted = {
        name
        for panel in grafana_dashboard()["panels"]
        for name in re.findall(r"\bray_rayeval_\w+", panel["targets"][0]["expr"])
    }
    assert charted - {"ray_rayeval_item_errors_total"} == {*wanted, "ray_rayeval_items_stage_total"}


def test_rayeval_submit_returns_a_task_id_and_waits(head_cluster, stub_server, tmp_path):
    address, env = head_cluster
    assert "RAYEVAL_TEST_JOB_KEY" not in env  # only the submitting shell has it: submit forwards it
    shell = {**env, "RAYEVAL_TEST_JOB_KEY": "job-secret-999"}
    server = stub_server(api_key="job-secret-999")
    data = write_items(tmp_path / "items.jsonl", 25)
    auth = "Bearer ${env:RAYEVAL_TEST_JOB_KEY}"
    task = inference_task(
        data, tmp_path / "out", [{"name": "m", "url": server.url, "model": "stub-model", "auth_header_value": auth}],
        name="submitted",
    )  # fmt: skip
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    result = _rayeval(shell, "submit", str(tmp_path / "task.yaml"), "--address", address, "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    task_id = result.stdout.splitlines()[0]
    assert task_id.startswith("submitted-")
    assert f"[rayeval] task id: {task_id}" in result.stdout  # the job's output, streamed while it ran
    assert "numeric_match  1.0000  25" in result.stdout
    record = json.loads((tmp_path / "out" / task_id / "task.json").read_text())
    assert record["state"] == "succeeded" and record["job_id"]
    stored = "".join(p.read_text(errors="replace") for p in (tmp_path / "out").rglob("*.json"))
    assert "job-secret-999" not in stored
    logs = _rayeval(env, "logs", task_id, "--address", address)  # the task found through the cluster
    assert logs.returncode == 0, logs.stdout + logs.stderr
    assert "pipeline started (read -> inference -> scoring -> writer)" in logs.stdout
    assert f"task {task_id} succeeded: 25 items stored, 0 with errors, 0 retries" in logs.stdout
    assert f"--- driver output of Ray job {task_id}" in logs.stdout and f"[rayeval] task id: {task_id}" in logs.stdout
    assert "job-secret-999" not in logs.stdout
    job = httpx.get(f"{address}/api/jobs/{task_id}", headers=_auth(env), timeout=10).json()
    assert "job-secret-999" not in json.dumps(job)  # not in the job's runtime_env or entrypoint either
    # A client that cannot read the output location (a folder on the cluster's nodes only) is told where
    # the results are once the job has ended, instead of waiting for a record it will never see.
    elsewhere = tmp_path / "not-mounted-here"
    code = (
        "import json, rayeval.api as api; "
        f"h = api.TaskHandle({task_id!r}, {str(elsewhere)!r}, job_id={task_id!r}, dashboard={address!r}); "
        "print(json.dumps(h.wait(timeout=30)))"
    )
    waited = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert waited.returncode == 0, waited.stderr[-3000:]
    record = json.loads(waited.stdout.splitlines()[-1])
    assert record["state"] == "succeeded" and str(elsewhere) in record["unreadable"]
    assert f"rayeval status {task_id} --address {address}" in record["unreadable"]


def test_status_list_stop_and_ui_through_the_dashboard_with_the_token(head_cluster, stub_server, tmp_path):
    address, env = head_cluster
    server = stub_server(latency=0.3)
    data = write_items(tmp_path / "items.jsonl", 400)
    task = inference_task(
        data, tmp_path / "out", [{"name": "m", "url": server.url, "model": "stub-model"}],
        parameters={"MAX_CONCURRENCY": 2}, name="remote-stop",
    )  # fmt: skip
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    submitted = _rayeval(env, "submit", str(tmp_path / "task.yaml"), "--address", address)
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    deadline = time.monotonic() + 120
    while server.total_requests < 10:
        assert time.monotonic() < deadline, "the submitted task did not start"
        time.sleep(0.5)
    status = _rayeval(env, "status", task_id, "--address", address, "--json")  # no local index: the cluster's
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "running"
    listed = _rayeval(env, "list", "--address", address)
    assert listed.returncode == 0 and task_id in listed.stdout and "running" in listed.stdout
    stopped = _rayeval(env, "stop", task_id, "--address", address)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"task {task_id}: stopped"
    ui = _rayeval(env, "ui", "--address", address)
    assert ui.returncode == 0, ui.stderr
    url = ui.stdout.split("proxy: ", 1)[1].split(" ", 1)[0]
    page = httpx.get(url, timeout=30)
    assert page.status_code == 200 and task_id in page.text
    missing = _rayeval(env, "status", "no-such-task", "--address", address)
    assert missing.returncode == 1 and missing.stderr.startswith("rayeval: error: ")
    assert "no-such-task" in missing.stderr


@pytest.mark.parametrize("token", ["none", "wrong"])
def test_without_the_token_every_command_says_what_to_set_in_one_line(head_cluster, tmp_path, token):
    address, env = head_cluster
    shell = {k: v for k, v in env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    shell["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    if token == "wrong":
        shell.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    (tmp_path / "task.yaml").write_text(
        yaml.safe_dump(inference_task(Path("items.jsonl"), tmp_path / "out", [{"name": "m", "url": "http://x/v1"}]))
    )
    (tmp_path / "items.jsonl").write_text('{"id": "1", "query": "q", "reference": "r"}\n')
    commands = [
        ["submit", str(tmp_path / "task.yaml")],
        ["status", "some-task"],
        ["list"],
        ["logs", "some-task"],
        ["stop", "some-task"],
        ["ui"],
    ]
    for args in commands:
        result = _rayeval(shell, *args, "--address", address, timeout=120)
        where = f"rayeval {' '.join(args)}: {result.stderr[-2000:]}"
        assert result.returncode == 2, where
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rayeval: error: "), where  # no traceback
        assert "RAY_AUTH_MODE=token" in lines[0] and "RAY_AUTH_TOKEN" in lines[0], where


def test_serve_run_with_an_address_deploys_on_that_cluster(head_cluster, tmp_path):
    """The README's `serve run rayeval.serve_apps.llm:build_app ...` with `--address` naming a token-auth
    cluster: the model is served by that cluster (no second, local one), and answers over HTTP."""
    from rayeval.serve_apps.tiny_model import build_tiny_model

    address, env = head_cluster
    checkpoint = build_tiny_model(tmp_path / "tiny", max_position_embeddings=512)
    shell = {**env, "RAY_ADDRESS": env["RAYEVAL_TEST_GCS_ADDRESS"]}  # for `serve start`
    # The cluster's Serve proxy port: `rayeval ui` (an earlier test) may have started Serve there already, and
    # Serve keeps the port it was started with.
    port = env["RAYEVAL_SERVE_PORT"]
    serve = str(BIN / "serve")
    started = subprocess.run(
        [serve, "start", f"--http-port={port}"], env=shell, capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        run = subprocess.run(
            [serve, "run", "--non-blocking", "--address", env["RAYEVAL_TEST_GCS_ADDRESS"],
             "rayeval.serve_apps.llm:build_app", "name=tiny-served", f"path={checkpoint}", "max_model_len=512"],
            env={**env, "RAY_ENABLE_AUTO_CONNECT": "1"}, capture_output=True, text=True, timeout=420,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        said = run.stdout + run.stderr
        port_of_head = env["RAYEVAL_TEST_GCS_ADDRESS"].rsplit(":", 1)[1]
        assert "Connecting to existing Ray cluster at address: " in said and f":{port_of_head}" in said, said[-3000:]
        assert (
            "Started a local Ray instance" not in said
        )  # no stray local cluster got the model  # built before connecting: said, with what to pass
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=30).json()
        assert [m["id"] for m in models["data"]] == ["tiny-served"]
        body = {"model": "tiny-served", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=120)
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] >= 1
        status = subprocess.run(
            [serve, "status", "--address", address], env=shell, capture_output=True, text=True, timeout=60
        )
        assert "LLMServer:tiny-served" in status.stdout and "RUNNING" in status.stdout, status.stdout
    finally:  # the replica's CPUs go back to the cluster
        subprocess.run([serve, "shutdown", "-y", "--address", address], env=shell, capture_output=True, timeout=120)
