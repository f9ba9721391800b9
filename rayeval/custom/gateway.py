"""The Custom Evaluation gateway: the OpenAI-compatible service a custom task's programs call instead of
the model, so that the task's parameters hold for them as they do for the inference stage.

One Ray Serve application per run of a custom task (`Gateway`, a FastAPI ingress), under a route of its own
(`/rayeval-gateway/{task}/{epoch}`), reached through the Serve proxy of the program's node, as hosted models
are. Each configuration x model has its /v1 base there, `{route}/{config}/{model}/v1`, with
`POST /chat/completions`, `POST /completions` (JSON; `stream: true` is refused with 400) and `GET /models`.
For each completion request the gateway:

- fills in the model's id and the task's sampling parameters for the model where the request leaves them out
  (what the program sends wins; greedy decoding as the inference stage has it: `sampling_fields`);
- waits for a permit of the model's cluster-wide limiter (rayeval.actors.limiter, the one the inference stage
  uses), so MAX_CONCURRENCY holds for the model whatever the program sends at once;
- sends it to the model with the model's credential, retried as MAX_RETRY_PER_QUERY says (`infer_one`);
- gives back the model's answer with the task's credentials masked; a request that failed after its retries
  gets the model's status and JSON error body (502 or 504 with the gateway's own when the model gave none);
- counts requests, retries and tokens (the answers' `usage`) per configuration x model (`usage`), and tells
  the coordinator how many were answered, as the `inferred` count of the configuration's sets (`rayeval
  status`).

The credentials come to the replica with its arguments and leave it only in the requests to the model: the
program gets none. `start_gateway` deploys the application and the models' limiters; `GatewayRun.close`
takes them down.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from rayeval.actors.limiter import NAMESPACE, LeasedPermits, create_limiter, limiter_name
from rayeval.custom.outcome import PairUsage, no_usage
from rayeval.inference.client import Endpoint, ItemOutcome, infer_one, malformed, sampling_fields
from rayeval.inference.http import HttpClient, Reply
from rayeval.spec import Parameters

__all__ = ["Gateway", "GatewayModel", "GatewayRun", "start_gateway", "with_parameters"]

log = logging.getLogger("rayeval")

#: Prefix of the gateway applications' names and routes.
APP_PREFIX = "rayeval-gateway"
#: Requests one replica takes at once: the limiter, not Serve, is what bounds the requests to a model.
MAX_ONGOING = 1000
#: Seconds between reports of answered requests to the coordinator (and at each `usage` call).
REPORT_EVERY_S = 1.0
#: Seconds `start_gateway` waits for the gateway's route to answer through the proxy.
READY_TIMEOUT_S = 60.0

api = FastAPI(title="rayeval gateway", docs_url=None, redoc_url=None, openapi_url=None)


@dataclass(frozen=True)
class GatewayModel:
    """A model behind the gateway.

    Attributes:
        name: The model's name in the task.
        endpoint: Where and how to call it, its credential in the headers (`resolve_endpoint`).
        params: The task's parameters for it (`TaskSpec.model_parameters`).
    """

    name: str
    endpoint: Endpoint
    params: Parameters


def with_parameters(body: dict[str, Any], model_id: str, params: Parameters) -> dict[str, Any]:
    """A program's request with the model's id and the task's sampling fields (`sampling_fields`: greedy
    decoding sends temperature 0 and nothing else) where it leaves them out; the request's own fields win.
    A request that limits its length with `max_completion_tokens` gets no `max_tokens` beside it."""
    fields = sampling_fields(params)
    if "max_completion_tokens" in body:
        fields.pop("max_tokens", None)
    return {"model": model_id, **fields, **body}


def _masked(data: Any, scrub: Callable[[str], str]) -> Any:
    """JSON data with the credentials masked in every string (so escaping in the text cannot hide one)."""
    if isinstance(data, str):
        return scrub(data)
    if isinstance(data, list):
        return [_masked(x, scrub) for x in data]
    if isinstance(data, dict):
        return {scrub(str(k)): _masked(v, scrub) for k, v in data.items()}
    return data


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    """An error answer in OpenAI's shape."""
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def _answer(endpoint: Endpoint, response: Reply) -> ItemOutcome:
    """A model's successful answer, kept whole (`reply`) with its token counts; a body that is not a JSON
    object with `choices` is malformed (retried, as the inference stage retries it)."""
    try:
        data = response.json()
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise ValueError("no `choices` list in the answer")
    except ValueError as e:
        raise malformed(e, response) from None
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return ItemOutcome(
        reply=response,
        prompt_tokens=prompt if isinstance(prompt, int) else None,
        completion_tokens=completion if isinstance(completion, int) else None,
    )


