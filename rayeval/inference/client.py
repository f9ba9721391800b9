"""Talking to OpenAI-compatible services: request bodies, retries, and the connectivity check.

Secrets live only in `Endpoint.headers`; every error text passes through `Endpoint.scrub`.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from rayeval.inference.http import ConnectionFailed, HttpClient, Reply, RequestTimedOut
from rayeval.inference.prompt_budget import context_error
from rayeval.redaction import masked, scrub
from rayeval.spec import ModelSpec, Parameters

__all__ = [
    "Endpoint",
    "HostedEndpoint",
    "ItemOutcome",
    "ServiceCheck",
    "backoff_delay",
    "check_service",
    "infer_one",
    "item_system",
    "malformed",
    "prompt_fields",
    "request_body",
    "resolve_endpoint",
    "retry_after",
    "retryable_status",
    "sampling_fields",
    "scrub",
]

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
#: Ray Serve's proxy while an application's ingress is being replaced: its route is briefly missing.
_SERVE_ROUTE_MISSING = re.compile(r"^Path '[^']*' not found\. Ping http")
#: Characters of a service's answer kept in an error while it is handled (masked, then cut to ERROR_CHARS).
_RAW = 4000
#: Characters of an item's error text stored, after the task's credentials are masked.
ERROR_CHARS = 300
#: Seconds the permit of a request given up at its timeout stays taken after its connection was closed, so
#: that a server which stops working on requests whose client left (vLLM does) has noticed before the
#: next request gets the permit: such a server never works on more than MAX_CONCURRENCY at once.
ABANDON_GRACE_S = 0.1


@dataclass(frozen=True)
class Endpoint:
    """Where and how to call one model.

    Attributes:
        base_url: The service's /v1 base.
        api: 'chat' or 'completions'.
        model_id: Served model id sent in every request.
        headers: Request headers, including the credential (never print this).
        timeout: Seconds per request.
    """

    base_url: str
    api: str
    model_id: str
    headers: dict[str, str] = field(repr=False)
    timeout: float = 120.0

    @property
    def url(self) -> str:
        """Full URL of the completion endpoint."""
        return f"{self.base_url}/{'chat/completions' if self.api == 'chat' else 'completions'}"

    #: Every credential of the task (this endpoint's and the others'): masked in whatever comes back.
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def scrub(self, text: str, limit: int | None = None) -> str:
        """Mask the task's credentials in a text before it is stored, logged or sent on, then cut it to
        `limit` characters (rayeval.redaction.masked)."""
        return masked(text, self.secrets, limit)


@dataclass(frozen=True)
class HostedEndpoint:
    """How inference actors reach a deployed model.

    Attributes:
        app: The Serve application name.
        base_url: The OpenAI /v1 base under the Serve proxy.
        model_id: The served model id.
        max_model_len: MAX_MODEL_LEN of the engine.
        tokenizer: Local folder of the model's tokenizer (to count prompt tokens), if there is one.
        shared: True when the deployment existed already (another task's or a kept one).
    """

    app: str
    base_url: str
    model_id: str
    max_model_len: int
    tokenizer: str | None
    shared: bool


def resolve_endpoint(
    model: ModelSpec,
    auth_value: str | None,
    timeout: float = 120.0,
    *,
    hosted: HostedEndpoint | None = None,
    secrets: Iterable[str | None] = (),
) -> Endpoint:
    """Work out base URL and API from the model spec's URL, or from where rayeval deployed it.

    A URL ending in /chat/completions or /completions names the API; otherwise the URL is the
    base and `model.api` (default chat) picks the endpoint. A hosted model (`hosted`) is reached at
    its Serve route, with no credential. `secrets` are the task's other credentials: answers and
    errors are masked against all of them (a service may echo any header it was ever sent).
    """
    known = tuple(dict.fromkeys(v for v in (auth_value, *secrets) if v))
    if hosted is not None:
        headers = {"Content-Type": "application/json"}
        return Endpoint(hosted.base_url, model.api or "chat", hosted.model_id, headers, timeout, known)
    assert model.url, "resolve_endpoint needs a model with a url"
    url = model.url.rstrip("/")
    api = model.api
    for suffix, kind in (("/chat/completions", "chat"), ("/completions", "completions")):
        if url.endswith(suffix):
            url, api = url[: -len(suffix)], api or kind
            break
    headers = {"Content-Type": "application/json"}
    if auth_value:
        headers[model.auth_header_key] = auth_value
    return Endpoint(url, api or "chat", model.served_model, headers, timeout, known)


def item_system(fields: str | None, column: str | None) -> str | None:
    """An item's own system message: `column` of its other columns (`fields`, JSON), if the set names one."""
    if not column or not fields:
        return None
    value = json.loads(fields).get(column)
    return None if value is None else str(value)


def prompt_fields(api: str, query: str, params: Parameters, system: str | None = None) -> dict[str, Any]:
    """What carries the prompt in a request: `messages` (chat) or `prompt` (completions)."""
    if api == "chat":
        text = "\n\n".join(p for p in (system, params.system_prompt) if p)
        messages = [{"role": "system", "content": text}] if text else []
        return {"messages": [*messages, {"role": "user", "content": query}]}
    return {"prompt": f"{system}\n\n{query}" if system else query}


def request_body(endpoint: Endpoint, query: str, params: Parameters, system: str | None = None) -> dict[str, Any]:
    """The JSON body for one query, with the platform's meaning of each hyperparameter.

    `system` is the item's own system message (a set's `columns.system`); the task's SYSTEM_PROMPT
    follows it in the same system message. A completions API gets it before the query.
    `do_sample=False` is greedy decoding: temperature 0, and top_p, top_k and repetition_penalty are not sent
    (they would have no effect, or change the greedy answer).
    `top_k` and `repetition_penalty` are vLLM's extra sampling parameters, sent at top level.
    """
    return {"model": endpoint.model_id, **prompt_fields(endpoint.api, query, params, system), **sampling_fields(params)}


def sampling_fields(params: Parameters) -> dict[str, Any]:
    """The hyperparameters a request carries (`request_body`'s rules): max_tokens when set; with
    `do_sample=False` temperature 0 alone, else temperature, top_p, top_k and repetition_penalty when set."""
    fields: dict[str, Any] = {}
    if params.max_tokens is not None:
        fields["max_tokens"] = params.max_tokens
    if not params.do_sample:
        fields["temperature"] = 0.0
        return fields
    for name in ("temperature", "top_p", "top_k", "repetition_penalty"):
        value = getattr(params, name)
        if value is not None:
            fields[name] = value
    return fields


@dataclass
class ItemOutcome:
    """What inference produced for one item, success or not."""

    prediction: str | None = None
    started_at: float | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    attempts: int = 0
    error: str | None = None
    samples: list[str] | None = None  # every response when INFERENCE_COUNT > 1
    loglikelihoods: str | None = None  # a log-likelihood item's choices (rayeval.inference.loglikelihood)
    #: The service's answer, never stored (it may echo a credential): the HTTP error answer a failed request
    #: ended with (None after a timeout, a connection error or a malformed body), or what `parse` kept.
    reply: Reply | None = field(default=None, repr=False)


class _Retryable(Exception):
    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        *,
        abandoned: bool = False,
        reply: Reply | None = None,
    ):
        super().__init__(message)
        self.retry_after = retry_after
        self.abandoned = abandoned  # given up on while the server may still be working on it
        self.reply = reply  # the HTTP error answer, if the service gave one


