"""The HTTP transport of requests to models: one aiohttp session per request actor.

On this project's 2-core benchmark machine the request actors are bound by CPU, not by the model:
httpx spent 1.8 to 2.2 ms of CPU on each request there, aiohttp 0.5 to 0.6 ms at the same latency
(`benchmarks/throughput.py`). Everything above this module sees only `Reply`, `RequestTimedOut`
and `ConnectionFailed`.

A request given up at its timeout has its connection closed (aiohttp never puts a connection with
an unread answer back in the pool), so a server that stops working on requests whose client left
(vLLM does) stops working on it too.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KEEPALIVE_S", "ConnectionFailed", "HttpClient", "Reply", "RequestTimedOut"]


class RequestTimedOut(Exception):
    """No complete answer within the request's timeout; its connection was closed."""


class ConnectionFailed(Exception):
    """The request could not be sent or its answer not read (refused, reset, bad TLS, cut body)."""


@dataclass(frozen=True)
class Reply:
    """A service's answer: status, headers (lower-case names) and body."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The body as text (UTF-8; undecodable bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON (ValueError when it is not)."""
        return json.loads(self.body)


#: Seconds an idle connection is kept for the next request: under the 5 s after which uvicorn (vLLM's and
#: many OpenAI-compatible servers') closes an idle connection. A connection idle longer, reused while the
#: server closes it (a busy event loop has not yet read the server's close), failed its request with
#: "Server disconnected"; aiohttp does not reuse a connection idle past this (tests/inference/test_http.py).
KEEPALIVE_S = 3.0


class HttpClient:
    """Keep-alive connections to the services one actor calls, at most `max_connections` at once.

    The session is made on first use, on the loop the requests run on (rayeval.inference.loop).
    Proxies in the environment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY) apply, as they do for other clients.
    """

    def __init__(self, max_connections: int = 256):
        self.max_connections = max_connections
        self._session: Any = None

    def _open(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=0,
                enable_cleanup_closed=True,
                keepalive_timeout=KEEPALIVE_S,
            )
            # Reading the environment (and ~/.netrc) again for every request cost a fifth of a request's
            # CPU here: only a process with a proxy configured pays for it.
            proxied = bool(aiohttp.helpers.proxies_from_env())
            self._session = aiohttp.ClientSession(connector=connector, trust_env=proxied, auto_decompress=True)
        return self._session

    async def post_json(self, url: str, body: dict[str, Any], headers: dict[str, str], timeout: float) -> Reply:
        """POST `body` as JSON and read the whole answer within `timeout` seconds. Redirects are not
        followed (the credential would go with them): a 3xx answer is returned as it is."""
        import aiohttp

        session = self._open()
        data = json.dumps(body, ensure_ascii=False).encode()
        try:
            async with session.post(
                url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
            ) as response:
                payload = await response.read()
                return Reply(response.status, payload, {k.lower(): v for k, v in response.headers.items()})
        except asyncio.TimeoutError:
            raise RequestTimedOut(f"request timed out after {timeout:g}s") from None
        except (aiohttp.ClientError, OSError) as e:
            raise ConnectionFailed(f"{type(e).__name__}: {e}") from None

    async def close(self) -> None:
        """Close every connection (a no-op before first use)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
