"""`rayeval server` over HTTP (httpx) against a real Serve deployment on a real `ray start --head` cluster
with token authentication and the Jobs API: tokens, tags, every endpoint, audit, and no secret anywhere.

One cluster and one deployment serve the whole module; tasks run as Ray jobs against the stub model service.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from rayeval.server import AuditLog, TokenStore
from tests.conftest import free_port
from tests.support.browser import SHOTS, needs_chromium, open_browser
from tests.support.clusters import head_node
from tests.support.tasks import write_items

pytestmark = pytest.mark.ray  # a cluster of its own (`ray start --head`), as tests/jobs/test_job_submit.py

BIN = Path(sys.executable).parent
#: The model service's credential: it must reach the model, and nothing else.
CREDENTIAL = "Bearer sk-team-a-" + secrets.token_hex(8)


class Server:
    """The deployed server: its URL, store, the cluster's temp folder, and every response body seen."""

    def __init__(self, url: str, store: Path, data: Path, temp_dir: str, env: dict):
        self.url, self.store, self.data, self.temp_dir, self.env = url, store, data, temp_dir, env
        self.bodies: list[str] = []
        self.tokens = TokenStore(str(store))
        self.alice = self.tokens.create("alice", ["team-a"]).token
        self.bob = self.tokens.create("bob", ["team-b"]).token
        self.root = self.tokens.create("root", admin=True).token
        self.http = httpx.Client(base_url=f"{url}/api/v1", timeout=120, event_hooks={"response": [self._keep]})

    def _keep(self, response: httpx.Response) -> None:
        response.read()
        self.bodies.append(response.text)

    def as_(self, token: str | None) -> dict:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method: str, path: str, token: str | None, **kwargs) -> httpx.Response:
        return self.http.request(method, path, headers={**self.as_(token), **kwargs.pop("headers", {})}, **kwargs)

    def submit(self, token: str, task: dict) -> httpx.Response:
        body, kind = yaml.safe_dump(task), {"Content-Type": "application/yaml"}
        return self.call("POST", "/tasks", token, content=body, headers=kind)

    def wait(self, token: str, task_id: str, states: tuple[str, ...], timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            r = self.call("GET", f"/tasks/{task_id}", token)
            status = r.json() if r.status_code == 200 else {"state": f"HTTP {r.status_code}"}
            if status["state"] in states:
                return status
            assert time.monotonic() < deadline, f"task {task_id} still {status.get('state')}: {status.get('error')}"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A `ray start --head` cluster (token authentication on) and `rayeval server start` on it; both stopped by
    PID (never `ray stop`)."""
    root = tmp_path_factory.mktemp("server")
    home, store, data = root / "home", root / "server-store", root / "data"
    env = {**os.environ, "RAYEVAL_HOME": str(home), "HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAYEVAL_SERVE_PORT=str(free_port()))
    env.pop("RAY_ADDRESS", None)
    env.pop("RAYEVAL_TAGS", None)
    with head_node(env, prefix="rs") as head:
        started = subprocess.run(
            [str(BIN / "rayeval"), "server", "start", "--address", head.gcs, "--dashboard", head.dashboard,
             "--store", str(store), "--output", str(root / "results"), "--data-root", f"{data}/{{tag}}"],
            env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-3000:]
        url = started.stdout.split("rayeval server at ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/rayeval-server")
        yield Server(url, store, data, head.temp_dir, env)


def _task(server: Server, stub, name: str, items: int, *, team: str = "team-a", **over) -> dict:
    data = write_items(server.data / team / f"{name}.jsonl", items)
    task = {
        "name": name,
        "tags": ["team-b"],  # a team token's task carries the token's tags, whatever the file says
        "mode": "inference_and_evaluation",
        "evaluation_sets": [{"name": "q", "path": str(data), "columns": {"id": "id"}, "metrics": ["numeric_match"]}],
        "models": [{"name": "m", "url": stub.url, "model": "stub-model", "auth_header_value": CREDENTIAL}],
        "reuse": False,
    }
    task.update(over)
    return task


def test_without_a_valid_token_every_route_answers_401_with_one_body(server):
    expired = server.tokens.create("short", ["team-a"], expires_in=timedelta(seconds=1)).token
    revoked = server.tokens.create("gone", ["team-a"]).token
    assert server.call("GET", "/whoami", revoked).json()["name"] == "gone"
    server.tokens.revoke("gone")  # taken into account without a restart, within the server's cache time
    prefix, token_id, secret = server.alice.split("_", 2)
    forged = f"{prefix}_{token_id}_{secret[::-1]}"
    time.sleep(3.5)
    routes = [
        ("GET", "/tasks"), ("GET", "/whoami"), ("GET", "/tasks/anything"), ("GET", "/tasks/anything/results"),
        ("GET", "/tasks/anything/logs?follow=true"), ("POST", "/tasks/anything/stop"),
        ("DELETE", "/tasks/anything"), ("POST", "/tasks"),
    ]  # fmt: skip
    bodies = set()
    for token in (None, "", "not-a-token", forged, server.alice + "x", revoked, expired):
        headers = {"Authorization": token} if token == "not-a-token" else server.as_(token)
        for method, path in routes:  # a body that is not even JSON: the token is checked first
            r = server.http.request(method, path, headers=headers, content=b"{not json")
            assert r.status_code == 401, (token, method, path, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            bodies.add(r.text)
    assert len(bodies) == 1 and "task" not in bodies.pop().replace("token", "")
    assert server.http.get("/health").json() == {"status": "ok"}  # open, and says nothing about tasks
    docs = httpx.get(f"{server.url}/docs", timeout=30)
    assert docs.status_code == 200 and "/rayeval-server/openapi.json" in docs.text
    paths = httpx.get(f"{server.url}/openapi.json", timeout=30).json()["paths"]
    assert {"/api/v1/tasks", "/api/v1/tasks/{task}/restart", "/api/v1/tasks/{task}/report"} <= set(paths)


def test_a_teams_task_carries_its_tags_runs_and_is_missing_for_the_other_team(server, stub_server):
    stub = stub_server(api_key=CREDENTIAL.split(" ", 1)[1])
    r = server.submit(server.alice, _task(server, stub, "alpha", 20))
    assert r.status_code == 202, r.text
    task_id = r.json()["task_id"]
    pending = server.call("GET", f"/tasks/{task_id}", server.alice).json()  # shown from its submission on
    assert pending["state"] in ("pending", "running", "succeeded") and pending["tags"] == ["team-a"], pending
    status = server.wait(server.alice, task_id, ("succeeded", "failed"))
    assert status["state"] == "succeeded", status.get("error")
    assert status["tags"] == ["team-a"] and status["creator"] == "alice" and status["progress"] == 1.0
    assert stub.total_requests == 20  # the credential reached the model

    # what alice reads
    assert [t["task_id"] for t in server.call("GET", "/tasks", server.alice).json()] == [task_id]
    results = server.call("GET", f"/tasks/{task_id}/results", server.alice, params={"weights": "q=2"}).json()
    assert results["leaderboard"][0]["model"] == "m" and results["scores"][0]["value"] == 1.0
    (view,) = server.call("GET", f"/tasks/{task_id}/items/item-3", server.alice).json()
    assert view["item_id"] == "item-3" and view["steps"]
    report = server.call("GET", f"/tasks/{task_id}/report", server.alice, params={"items": 5})
    assert report.status_code == 200 and f"rayeval report: {task_id}" in report.text
    events = server.call("GET", f"/tasks/{task_id}/logs", server.alice).json()
    assert any("succeeded" in e["message"] for e in events)
    followed = server.call("GET", f"/tasks/{task_id}/logs", server.alice, params={"follow": "true"})
    assert [json.loads(line) for line in followed.text.splitlines()] == events  # an ended task: its log, then EOF

    # bob gets, for alice's task, exactly what he gets for a task that does not exist
    assert server.call("GET", "/tasks", server.bob).json() == []
    guessed = f"alpha-{task_id.split('-', 1)[1][:-1]}0"  # an id shaped like alice's
    copy_body = {"overrides": {"models.m.auth_header_value": CREDENTIAL}}
    for key in (task_id, "alpha", guessed, "no-such-task"):
        for method, path, kwargs in [
            ("GET", "", {}), ("GET", "/results", {}), ("GET", "/items/item-3", {}), ("GET", "/report", {}),
            ("GET", "/logs", {}), ("GET", "/logs", {"params": {"follow": "true"}}), ("POST", "/stop", {}),
            ("POST", "/restart", {"json": {"failed": True}}), ("POST", "/copy", {"json": copy_body}),
            ("DELETE", "", {}),
        ]:  # fmt: skip
            r = server.call(method, f"/tasks/{key}{path}", server.bob, **kwargs)
            assert (r.status_code, r.json()) == (404, {"detail": f"no task '{key}'"}), (key, method, path)
    assert server.wait(server.alice, task_id, ("succeeded",))["runs"] == 1  # untouched

    # an admin sees every team's tasks
    assert task_id in [t["task_id"] for t in server.call("GET", "/tasks", server.root).json()]
    assert server.call("GET", f"/tasks/{task_id}/results", server.root).status_code == 200
    # a team's task file may read only its own data root, and uses no ${env:...} credential
    other = server.submit(server.bob, _task(server, stub, "peek", 3))  # team-a's folder
    assert other.status_code == 422 and "data root" in other.json()["detail"]
    env_ref = _task(server, stub, "env", 3, team="team-b")
    env_ref["models"][0]["auth_header_value"] = "Bearer ${env:RAY_AUTH_TOKEN}"
    assert server.submit(server.bob, env_ref).status_code == 422
    # a task whose job fails before it starts (its data is not there) shows as failed, with the job's error
    lost = _task(server, stub, "lost", 3, team="team-b")
    lost["evaluation_sets"][0]["path"] = str(server.data / "team-b" / "missing.jsonl")
    lost_id = server.submit(server.bob, lost).json()["task_id"]
    failed = server.wait(server.bob, lost_id, ("failed",), timeout=90)
    assert "missing.jsonl" in failed["error"], failed
    assert server.call("GET", f"/tasks/{lost_id}", server.alice).status_code == 404
    assert server.call("DELETE", f"/tasks/{lost_id}", server.bob).status_code == 200
    assert server.call("GET", "/tasks", server.bob).json() == []


def test_the_owner_stops_restarts_copies_and_deletes_through_the_api(server, stub_server):
    stub = stub_server(api_key=CREDENTIAL.split(" ", 1)[1], latency=0.05)
    task = _task(server, stub, "slow", 200, parameters={"MAX_CONCURRENCY": 2})
    task_id = server.submit(server.alice, task).json()["task_id"]
    deadline = time.monotonic() + 120
    while server.call("GET", f"/tasks/{task_id}", server.alice).json()["progress"] == 0:  # a block is stored
        assert time.monotonic() < deadline, server.call("GET", f"/tasks/{task_id}", server.alice).json()
        time.sleep(0.3)
    refused = server.call("DELETE", f"/tasks/{task_id}", server.alice)
    assert refused.status_code == 409 and "stop it first" in refused.json()["detail"]
    followed: list[dict] = []

    def follow() -> None:  # the log, streamed while the task runs, until it ends
        url, headers = f"{server.url}/api/v1/tasks/{task_id}/logs", server.as_(server.alice)
        with httpx.stream("GET", url, params={"follow": "true"}, headers=headers, timeout=120) as r:
            followed.extend(json.loads(line) for line in r.iter_lines() if line)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    time.sleep(1.0)
    stopped = server.call("POST", f"/tasks/{task_id}/stop", server.alice, params={"wait": 60}).json()
    assert stopped["state"] == "stopped", stopped
    follower.join(timeout=30)
    assert not follower.is_alive() and any("stopped" in e["message"] for e in followed[-3:]), followed[-3:]
    server.bodies.append(json.dumps(followed))
    kept = server.call("GET", f"/tasks/{task_id}", server.alice).json()["progress_by"]["m"]["q"]["done"]
    assert 0 < kept < 200

    # the stored spec holds no credential: a restart takes the task file again (the credential too)
    hidden = server.call("POST", f"/tasks/{task_id}/restart", server.alice)
    assert hidden.status_code == 422 and "never stored" in hidden.json()["detail"]
    again = server.call("POST", f"/tasks/{task_id}/restart", server.alice, json={"spec": yaml.safe_dump(task)})
    assert again.status_code == 202, again.text
    copied = server.call(
        "POST", f"/tasks/{task_id}/copy", server.alice,
        json={"name": "slow-copy", "overrides": {"evaluation_sets.0.limit": 5, "tags": ["team-b"],
              "models.m.auth_header_value": CREDENTIAL}},
    )  # fmt: skip
    assert copied.status_code == 202, copied.text
    copy_id = copied.json()["task_id"]

    status = server.wait(server.alice, task_id, ("succeeded", "failed"), timeout=180)
    assert (status["state"], status["runs"], status["progress"]) == ("succeeded", 2, 1.0), status.get("error")
    assert status["progress_by"]["m"]["q"]["resumed"] >= kept  # what the first run stored was not asked again
    status = server.wait(server.alice, copy_id, ("succeeded", "failed"))
    assert (status["state"], status["name"], status["tags"]) == ("succeeded", "slow-copy", ["team-a"])
    assert sum(p["total"] for p in status["progress_by"]["m"].values()) == 5

    for gone in (task_id, copy_id):
        deleted = server.call("DELETE", f"/tasks/{gone}", server.alice)
        assert deleted.status_code == 200 and deleted.json()["state"] == "deleted"
        assert server.call("GET", f"/tasks/{gone}", server.alice).status_code == 404
        assert not (server.store.parent / "results" / gone).exists()


def test_the_command_line_speaks_to_the_server_with_no_ray_client(server, stub_server, tmp_path):
    from click.testing import CliRunner

    from rayeval.cli import main

    stub = stub_server()
    task = _task(server, stub, "by-cli", 4)
    del task["models"][0]["auth_header_value"]
    path = tmp_path / "by-cli.yaml"
    path.write_text(yaml.safe_dump(task))

    def cli(token: str | None, *args: str):
        env = {"RAYEVAL_SERVER": server.url, "RAYEVAL_TOKEN": token, "RAY_ADDRESS": None}
        result = CliRunner().invoke(main, list(args), env=env)
        server.bodies.append(result.output)
        return result

    ran = cli(server.alice, "run", str(path))
    assert ran.exit_code == 0, ran.output
    task_id = ran.output.split()[0]
    assert "succeeded" in ran.output and "numeric_match" in ran.output
    assert task_id in cli(server.alice, "list").output
    status = cli(server.alice, "status", task_id).output
    assert f"task {task_id} (inference_and_evaluation): succeeded 100.0%" in status and "m / q: 4/4" in status
    results = json.loads(cli(server.alice, "results", task_id, "--format", "json").output)
    assert [r["value"] for r in results["scores"] if r["metric"] == "numeric_match"] == [1.0]
    assert "leaderboard" in cli(server.alice, "results", task_id).output.lower()
    assert "response" in cli(server.alice, "item", task_id, "item-0").output
    assert cli(server.alice, "report", task_id, "--out", str(tmp_path / "r.html")).exit_code == 0
    assert "<html" in (tmp_path / "r.html").read_text()[:200].lower()
    assert "succeeded" in cli(server.alice, "logs", task_id).output

    # Another team's token: not found, as a task that does not exist; no token or a bad one: told what to set.
    for args in (("status", task_id), ("logs", task_id), ("delete", task_id, "--yes"), ("status", "no-such-task")):
        denied = cli(server.bob, *args)
        assert denied.exit_code != 0 and "no task" in denied.output, denied.output
    assert "RAYEVAL_TOKEN" in cli(None, "list").output
    assert "did not accept the token in RAYEVAL_TOKEN" in cli("rve_0123456789ab_" + "x" * 43, "list").output

    assert f"deleted task {task_id}" in cli(server.alice, "delete", task_id, "--yes").output


@needs_chromium
def test_the_console_logs_in_and_acts_with_its_buttons(server, stub_server):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    stub = stub_server(latency=0.05)
    theirs = _task(server, stub, "theirs", 3, team="team-b")
    del theirs["models"][0]["auth_header_value"]
    bob_id = server.submit(server.bob, theirs).json()["task_id"]
    slow = _task(server, stub, "console", 200, parameters={"MAX_CONCURRENCY": 2})
    del slow["models"][0]["auth_header_value"]  # no credential: the stored spec runs again as it is
    task_id = server.submit(server.alice, slow).json()["task_id"]

    session = open_browser()
    browser = next(session)
    try:
        # The list is drawn again every 3 s: an element found may be gone a moment later (looked up again).
        wait = WebDriverWait(browser, 120, poll_frequency=0.3, ignored_exceptions=(StaleElementReferenceException,))

        def row(task: str):
            found = browser.find_elements(By.CSS_SELECTOR, f"tr[data-task='{task}']")
            return found[0] if found else None

        def state(task: str) -> str | None:
            r = row(task)
            return r.find_element(By.CSS_SELECTOR, ".state").text if r is not None else None

        def press(task: str, button: str) -> None:
            """Click a button of a task's row (the row looked up again if it was just redrawn)."""
            for _ in range(20):
                try:
                    row(task).find_element(By.CSS_SELECTOR, f"button.{button}").click()
                    return
                except StaleElementReferenceException:
                    time.sleep(0.1)
            raise AssertionError(f"could not press {button} of {task}")

        browser.get(server.url + "/")
        wait.until(lambda b: b.find_element(By.ID, "login").is_displayed())
        browser.find_element(By.ID, "token").send_keys("rve_0123456789ab_" + "x" * 43)
        browser.find_element(By.ID, "login-button").click()
        wait.until(lambda b: "not accepted" in b.find_element(By.ID, "message").text)
        browser.find_element(By.ID, "token").send_keys(server.alice)
        browser.find_element(By.ID, "login-button").click()
        wait.until(lambda b: row(task_id) is not None and state(task_id) == "running")
        assert browser.find_element(By.ID, "who").text == "alice (tags: team-a)"
        cells = "return [...document.querySelectorAll('#tasks tbody td.tags')].map(t => t.textContent)"
        tags = browser.execute_script(cells)
        assert tags and set(tags) == {"team-a"} and row(bob_id) is None  # only the team's tasks
        assert server.alice not in browser.page_source  # the token is in the tab's session storage only
        browser.save_screenshot(str(SHOTS / "console-tasks.png"))

        press(task_id, "stop")
        wait.until(lambda b: state(task_id) == "stopped")
        browser.save_screenshot(str(SHOTS / "console-stopped.png"))
        press(task_id, "restart")
        wait.until(lambda b: state(task_id) in ("pending", "running", "succeeded"))
        assert server.wait(server.alice, task_id, ("succeeded",), timeout=180)["runs"] == 2

        wait.until(lambda b: state(task_id) == "succeeded")
        press(task_id, "copy")
        name = browser.find_element(By.ID, "copy-name")
        name.clear()
        name.send_keys("console-copy")
        overrides = browser.find_element(By.ID, "copy-overrides")
        overrides.clear()
        overrides.send_keys('{"evaluation_sets.0.limit": 3}')
        browser.find_element(By.ID, "copy-go").click()
        copy_id = wait.until(
            lambda b: b.execute_script(
                "const r = [...document.querySelectorAll('#tasks tbody tr')]"
                ".find(r => r.children[1].textContent === 'console-copy'); return r ? r.dataset.task : null"
            )
        )
        copied = server.wait(server.alice, copy_id, ("succeeded", "failed"))
        assert copied["state"] == "succeeded" and sum(p["total"] for p in copied["progress_by"]["m"].values()) == 3

        wait.until(lambda b: state(copy_id) == "succeeded")
        press(copy_id, "delete")
        assert copy_id in browser.find_element(By.ID, "delete-panel").text  # asked first
        browser.save_screenshot(str(SHOTS / "console-delete.png"))
        browser.find_element(By.ID, "delete-go").click()
        wait.until(lambda b: row(copy_id) is None)
        assert server.call("GET", f"/tasks/{copy_id}", server.alice).status_code == 404
        server.bodies.append(browser.page_source)
    finally:
        session.close()
    for gone in (task_id, bob_id):
        server.call("DELETE", f"/tasks/{gone}", server.root)


def test_the_audit_log_has_every_state_change_by_name_and_no_secret_is_anywhere(server):
    records = AuditLog(str(server.store)).records()
    seen = {(r.who, r.action, r.outcome) for r in records}
    for wanted in [
        ("alice", "submit", "ok"), ("alice", "stop", "ok"), ("alice", "restart", "ok"), ("alice", "restart", "invalid"),
        ("alice", "copy", "ok"), ("alice", "delete", "ok"), ("alice", "delete", "refused"),
        ("bob", "stop", "not-found"), ("bob", "delete", "not-found"), ("bob", "submit", "invalid"),
    ]:  # fmt: skip
        assert wanted in seen, wanted
    assert all(r.task for r in records if r.action in ("stop", "restart", "copy", "delete"))
    printed = subprocess.run(
        [str(BIN / "rayeval"), "server", "audit", "--store", str(server.store)],
        env=server.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert printed.returncode == 0 and "alice" in printed.stdout and "restart" in printed.stdout

    secret_values = [CREDENTIAL, CREDENTIAL.split(" ", 1)[1]]
    for token in (server.alice, server.bob, server.root):
        secret_values += [token, token.split("_", 2)[2]]
    texts = {"responses": "\n".join(server.bodies), "audit log": printed.stdout}
    texts["server store"] = "".join(p.read_text() for p in server.store.rglob("*") if p.is_file())
    logs = Path(server.temp_dir) / "session_latest" / "logs"
    texts["Ray logs"] = "".join(p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file())
    assert "rayeval server" in texts["Ray logs"] or "RayevalServer" in texts["Ray logs"]  # the replica's logs are there
    for where, text in texts.items():
        for value in secret_values:
            assert value not in text, f"a secret in the {where}"