@serve.deployment(
    num_replicas=1,
    max_ongoing_requests=MAX_ONGOING,
    ray_actor_options={"num_cpus": 0},
    max_constructor_retry_count=3,
    logging_config={"enable_access_log": False},
    # Taken down when the task's pairs have ended: nothing is in flight then, so it need not wait long.
    graceful_shutdown_wait_loop_s=0.2,
    graceful_shutdown_timeout_s=5,
)
@serve.ingress(api)
class Gateway:
    """The gateway of one run of a custom task (see the module's docstring).

    Args:
        task_id: The task.
        epoch: The run (its lease): the coordinator counts only the current run's requests.
        models: The task's models.
        sets: Configuration name -> the evaluation sets it covers (progress is counted there).
    """

    def __init__(self, task_id: str, epoch: int | None, models: list[GatewayModel], sets: dict[str, list[str]]):
        self.task_id, self.epoch, self.sets = task_id, epoch, sets
        self.models = {m.name: m for m in models}
        context = ray.get_runtime_context()
        self.holder, self.handle = context.get_actor_id(), context.current_actor
        self.limiters = {
            m.name: ray.get_actor(limiter_name(task_id, m.name, epoch), namespace=NAMESPACE) for m in models
        }
        # A replica Serve started again holds nothing: its previous incarnation's leases are taken back.
        self.incarnations = {n: ray.get(lim.reset.remote(self.holder)) for n, lim in self.limiters.items()}
        self._permits: dict[str, LeasedPermits] = {}
        self._client: HttpClient | None = None
        self._usage: dict[tuple[str, str], PairUsage] = {}
        self._answered: Counter[tuple[str, str]] = Counter()  # (model, set) -> answers not yet reported
        self._reported = time.monotonic()

    def _http(self) -> HttpClient:
        """The replica's HTTP client, made on the loop its requests run on."""
        if self._client is None:
            self._client = HttpClient(max_connections=sum(m.params.max_concurrency for m in self.models.values()))
        return self._client

    def _permits_of(self, model: GatewayModel) -> LeasedPermits:
        if model.name not in self._permits:
            self._permits[model.name] = LeasedPermits(
                self.limiters[model.name],
                self.holder,
                model.params.max_concurrency,
                handle=self.handle,
                incarnation=self.incarnations[model.name],
            )
        return self._permits[model.name]

    def _target(self, config: str, model: str) -> GatewayModel | JSONResponse:
        target = self.models.get(model)
        if target is None or config not in self.sets:
            return _error(
                404,
                f"no configuration '{config}' x model '{model}' on this gateway (configurations: "
                f"{', '.join(sorted(self.sets))}; models: {', '.join(sorted(self.models))})",
                "not_found_error",
            )
        return target

    @api.get("/healthz")
    async def healthz(self) -> dict[str, bool]:
        """The gateway is up (`start_gateway` waits for this through the proxy)."""
        return {"ok": True}

    @api.post("/{config}/{model}/v1/chat/completions")
    async def chat_completions(self, config: str, model: str, request: Request) -> JSONResponse:
        """OpenAI chat completions, relayed to the model."""
        return await self._relay(config, model, "chat", request)

    @api.post("/{config}/{model}/v1/completions")
    async def completions(self, config: str, model: str, request: Request) -> JSONResponse:
        """OpenAI completions, relayed to the model."""
        return await self._relay(config, model, "completions", request)

    @api.get("/{config}/{model}/v1/models")
    async def list_models(self, config: str, model: str) -> JSONResponse:
        """The model's own /v1/models, as it answers it."""
        import httpx

        target = self._target(config, model)
        if isinstance(target, JSONResponse):
            return target
        endpoint = target.endpoint
        try:
            async with httpx.AsyncClient(timeout=min(endpoint.timeout, 30.0)) as client:
                r = await client.get(f"{endpoint.base_url}/models", headers=endpoint.headers)
        except httpx.HTTPError as e:
            return _error(502, endpoint.scrub(f"the model did not answer /models: {type(e).__name__}: {e}", 1000))
        try:
            data = r.json()
        except ValueError:
            data = {"error": {"message": endpoint.scrub(r.text, 1000), "type": "upstream_error", "code": r.status_code}}
        return JSONResponse(_masked(data, endpoint.scrub), status_code=r.status_code)

    async def _relay(self, config: str, model: str, api_kind: str, request: Request) -> JSONResponse:
        target = self._target(config, model)
        if isinstance(target, JSONResponse):
            return target
        try:
            body = json.loads(await request.body())
        except ValueError as e:
            return _error(400, f"the request body is not JSON ({e})")
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object")
        if body.get("stream"):
            return _error(400, "streaming is not supported by rayeval's gateway: send the request without `stream`")
        endpoint = replace(target.endpoint, api=api_kind)
        permits = self._permits_of(target)
        outcome = await infer_one(
            self._http(),
            endpoint,
            with_parameters(body, endpoint.model_id, target.params),
            max_retries=target.params.max_retry_per_query,
            acquire=permits.acquire,
            release=permits.release,
            parse=_answer,
        )
        self._count(config, model, outcome)
        headers = {"x-rayeval-attempts": str(outcome.attempts)}
        reply = outcome.reply
        if outcome.error is None and reply is not None:
            return JSONResponse(_masked(reply.json(), endpoint.scrub), status_code=reply.status, headers=headers)
        if reply is not None:  # the model's own error answer, after the retries the task allows
            try:
                data = reply.json()
            except ValueError:
                data = None
            if not isinstance(data, dict):
                data = {"error": {"message": endpoint.scrub(reply.text, 1000), "type": "upstream_error"}}
            return JSONResponse(_masked(data, endpoint.scrub), status_code=reply.status, headers=headers)
        status = 504 if "timed out" in (outcome.error or "") else 502
        message = f"the model gave no answer after {outcome.attempts} attempt(s): {outcome.error}"
        response = _error(status, message, "upstream_error")
        response.headers.update(headers)
        return response

    def _count(self, config: str, model: str, outcome: ItemOutcome) -> None:
        usage = self._usage.setdefault((config, model), no_usage())
        usage["requests"] += 1
        usage["failed"] += 1 if outcome.error else 0
        usage["retries"] += max(0, outcome.attempts - 1)
        usage["prompt_tokens"] += outcome.prompt_tokens or 0
        usage["completion_tokens"] += outcome.completion_tokens or 0
        if outcome.error is None:
            for s in self.sets[config]:
                self._answered[(model, s)] += 1
        if time.monotonic() - self._reported >= REPORT_EVERY_S:
            self._report()

    def _report(self) -> None:
        """Tell the coordinator the requests answered since the last report (progress, not waited for)."""
        from rayeval.actors.coordinator import report_stage

        self._reported = time.monotonic()
        if not self._answered:
            return
        pairs = [key for key, n in self._answered.items() for _ in range(n)]
        self._answered.clear()
        report_stage(self.task_id, "inferred", [m for m, _ in pairs], [s for _, s in pairs], self.epoch)

    async def usage(self, config: str, model: str) -> PairUsage:
        """What a configuration's program asked of a model so far (its answered requests reported first)."""
        self._report()
        return PairUsage(**self._usage.get((config, model), no_usage()))