class _Fatal(Exception):
    def __init__(self, message: str, reply: Reply | None = None):
        super().__init__(message)
        self.reply = reply


def retry_after(response: Reply) -> float | None:
    """Seconds a Retry-After header asks to wait (a number, or an HTTP date); None for no header, or for one
    that is neither (a malformed hint is no hint: the usual backoff applies)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # an HTTP date is GMT; one without a zone is read as such
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, parsed.timestamp() - time.time())


def backoff_delay(attempt: int, retry_after: float | None, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before retry number `attempt` (1-based): Retry-After wins, else jittered exponential."""
    if retry_after is not None:
        return min(retry_after, cap)
    return min(cap, base * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)


def malformed(error: Exception, response: Reply) -> Exception:
    """The retryable failure of a response body that is not what the API promises."""
    return _Retryable(f"malformed response body ({type(error).__name__}): {response.text[:_RAW]!r}")


def _parse(endpoint: Endpoint, response: Reply) -> ItemOutcome:
    try:
        data = response.json()
        choice = data["choices"][0]
        text = choice["message"]["content"] if endpoint.api == "chat" else choice["text"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise malformed(e, response) from None
    usage = data.get("usage") or {}
    return ItemOutcome(
        prediction=endpoint.scrub(text if isinstance(text, str) else str(text)),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        finish_reason=choice.get("finish_reason"),
    )


def retryable_status(status: int, text: str) -> bool:
    """Whether an HTTP error is worth retrying: 5xx, 408/409/425/429, and Serve's proxy answering 404 for a
    route that is missing while a hosted model's ingress is replaced (it comes back within seconds)."""
    return status in _RETRY_STATUS or status >= 500 or (status == 404 and bool(_SERVE_ROUTE_MISSING.match(text)))


async def _attempt(
    client: HttpClient,
    endpoint: Endpoint,
    body: dict[str, Any],
    parse: Callable[[Endpoint, Reply], ItemOutcome] = _parse,
    fatal: tuple[type[Exception], ...] = (),
) -> ItemOutcome:
    try:
        response = await client.post_json(endpoint.url, body, endpoint.headers, endpoint.timeout)
    except RequestTimedOut as e:
        raise _Retryable(str(e), abandoned=True) from None
    except ConnectionFailed as e:
        raise _Retryable(f"connection error: {e}") from None
    if response.status >= 400:
        text = response.text
        if response.status == 400 and (too_long := context_error(text)):
            raise _Fatal(too_long, response)
        if retryable_status(response.status, text):
            raise _Retryable(f"HTTP {response.status}: {text[:_RAW]}", retry_after(response), reply=response)
        raise _Fatal(f"HTTP {response.status}: {text[:_RAW]}", response)
    try:
        return parse(endpoint, response)
    except fatal as e:
        raise _Fatal(str(e)) from None


async def infer_one(
    client: HttpClient,
    endpoint: Endpoint,
    body: dict[str, Any],
    *,
    max_retries: int,
    acquire: Callable[[], Awaitable[Any]],
    release: Callable[[], Any],
    parse: Callable[[Endpoint, Reply], ItemOutcome] = _parse,
    fatal: tuple[type[Exception], ...] = (),
) -> ItemOutcome:
    """Run one query with retries; never raises for a request failure (it is returned as `error`).

    `parse` reads a successful response (default: the generated text); exceptions of a `fatal` type
    it raises fail the item without retries.

    A concurrency permit (`acquire`/`release`) is held only while a request is in flight, not
    during backoff. Timeouts, connection errors, 5xx, 429 and malformed bodies are retried up to
    `max_retries` times with exponential backoff that honours Retry-After. A request that failed with
    an HTTP error answer keeps it in the outcome's `reply` (for a caller that passes it on).
    """
    attempts, error, first_sent = 0, None, None
    while True:
        attempts += 1
        await acquire()
        first_sent = first_sent or time.time()
        started = time.perf_counter()
        try:
            outcome = await _attempt(client, endpoint, body, parse, fatal)
        except _Retryable as e:
            error, hint = e, e.retry_after
            if e.abandoned:  # its connection is closed: the permit waits until a server can have noticed
                await asyncio.sleep(ABANDON_GRACE_S)
        except _Fatal as e:
            text = endpoint.scrub(str(e), ERROR_CHARS)
            return ItemOutcome(started_at=first_sent, attempts=attempts, error=text, reply=e.reply)
        else:
            outcome.latency_ms = (time.perf_counter() - started) * 1000
            outcome.started_at, outcome.attempts = first_sent, attempts
            return outcome
        finally:
            release()
        if attempts > max_retries:
            text = endpoint.scrub(str(error), ERROR_CHARS)
            return ItemOutcome(started_at=first_sent, attempts=attempts, error=text, reply=error.reply)
        await asyncio.sleep(backoff_delay(attempts, hint))


@dataclass
class ServiceCheck:
    """The verdict of a connectivity test: one line per step."""

    url: str
    steps: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every step passed."""
        return bool(self.steps) and all(ok for _, ok, _ in self.steps)

    def failure(self) -> str | None:
        """The first failed step's explanation, if any."""
        return next((f"{name}: {detail}" for name, ok, detail in self.steps if not ok), None)

    def render(self) -> str:
        """Human-readable verdict."""
        lines = [f"{'ok  ' if ok else 'FAIL'} {name}: {detail}" for name, ok, detail in self.steps]
        verdict = "service OK" if self.ok else "service NOT usable"
        return "\n".join([f"checking {self.url}", *lines, verdict])


def check_service(endpoint: Endpoint, *, tiny_request: bool = True) -> ServiceCheck:
    """Connectivity test: reachable, auth accepted, model listed, and (optionally) one tiny request."""
    report = ServiceCheck(url=endpoint.base_url)
    timeout = min(endpoint.timeout, 30.0)
    with httpx.Client(timeout=timeout) as client:
        try:
            r = client.get(f"{endpoint.base_url}/models", headers=endpoint.headers)
        except httpx.TransportError as e:
            report.steps.append(("reachable", False, endpoint.scrub(f"cannot connect ({type(e).__name__}: {e})")))
            return report
        report.steps.append(("reachable", True, f"HTTP {r.status_code} from /models"))
        if r.status_code in (401, 403):
            report.steps.append(
                ("auth accepted", False, f"HTTP {r.status_code}: check auth_header_key / auth_header_value")
            )
            return report
        report.steps.append(("auth accepted", True, "credentials accepted" if endpoint.headers else "no auth sent"))
        if r.status_code == 200:
            try:
                ids = [m.get("id") for m in r.json().get("data", [])]
            except (ValueError, AttributeError):
                ids = []
            listed = endpoint.model_id in ids
            shown = ", ".join(map(str, ids[:10])) or "none"
            report.steps.append(
                ("model listed", listed, f"'{endpoint.model_id}'" + ("" if listed else f" not in [{shown}]"))
            )
            if not listed:
                return report
        if tiny_request:
            body = request_body(endpoint, "Say OK.", Parameters(max_tokens=4, do_sample=False))
            try:
                r = client.post(endpoint.url, json=body, headers=endpoint.headers)
                ok = r.status_code == 200 and bool(r.json().get("choices"))
                detail = f"HTTP {r.status_code}" + ("" if ok else f": {r.text[:_RAW]}")
            except (httpx.HTTPError, ValueError) as e:
                ok, detail = False, f"{type(e).__name__}: {e}"
            step = f"tiny request to /{endpoint.url.rsplit('/v1/', 1)[-1]}"
            report.steps.append((step, ok, endpoint.scrub(detail, ERROR_CHARS)))
    return report
