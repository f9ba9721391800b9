"""Tests of the OpenAI-compatible stub server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.openai_server import FAULT_KINDS, OpenAIStubServer

REPO_ROOT = Path(__file__).resolve().parents[2]


def _chat(prompt: str, model: str = "stub-model") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": prompt}]}


@pytest.fixture
def server() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer() as srv:
        yield srv


@pytest.fixture
def client(server: OpenAIStubServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5.0) as c:
        yield c


def test_url_and_lifecycle() -> None:
    srv = OpenAIStubServer()
    with pytest.raises(RuntimeError):
        _ = srv.url
    srv.start()
    port = srv.port
    try:
        assert srv.running
        assert srv.url.startswith("http://127.0.0.1:") and srv.url.endswith("/v1")
        assert srv.port > 0
        assert httpx.get(f"{srv.url}/models").status_code == 200
    finally:
        srv.stop()
    assert not srv.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1.0)
    srv.stop()  # idempotent


def test_chat_completion_format(server: OpenAIStubServer, client: httpx.Client) -> None:
    body = {
        "model": "stub-model",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "what is two plus two"},
        ],
    }
    resp = client.post("/chat/completions", json=body)
    assert resp.status_code == 200
    data = resp.json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    assert isinstance(data["created"], int)
    assert data["model"] == "stub-model"
    (choice,) = data["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"] == {"role": "assistant", "content": "The answer is 20."}
    assert data["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
    assert server.received == [body]
    assert server.total_requests == 1


def test_text_completion_format(server: OpenAIStubServer, client: httpx.Client) -> None:
    resp = client.post("/completions", json={"model": "stub-model", "prompt": "hello there"})
    assert resp.status_code == 200
    data = resp.json()
    assert data["object"] == "text_completion"
    assert data["choices"] == [{"index": 0, "text": "The answer is 11.", "logprobs": None, "finish_reason": "stop"}]
    assert data["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}

    batch = client.post("/completions", json={"model": "stub-model", "prompt": ["a", "bcd"]}).json()
    assert [c["text"] for c in batch["choices"]] == ["The answer is 1.", "The answer is 3."]
    assert [c["index"] for c in batch["choices"]] == [0, 1]


def test_custom_responder() -> None:
    def responder(body: dict) -> str:
        return f"echo {body['model']}"

    with OpenAIStubServer(responder=responder, models=("a", "b")) as srv:
        data = httpx.post(f"{srv.url}/chat/completions", json=_chat("x", model="b")).json()
    assert data["choices"][0]["message"]["content"] == "echo b"
    assert data["usage"]["completion_tokens"] == 2


def test_models_list(client: httpx.Client) -> None:
    resp = client.get("/models")
    assert resp.status_code == 200
    data = resp.json()
    assert data["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in data["data"]] == [("stub-model", "model", "stub")]
    assert client.get("/models/stub-model").json()["id"] == "stub-model"
    assert client.get("/models/nope").status_code == 404


def test_unknown_model_and_bad_json(server: OpenAIStubServer, client: httpx.Client) -> None:
    resp = client.post("/chat/completions", json=_chat("hi", model="gpt-nope"))
    assert resp.status_code == 404
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "model_not_found"
    assert "gpt-nope" in err["message"]

    resp = client.post("/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert server.total_requests == 2
    assert len(server.received) == 1

    resp = client.get("/nope")
    assert resp.status_code == 404
    assert "error" in resp.json()


def test_auth_required() -> None:
    with OpenAIStubServer(api_key="sk-test") as srv:
        url = srv.url
        assert httpx.get(f"{url}/models").status_code == 401
        bad = httpx.post(f"{url}/chat/completions", json=_chat("hi"), headers={"Authorization": "Bearer wrong"})
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "invalid_api_key"
        assert httpx.post(f"{url}/completions", json={"model": "stub-model", "prompt": "x"}).status_code == 401

        auth = {"Authorization": "Bearer sk-test"}
        assert httpx.get(f"{url}/models", headers=auth).status_code == 200
        ok = httpx.post(f"{url}/chat/completions", json=_chat("hi"), headers=auth)
        assert ok.status_code == 200
        assert srv.headers_seen[-1]["authorization"] == "Bearer sk-test"
        # Control endpoints need no auth.
        assert httpx.get(f"http://127.0.0.1:{srv.port}/_stats").status_code == 200


def test_fault_status_codes(server: OpenAIStubServer, client: httpx.Client) -> None:
    expected = {"500": 500, "503": 503, "429": 429}
    for kind, status in expected.items():
        server.set_faults(rate=1.0, kinds=[kind], retry_after=2.5)
        resp = client.post("/chat/completions", json=_chat("hi"))
        assert resp.status_code == status, kind
        assert "message" in resp.json()["error"]
        if kind == "429":
            assert resp.headers["retry-after"] == "2.5"
        else:
            assert "retry-after" not in resp.headers

    server.set_faults(rate=1.0, kinds=["429"])
    assert "retry-after" not in client.post("/chat/completions", json=_chat("hi")).headers

    server.set_faults(rate=1.0, kinds=["malformed"])
    resp = client.post("/chat/completions", json=_chat("hi"))
    assert resp.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.text)

    server.set_faults(rate=1.0, kinds=["malformed_json"])
    resp = client.post("/completions", json={"model": "stub-model", "prompt": "x"})
    assert resp.status_code == 200
    assert "choices" not in resp.json()

    server.set_faults(rate=1.0, kinds=["timeout"], hang_seconds=5.0)
    with pytest.raises(httpx.ReadTimeout):
        client.post("/chat/completions", json=_chat("hi"), timeout=0.1)

    assert server.total_requests == 7
    assert server.faults_injected == {
        "500": 1,
        "503": 1,
        "429": 2,
        "malformed": 1,
        "malformed_json": 1,
        "timeout": 1,
    }
    server.set_faults(rate=0.0)
    assert client.post("/chat/completions", json=_chat("hi")).status_code == 200


def test_timeout_fault_answers_after_hang(server: OpenAIStubServer, client: httpx.Client) -> None:
    server.set_faults(rate=1.0, kinds=["timeout"], hang_seconds=0.2)
    start = time.monotonic()
    resp = client.post("/chat/completions", json=_chat("hi"))
    assert time.monotonic() - start >= 0.2
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"] == "The answer is 2."


def test_fault_rate_is_reproducible(server: OpenAIStubServer, client: httpx.Client) -> None:
    def run() -> list[int]:
        server.set_faults(rate=0.5, kinds=["500", "503"], seed=7)
        return [client.post("/completions", json={"model": "stub-model", "prompt": "x"}).status_code for _ in range(30)]

    first = run()
    assert first == run()
    assert set(first) == {200, 500, 503}
    with pytest.raises(ValueError):
        server.set_faults(rate=0.5, kinds=["boom"])
    with pytest.raises(ValueError):
        server.set_faults(rate=1.5)
    assert set(FAULT_KINDS) >= {"500", "503", "429", "timeout", "malformed", "malformed_json"}


def test_fail_first(server: OpenAIStubServer, client: httpx.Client) -> None:
    server.fail_first(2, kind="503")
    codes = [client.post("/chat/completions", json=_chat("hi")).status_code for _ in range(4)]
    assert codes == [503, 503, 200, 200]
    server.fail_first(1)
    assert client.post("/chat/completions", json=_chat("hi")).status_code == 500
    assert server.total_requests == 5


def test_in_flight_accounting() -> None:
    async def fire(url: str, n: int) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=5.0) as ac:
            resps = await asyncio.gather(*(ac.post("/chat/completions", json=_chat(f"q{i}")) for i in range(n)))
        return [r.status_code for r in resps]

    with OpenAIStubServer(latency=0.2) as srv:
        assert asyncio.run(fire(srv.url, 8)) == [200] * 8
        assert srv.max_in_flight == 8
        assert srv.in_flight == 0
        assert srv.total_requests == 8
        assert len(srv.received) == 8
        assert len(srv.headers_seen) == 8
        hist = srv.in_flight_seconds
        assert set(hist) <= set(range(1, 9))
        assert hist[8] > 0.1
        assert 0.5 < srv.in_flight_fraction(8) <= 1.0
        assert srv.in_flight_fraction(1) == pytest.approx(1.0)
        assert 0.18 < sum(hist.values()) < 1.0

        srv.reset()
        assert srv.stats()["total_requests"] == 0
        assert srv.max_in_flight == 0
        assert srv.in_flight_seconds == {}
        assert srv.in_flight_fraction(1) == 0.0
        assert srv.received == [] and srv.headers_seen == []


def test_in_flight_counts_faults() -> None:
    async def fire(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=5.0) as ac:
            resps = await asyncio.gather(*(ac.post("/chat/completions", json=_chat("x")) for _ in range(4)))
        return sorted(r.status_code for r in resps)

    with OpenAIStubServer(latency=0.2) as srv:
        srv.set_faults(rate=1.0, kinds=["500"])
        assert asyncio.run(fire(srv.url)) == [500] * 4
        assert srv.max_in_flight == 4
        assert srv.in_flight == 0


def test_stats_reset_config_endpoints(server: OpenAIStubServer, client: httpx.Client) -> None:
    root = f"http://127.0.0.1:{server.port}"
    client.post("/chat/completions", json=_chat("hi"))
    stats = httpx.get(f"{root}/_stats").json()
    assert stats["total_requests"] == 1
    assert stats["received_count"] == 1
    assert stats["headers_seen_count"] == 1
    assert stats["in_flight"] == 0
    assert stats["max_in_flight"] == 1
    assert set(stats["in_flight_seconds"]) == {"1"}
    direct = server.stats()
    assert json.loads(json.dumps(direct)).keys() == stats.keys()
    assert {k: v for k, v in direct.items() if k != "in_flight_seconds"} == {
        k: v for k, v in stats.items() if k != "in_flight_seconds"
    }

    resp = httpx.post(
        f"{root}/_config",
        json={"latency": 0.05, "fault_rate": 1.0, "fault_kinds": ["429"], "retry_after": 1, "seed": 3},
    )
    assert resp.status_code == 200
    cfg = resp.json()
    assert cfg["latency"] == 0.05 and cfg["fault_rate"] == 1.0 and cfg["fault_kinds"] == ["429"]
    assert server.latency == 0.05
    start = time.monotonic()
    faulted = client.post("/chat/completions", json=_chat("hi"))
    assert time.monotonic() - start >= 0.05
    assert faulted.status_code == 429
    assert faulted.headers["retry-after"] == "1"

    httpx.post(f"{root}/_config", json={"fault_rate": 0.0, "latency": 0})
    assert client.post("/chat/completions", json=_chat("hi")).status_code == 200
    assert httpx.post(f"{root}/_config", json={"bogus": 1}).status_code == 400
    assert httpx.post(f"{root}/_config", json={"fault_kinds": ["nope"]}).status_code == 400

    reset = httpx.post(f"{root}/_reset")
    assert reset.status_code == 200
    assert reset.json()["total_requests"] == 0
    assert server.total_requests == 0


def test_main_runs_in_foreground() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.openai_server", "--port", "0", "--latency", "0.01"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), url
        resp = httpx.post(f"{url}/completions", json={"model": "stub-model", "prompt": "abc"})
        assert resp.json()["choices"][0]["text"] == "The answer is 3."
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