def app_name(task_id: str, epoch: int | None) -> str:
    """The Serve application of one run's gateway."""
    return f"{APP_PREFIX}-{task_id}-{epoch or 0}"


def route_prefix(task_id: str, epoch: int | None) -> str:
    """Where one run's gateway lives under the Serve proxy (its own route: runs and tasks never share one)."""
    return f"/{APP_PREFIX}/{task_id}/{epoch or 0}"


@dataclass
class GatewayRun:
    """A run's deployed gateway and the limiters it takes permits from.

    Attributes:
        app: The Serve application's name.
        base_url: The gateway's root under the Serve proxy of the program's node.
    """

    app: str
    base_url: str
    limiters: list[Any] = field(default_factory=list, repr=False)

    def pair_url(self, config: str, model: str) -> str:
        """A configuration x model's OpenAI /v1 base on the gateway."""
        quote = urllib.parse.quote
        return f"{self.base_url}/{quote(config, safe='')}/{quote(model, safe='')}/v1"

    def usage(self, config: str, model: str) -> PairUsage | None:
        """What a configuration's program asked of a model (None: the gateway did not say)."""
        try:
            return serve.get_app_handle(self.app).usage.remote(config, model).result(timeout_s=30)
        except Exception as e:  # the gateway is gone: the pair's metrics stand without its usage
            log.warning("gateway %s: no usage for %s x %s (%s: %s)", self.app, config, model, type(e).__name__, e)
            return None

    def close(self) -> None:
        """Take the gateway down, and its limiters."""
        try:
            serve.delete(self.app, _blocking=True)
        except Exception as e:  # Serve shut down, or the app is gone already
            log.warning("could not delete the gateway %s: %s", self.app, e)
        for limiter in self.limiters:
            try:
                ray.kill(limiter)
            except Exception:  # already gone
                pass


