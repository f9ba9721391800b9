"""The HTTP transport against a real OpenAI-compatible server on 127.0.0.1: answers, time-outs that close
their connection (the server stops working on them), refused connections, redirects not followed, and
retries through `infer_one` with the permit held only while a request is in flight."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rayeval.inference.client import infer_one, request_body, resolve_endpoint
from rayeval.inference.http import KEEPALIVE_S, ConnectionFailed, HttpClient, RequestTimedOut
from rayeval.spec import ModelSpec, Parameters
from tests.support.openai_server import OpenAIStubServer


def _endpoint(server: OpenAIStubServer, timeout: float = 5.0):
    return resolve_endpoint(ModelSpec(name="m", url=server.url, model="stub-model"), None, timeout)


def test_a_connection_the_server_closed_while_the_loop_was_busy_is_not_reused(stub_server):
    """uvicorn (the stub's server, vLLM's) closes a connection idle for 5 s. A client whose event loop was
    busy that long (a script ran) has not read the close yet: reusing the connection failed the next
    request with "Server disconnected" (every time, before KEEPALIVE_S). The client keeps idle connections
    for less than that."""
    server = stub_server(record=False)
    endpoint = _endpoint(server)
    assert KEEPALIVE_S < 5.0

    async def go():
        client = HttpClient(max_connections=4)
        try:
            body = request_body(endpoint, "Hi.", Parameters(MAX_TOKENS=4, DO_SAMPLE=False))
            await client.post_json(endpoint.url, body, endpoint.headers, 5.0)
            time.sleep(5.05)  # blocks the loop past uvicorn's keep-alive: its close is not read meanwhile
            return await client.post_json(endpoint.url, body, endpoint.headers, 5.0)
        finally:
            await client.close()

    assert asyncio.run(go()).status == 200
    assert server.total_requests == 2


def test_an_answer_and_its_headers_come_back_whole(stub_server):
    server = stub_server()
    endpoint = _endpoint(server)

    async def go():
        client = HttpClient(max_connections=4)
        try:
            body = request_body(endpoint, "Say héllo.", Parameters(MAX_TOKENS=4, DO_SAMPLE=False))
            return await client.post_json(endpoint.url, body, endpoint.headers, 5.0)
        finally:
            await client.close()

    reply = asyncio.run(go())
    assert reply.status == 200 and reply.headers["content-type"].startswith("application/json")
    assert reply.json()["choices"][0]["message"]["content"]
    assert server.received[0]["messages"][-1]["content"] == "Say héllo."  # UTF-8 both ways


def test_a_timed_out_request_closes_its_connection_and_the_server_stops(stub_server):
    server = stub_server(abort_on_disconnect=True)
    server.fail_first(1, "timeout")
    endpoint = _endpoint(server, timeout=0.5)

    async def go():
        client = HttpClient(max_connections=1)
        try:
            body = request_body(endpoint, "hang", Parameters())
            started = time.monotonic()
            with pytest.raises(RequestTimedOut, match="timed out after 0.5s"):
                await client.post_json(endpoint.url, body, endpoint.headers, 0.5)
            elapsed = time.monotonic() - started
            for _ in range(50):  # the server sees the client leave and stops counting the request
                if server.in_flight == 0:
                    break
                await asyncio.sleep(0.05)
            in_flight = server.in_flight
            # With one connection allowed, the next request gets a new one (the old was closed, not reused).
            reply = await client.post_json(endpoint.url, body, endpoint.headers, 5.0)
            return elapsed, in_flight, reply.status
        finally:
            await client.close()

    elapsed, in_flight, status = asyncio.run(go())
    assert 0.4 < elapsed < 3.0 and in_flight == 0 and status == 200


def test_a_refused_connection_is_a_connection_failure():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def go():
        client = HttpClient()
        try:
            await client.post_json(f"http://127.0.0.1:{port}/v1/chat/completions", {}, {}, 2.0)
        finally:
            await client.close()

    with pytest.raises(ConnectionFailed, match="ClientConnectorError|Connect"):
        asyncio.run(go())


class _Redirect(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        self.send_response(307)
        self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_redirect_is_not_followed_with_the_credential():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/v1/chat/completions"

        async def go():
            client = HttpClient()
            try:
                return await client.post_json(url, {}, {"Authorization": "Bearer sk-x"}, 2.0)
            finally:
                await client.close()

        reply = asyncio.run(go())
        assert reply.status == 307 and reply.headers["location"].endswith("/elsewhere")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_retries_release_the_permit_while_they_back_off(stub_server):
    server = stub_server()
    server.fail_first(2, "500")
    endpoint = _endpoint(server)
    held, most = [0], [0]

    async def acquire():
        held[0] += 1
        most[0] = max(most[0], held[0])

    def release():
        held[0] -= 1

    async def go():
        client = HttpClient()
        try:
            body = request_body(endpoint, "Q", Parameters(MAX_TOKENS=4))
            return await infer_one(client, endpoint, body, max_retries=3, acquire=acquire, release=release)
        finally:
            await client.close()

    outcome = asyncio.run(go())
    assert outcome.error is None and outcome.attempts == 3 and outcome.prediction
    assert held == [0] and most == [1] and server.total_requests == 3


def test_a_request_actor_going_away_closes_its_connections(stub_server):
    from types import SimpleNamespace

    from rayeval.inference.loop import RequestLoop, close_requests

    server = stub_server()
    endpoint = _endpoint(server)
    actor = SimpleNamespace(_loop=RequestLoop(), _client=HttpClient())
    body = request_body(endpoint, "Q", Parameters(MAX_TOKENS=4))
    assert actor._loop.run(actor._client.post_json(endpoint.url, body, endpoint.headers, 5.0)).status == 200
    close_requests(actor)  # what Ray Data's shutdown calls (the actors' __del__)
    actor._loop._thread.join(5)
    assert actor._client._session.closed and not actor._loop._thread.is_alive()
    close_requests(SimpleNamespace())  # a constructor that failed early: nothing to close
