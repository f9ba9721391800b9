"""OpenAI-compatible HTTP stub server for tests and benchmarks.

The server stands in for a remote model service. It serves ``GET /v1/models``,
``POST /v1/chat/completions`` and ``POST /v1/completions`` on 127.0.0.1 from a
daemon thread, with a fixed per-request latency, optional bearer-token auth,
reproducible fault injection and thread-safe in-flight accounting. The control
endpoints ``GET /_stats``, ``POST /_reset`` and ``POST /_config`` (no auth) let
a test or benchmark drive a server that runs in another process::

    python -m tests.support.openai_server --port 8123 --latency 0.1

The wire format (prompts, validation, error and response bodies) lives in
``tests/support/openai_wire.py`` and fault injection in
``tests/support/faults.py``; this module re-exports the names tests import.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from types import FrameType, TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.faults import FAULT_KINDS, FaultInjector
from tests.support.openai_wire import (
    Responder,
    completion_body,
    default_responder,
    echo_logprobs_body,
    error_response,
    model_entry,
    model_not_found,
    prompt_text,
    validate_request,
    word_count,
)

__all__ = [
    "FAULT_KINDS",
    "HOST",
    "OpenAIStubServer",
    "default_responder",
    "main",
    "prompt_text",
    "word_count",
]

HOST = "127.0.0.1"
"""The only address the stub server binds to."""

_CONFIG_KEYS = frozenset(
    {
        "latency",
        "fault_rate",
        "fault_kinds",
        "retry_after",
        "seed",
        "hang_seconds",
        "fail_first",
        "fail_first_kind",
    }
)


class _QuietServer(uvicorn.Server):
    """A uvicorn server that never touches process signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Installs no signal handlers (newer uvicorn)."""
        yield

    def install_signal_handlers(self) -> None:
        """Installs no signal handlers (older uvicorn)."""


class OpenAIStubServer:
    """A real OpenAI-compatible HTTP server on 127.0.0.1, run in a daemon thread.

    Counters are updated on the server's event loop and may be read from any
    thread. Completion requests are those to ``/v1/chat/completions`` and
    ``/v1/completions``; every one of them, whatever its outcome, counts in
    ``total_requests``, ``in_flight`` and ``headers_seen``.

    Args:
        latency: Seconds each completion request sleeps before answering.
        responder: Maps a request body to the completion text; defaults to
            :func:`default_responder`.
        api_key: When set, ``/v1`` endpoints require ``Authorization: Bearer <api_key>``.
        models: Model ids served; requests naming any other model get a 404.
        port: Port to bind on 127.0.0.1; 0 picks a free one.
        record: Whether to keep request bodies and headers (``received`` and
            ``headers_seen``); turn off for long benchmarks.
        echo_auth: A leaky service: every answer, and the message of every injected 500, repeats the
            request's Authorization header (the 500's well past its 200th character).
        echo_logprobs: Completions requests with `echo` and `logprobs` and a prompt of token ids get the
            prompt's log-probabilities (`echo_logprobs_body`), as vLLM answers them; False: answered
            without them, as a service that cannot score by log-likelihood.
        abort_on_disconnect: A hanging request (fault "timeout") stops, and stops counting in flight, as
            soon as its client closes the connection (as vLLM aborts a request whose client left).
        created_is_now: `/v1/models` gives the time of each answer as the models' `created` (as vLLM's
            server does) instead of the time the server started (as OpenAI's gives a model's creation).
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        responder: Responder | None = None,
        api_key: str | None = None,
        models: Sequence[str] = ("stub-model",),
        port: int = 0,
        record: bool = True,
        echo_auth: bool = False,
        abort_on_disconnect: bool = False,
        echo_logprobs: bool = True,
        created_is_now: bool = False,
    ) -> None:
        if latency < 0:
            raise ValueError("latency must be >= 0")
        if not models:
            raise ValueError("models must not be empty")
        self._latency = float(latency)
        self._responder: Responder = responder or default_responder
        self._api_key = api_key
        self._auth_value = f"Bearer {api_key}" if api_key is not None else None
        self._models = tuple(models)
        self._model_set = frozenset(self._models)
        self._requested_port = port
        self._record = record
        self._echo_auth = echo_auth
        self._abort_on_disconnect = abort_on_disconnect
        self._echo_logprobs = echo_logprobs
        self._created = int(time.time())
        self._created_is_now = created_is_now
        self._ids = itertools.count(1)

        self._lock = threading.Lock()
        # Fault configuration and fault counts (guarded by _lock).
        self._injector = FaultInjector(self._lock)
        # Counters (guarded by _lock).
        self._in_flight = 0
        self._max_in_flight = 0
        self._total_requests = 0
        self._received: list[dict[str, Any]] = []
        self._headers_seen: list[dict[str, str]] = []
        self._hist: dict[int, float] = {}
        self._last_change = time.monotonic()

        self._app = self._build_app()
        self._server: _QuietServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> OpenAIStubServer:
        """Starts serving; returns once the server accepts connections.

        Args:
            timeout: Seconds to wait for the server to come up.

        Returns:
            This server.

        Raises:
            RuntimeError: If it is already running or fails to start in time.
        """
        if self._thread is not None:
            raise RuntimeError("server already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, self._requested_port))
        except OSError:
            sock.close()
            raise
        port = int(sock.getsockname()[1])
        self._stopping = False
        config = uvicorn.Config(
            self._app,
            host=HOST,
            port=port,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=1,
            backlog=4096,
        )
        server = _QuietServer(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"openai-stub-{port}", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(timeout=2.0)
                sock.close()
                raise RuntimeError(f"stub server on port {port} failed to start")
            time.sleep(0.002)
        self._server, self._thread, self._port = server, thread, port
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the server and waits for its thread; a no-op when not running.

        Args:
            timeout: Seconds to wait for a graceful shutdown before forcing it.
        """
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping = True  # wakes long sleeps so shutdown stays graceful
        server.should_exit = True
        thread.join(timeout=timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=timeout)
        self._server = self._thread = None
        self._port = None

    def __enter__(self) -> OpenAIStubServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def port(self) -> int:
        """The bound port (or the requested fixed port before ``start``)."""
        if self._port is not None:
            return self._port
        if self._requested_port:
            return self._requested_port
        raise RuntimeError("server not started; the ephemeral port is not known yet")

    @property
    def url(self) -> str:
        """The OpenAI base URL, ``http://127.0.0.1:PORT/v1``."""
        return f"http://{HOST}:{self.port}/v1"

    @property
    def base_url(self) -> str:
        """The server root, ``http://127.0.0.1:PORT`` (for ``/_stats`` etc.)."""
        return f"http://{HOST}:{self.port}"

    @property
    def models(self) -> tuple[str, ...]:
        """The served model ids."""
        return self._models

    @property
    def api_key(self) -> str | None:
        """The required API key, if any."""
        return self._api_key

    # ------------------------------------------------------------- configuration

    @property
    def latency(self) -> float:
        """Seconds each completion request sleeps before answering."""
        return self._latency

    @latency.setter
    def latency(self, value: float) -> None:
        if value < 0:
            raise ValueError("latency must be >= 0")
        self._latency = float(value)

    def set_faults(
        self,
        rate: float = 0.0,
        kinds: Sequence[str] = ("500",),
        retry_after: float | None = None,
        seed: int = 0,
        hang_seconds: float = 30.0,
        per_prompt_failures: int | None = None,
    ) -> None:
        """Configures random fault injection; reseeds the fault RNG.

        With ``per_prompt_failures`` set, faults are transient per prompt instead of per
        request: a prompt is faulty with probability ``rate`` (decided once, from the seed and
        the prompt text), and a faulty prompt's first ``per_prompt_failures`` requests fail;
        later ones succeed. ``faulted_prompts`` then tells which prompts were faulty.

        Args:
            rate: Probability that a completion request gets a fault.
            kinds: Fault kinds to choose from uniformly (see ``FAULT_KINDS``).
            retry_after: ``Retry-After`` seconds sent with 429 faults, if set.
            seed: Seed of the fault RNG, for reproducible runs.
            hang_seconds: How long a ``"timeout"`` fault stalls before answering.

        Raises:
            ValueError: On a rate outside [0, 1] or an unknown kind.
        """
        self._injector.set_faults(
            rate=rate,
            kinds=kinds,
            retry_after=retry_after,
            seed=seed,
            hang_seconds=hang_seconds,
            per_prompt_failures=per_prompt_failures,
        )

    def fail_first(self, n: int, kind: str = "500") -> None:
        """Makes the next ``n`` completion requests fail with ``kind``.

        These take precedence over random faults and do not consume the RNG.

        Args:
            n: Number of requests to fail (replaces any pending count).
            kind: Fault kind (see ``FAULT_KINDS``).
        """
        self._injector.fail_first(n, kind)

    def configure(self, options: dict[str, Any]) -> dict[str, Any]:
        """Applies a ``/_config`` style update; only the given keys change.

        Args:
            options: Any of ``latency``, ``fault_rate``, ``fault_kinds``,
                ``retry_after``, ``seed``, ``hang_seconds``, ``fail_first``
                and ``fail_first_kind``. Fault keys reseed the fault RNG.

        Returns:
            The configuration after the update.

        Raises:
            ValueError: On unknown keys or invalid values.
        """
        unknown = set(options) - _CONFIG_KEYS
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        if "latency" in options:
            self.latency = float(options["latency"])
        fault_keys = {"fault_rate", "fault_kinds", "retry_after", "seed", "hang_seconds"}
        if fault_keys & set(options):
            current = self.current_config()
            kinds = options.get("fault_kinds", current["fault_kinds"])
            if isinstance(kinds, str):
                kinds = [kinds]
            retry_after = options.get("retry_after", current["retry_after"])
            self.set_faults(
                rate=float(options.get("fault_rate", current["fault_rate"])),
                kinds=kinds,
                retry_after=None if retry_after is None else float(retry_after),
                seed=int(options.get("seed", current["seed"])),
                hang_seconds=float(options.get("hang_seconds", current["hang_seconds"])),
            )
        if "fail_first" in options or "fail_first_kind" in options:
            n, kind = self._injector.pending_fail_first()
            self.fail_first(int(options.get("fail_first", n)), str(options.get("fail_first_kind", kind)))
        return self.current_config()

    def current_config(self) -> dict[str, Any]:
        """Returns the current latency and fault configuration."""
        with self._lock:
            return self._config_locked()

    def _config_locked(self) -> dict[str, Any]:
        return {
            "latency": self._latency,
            **self._injector.config_locked(),
            "models": list(self._models),
            "auth": self._api_key is not None,
        }

    # ------------------------------------------------------------------ counters

    @property
    def in_flight(self) -> int:
        """Completion requests being handled right now."""
        with self._lock:
            return self._in_flight

    def redeploy(self) -> None:
        """The served models were replaced (new weights under the same ids): `/v1/models` says they were
        created now."""
        self._created = int(time.time())

    def _created_at(self) -> int:
        return int(time.time()) if self._created_is_now else self._created

    @property
    def max_in_flight(self) -> int:
        """Highest ``in_flight`` since start or the last ``reset``."""
        with self._lock:
            return self._max_in_flight

    @property
    def total_requests(self) -> int:
        """Completion requests received, faulted and rejected ones included."""
        with self._lock:
            return self._total_requests

    @property
    def received(self) -> list[dict[str, Any]]:
        """A copy of the JSON bodies of completion requests, in arrival order."""
        with self._lock:
            return list(self._received)

    @property
    def headers_seen(self) -> list[dict[str, str]]:
        """A copy of the completion requests' headers (lower-case keys)."""
        with self._lock:
            return list(self._headers_seen)

    @property
    def faults_injected(self) -> dict[str, int]:
        """How many faults of each kind were served."""
        return self._injector.counts()

    @property
    def in_flight_seconds(self) -> dict[int, float]:
        """Seconds spent at each in-flight level > 0, up to now."""
        with self._lock:
            return self._hist_locked(time.monotonic())

    def in_flight_fraction(self, level: int) -> float:
        """Returns the share of busy time (in flight >= 1) spent at >= ``level``.

        Args:
            level: The in-flight level.

        Returns:
            A fraction in [0, 1]; 0.0 when the server has not been busy.
        """
        hist = self.in_flight_seconds
        busy = sum(hist.values())
        if busy <= 0:
            return 0.0
        return sum(s for k, s in hist.items() if k >= level) / busy

    def reset(self) -> None:
        """Clears all counters; configuration and pending ``fail_first`` stay.

        ``in_flight`` keeps counting requests still being handled.
        """
        with self._lock:
            self._max_in_flight = self._in_flight
            self._total_requests = 0
            self._received = []
            self._headers_seen = []
            self._hist = {}
            self._injector.reset_counts_locked()
            self._last_change = time.monotonic()

    def stats(self) -> dict[str, Any]:
        """Returns the counters as a JSON-able dict (also served at ``/_stats``).

        ``in_flight_seconds`` has string keys; bodies and headers are given
        only as ``received_count`` and ``headers_seen_count``.
        """
        with self._lock:
            hist = self._hist_locked(time.monotonic())
            return {
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "total_requests": self._total_requests,
                "received_count": len(self._received),
                "headers_seen_count": len(self._headers_seen),
                "in_flight_seconds": {str(k): v for k, v in sorted(hist.items())},
                "faults_injected": self._injector.counts_locked(),
                "config": self._config_locked(),
            }

    def _hist_locked(self, now: float) -> dict[int, float]:
        hist = dict(self._hist)
        if self._in_flight > 0:
            hist[self._in_flight] = hist.get(self._in_flight, 0.0) + (now - self._last_change)
        return hist

    def _advance_locked(self, now: float) -> None:
        if self._in_flight > 0:
            level = self._in_flight
            self._hist[level] = self._hist.get(level, 0.0) + (now - self._last_change)
        self._last_change = now

    def _enter(self, headers: dict[str, str]) -> None:
        with self._lock:
            self._advance_locked(time.monotonic())
            self._in_flight += 1
            if self._in_flight > self._max_in_flight:
                self._max_in_flight = self._in_flight
            self._total_requests += 1
            if self._record:
                self._headers_seen.append(headers)

    def _leave(self) -> None:
        with self._lock:
            self._advance_locked(time.monotonic())
            self._in_flight -= 1

    @property
    def faulted_prompts(self) -> set[str]:
        """Prompts that got at least one fault in per-prompt mode."""
        return self._injector.faulted_prompts

    # ------------------------------------------------------------------ HTTP app

    def _build_app(self) -> Starlette:
        routes = [
            Route("/v1/models", self._list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", self._get_model, methods=["GET"]),
            Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
            Route("/v1/completions", self._completions, methods=["POST"]),
            Route("/_stats", self._stats_endpoint, methods=["GET"]),
            Route("/_reset", self._reset_endpoint, methods=["POST"]),
            Route("/_config", self._config_endpoint, methods=["GET", "POST"]),
        ]
        return Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})

    def _check_auth(self, request: Request) -> Response | None:
        if self._auth_value is None:
            return None
        value = request.headers.get("authorization")
        if value is None:
            return error_response(
                401,
                "You didn't provide an API key. Provide it in the Authorization header (Bearer auth).",
                code="missing_api_key",
            )
        if value != self._auth_value:
            return error_response(401, "Incorrect API key provided.", code="invalid_api_key")
        return None

    async def _list_models(self, request: Request) -> Response:
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        return JSONResponse({"object": "list", "data": [model_entry(m, self._created_at()) for m in self._models]})

    async def _get_model(self, request: Request) -> Response:
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        model = request.path_params["model"]
        if model not in self._model_set:
            return model_not_found(model)
        return JSONResponse(model_entry(model, self._created_at()))

    async def _chat_completions(self, request: Request) -> Response:
        return await self._handle_completion(request, chat=True)

    async def _completions(self, request: Request) -> Response:
        return await self._handle_completion(request, chat=False)

    async def _handle_completion(self, request: Request, *, chat: bool) -> Response:
        self._enter(dict(request.headers))
        try:
            raw = await request.body()
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if isinstance(body, dict) and self._record:
                with self._lock:
                    self._received.append(body)
            denied = self._check_auth(request)
            if denied is not None:
                return denied
            if not isinstance(body, dict):
                return error_response(400, "We could not parse the JSON body of your request.")
            invalid = validate_request(body, chat=chat, models=self._model_set)
            if invalid is not None:
                return invalid
            fault = self._injector.draw(body)
            if self._latency > 0:
                await self._sleep(self._latency)
            auth = request.headers.get("authorization", "")
            if fault == "500" and self._echo_auth:
                message = "internal error while serving the request" + "." * 150 + f" (Authorization: {auth})"
                return error_response(500, message, type_="server_error")
            if fault == "timeout" and self._abort_on_disconnect:
                await self._hang_until_disconnected(request)
                return error_response(499, "client closed the request")
            if fault is not None:
                faulted = await self._fault_response(fault, body, chat=chat)
                if faulted is not None:
                    return faulted
            responder = self._responder
            if self._echo_auth:
                responder = lambda b: f"{self._responder(b)} (you sent Authorization: {auth})"  # noqa: E731
            prompt = body.get("prompt")
            if not chat and body.get("echo") and body.get("logprobs") and isinstance(prompt, list):
                if self._echo_logprobs and prompt and all(isinstance(t, int) for t in prompt):
                    return JSONResponse(echo_logprobs_body(body, ids=self._ids))
            try:
                return JSONResponse(completion_body(body, chat=chat, responder=responder, ids=self._ids))
            except Exception as exc:  # a user responder failed
                return error_response(500, f"responder failed: {exc!r}", type_="server_error")
        finally:
            self._leave()

    async def _fault_response(self, kind: str, body: dict[str, Any], *, chat: bool) -> Response | None:
        if kind == "timeout":
            await self._sleep(self._injector.hang_seconds)
            return None
        return self._injector.response(kind, body, chat=chat, ids=self._ids)

    async def _hang_until_disconnected(self, request: Request) -> None:
        """Hang (up to the fault's hang time) until the client closes the connection."""
        deadline = time.monotonic() + self._injector.hang_seconds
        while not self._stopping and time.monotonic() < deadline:
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.005)

    async def _sleep(self, seconds: float) -> None:
        """Sleeps ``seconds``; long sleeps end early when the server stops."""
        if seconds <= 0.5:
            await asyncio.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        while not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 0.05))

    async def _stats_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def _reset_endpoint(self, request: Request) -> Response:
        self.reset()
        return JSONResponse(self.stats())

    async def _config_endpoint(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(self.current_config())
        try:
            options = json.loads(await request.body() or b"{}")
        except ValueError:
            return error_response(400, "We could not parse the JSON body of your request.")
        if not isinstance(options, dict):
            return error_response(400, "The config body must be a JSON object.")
        try:
            return JSONResponse(self.configure(options))
        except (TypeError, ValueError) as exc:
            return error_response(400, str(exc))


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Renders routing errors (404, 405) as OpenAI error bodies."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "Internal server error"
    code = "not_found" if status == 404 else None
    return error_response(status, f"{detail}: {request.method} {request.url.path}", code=code)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the stub server in the foreground until SIGINT or SIGTERM.

    Args:
        argv: Command-line arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The process exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.openai_server", description="OpenAI-compatible stub server."
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per completion request")
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    parser.add_argument(
        "--model", action="append", default=None, help="served model id (repeatable; default stub-model)"
    )
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability of a fault")
    parser.add_argument("--fault-kinds", default="500", help=f"comma-separated kinds from {FAULT_KINDS}")
    parser.add_argument("--retry-after", type=float, default=None, help="Retry-After seconds on 429")
    parser.add_argument("--seed", type=int, default=0, help="fault RNG seed")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="stall of a timeout fault")
    parser.add_argument("--no-record", action="store_true", help="do not keep request bodies/headers")
    parser.add_argument(
        "--responder", default=None, metavar="MODULE:FUNCTION", help="answer with this function of the request body"
    )
    args = parser.parse_args(argv)

    responder = None
    if args.responder:
        import importlib

        module, _, function = args.responder.partition(":")
        responder = getattr(importlib.import_module(module), function)
    server = OpenAIStubServer(
        latency=args.latency,
        responder=responder,
        api_key=args.api_key,
        models=tuple(args.model) if args.model else ("stub-model",),
        port=args.port,
        record=not args.no_record,
    )
    server.set_faults(
        rate=args.fault_rate,
        kinds=[k.strip() for k in args.fault_kinds.split(",") if k.strip()],
        retry_after=args.retry_after,
        seed=args.seed,
        hang_seconds=args.hang_seconds,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    server.start()
    print(server.url, flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