def _remove_earlier_runs(task_id: str, keep: str) -> None:
    """Delete the gateways an earlier run of the task left (its driver died before it could)."""
    mine = f"{APP_PREFIX}-{task_id}-"
    for name in serve.status().applications:
        if name.startswith(mine) and name[len(mine) :].isdigit() and name != keep:
            log.info("deleting the gateway %s an earlier run of task %s left", name, task_id)
            serve.delete(name, _blocking=False)


def _wait_ready(url: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Wait until the gateway's route answers through the proxy (a new route takes a moment to reach it)."""
    import httpx

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/healthz", timeout=5.0)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.2)
    raise RuntimeError(f"the gateway at {url} did not answer within {timeout:.0f} s ({last})")


def start_gateway(
    task_id: str, epoch: int | None, models: list[GatewayModel], sets: dict[str, list[str]]
) -> GatewayRun:
    """Deploy one run's gateway (and its models' limiters, named as the inference stage names them) and wait
    until it answers.

    Raises:
        RuntimeError: it could not be deployed, or did not answer in time (nothing of it is left running).
    """
    from rayeval.serve_apps.hosting import DEFAULT_HOST, ensure_serve

    limiters = [create_limiter(task_id, m.name, m.params.max_concurrency, epoch) for m in models]
    port = ensure_serve()
    host = os.environ.get("RAYEVAL_SERVE_HOST", DEFAULT_HOST)
    name, prefix = app_name(task_id, epoch), route_prefix(task_id, epoch)
    run = GatewayRun(name, f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}{prefix}", limiters)
    started = time.monotonic()
    try:
        _remove_earlier_runs(task_id, name)
        serve.run(Gateway.bind(task_id, epoch, models, sets), name=name, route_prefix=prefix, blocking=False)
        _wait_ready(run.base_url)
    except BaseException:
        run.close()
        raise
    log.info(
        "task %s: gateway for the programs at %s (ready in %.1f s)", task_id, run.base_url, time.monotonic() - started
    )
    return run
