"""The judging stage: judge models read each item's prompt as soon as its prediction exists.

It runs on the same stream as inference (no barrier), between inference and scoring. For every
item without an error and every judge metric of its set, the actor runs the metric's
preprocessing script, fills the prompt template, and asks the judge, through the judge's own
cluster-wide limiter (MAX_JUDGING_CONCURRENCY) with MAX_JUDGING_RETRY_PER_Q retries. Each step
(preprocessed columns, prompt, raw answer, error, attempts, latency) goes into the item's
`judging` column (JSON, by metric); the scoring actors parse the answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import ray

from rayeval.actors.coordinator import report_placement, report_stage
from rayeval.actors.limiter import NAMESPACE, LeasedPermits, limiter_name
from rayeval.inference.client import HostedEndpoint, infer_one, resolve_endpoint
from rayeval.inference.http import HttpClient
from rayeval.inference.loop import RequestLoop, close_requests
from rayeval.metrics import compile_script, render_prompt, run_script
from rayeval.schema import item_dict
from rayeval.spec import JudgeSpec, MetricRef, ModelSpec, Parameters

__all__ = [
    "JUDGE_PREFIX",
    "JudgeActor",
    "JudgeClient",
    "JudgeConnection",
    "ask_judge",
    "judge_connections",
    "judge_item",
    "judge_limiter_key",
    "judge_request",
    "judging_limits",
]

JUDGE_PREFIX = "judge:"
ITEM_COLUMNS = ["item_id", "eval_set", "query", "reference", "prediction", "fields", "samples", "error", "carried"]


def judge_limiter_key(judge: str) -> str:
    """The limiter's model key of a judge (apart from candidate models of the same name)."""
    return JUDGE_PREFIX + judge


@dataclass(frozen=True)
class JudgeConnection:
    """What a judging actor needs to reach one judge.

    Attributes:
        spec: The judge's spec, without its credential (it travels in `auth` only).
        auth: The resolved credential header value, if any.
        hosted: Where rayeval hosts the judge, if it does.
    """

    spec: ModelSpec
    auth: str | None = field(default=None, repr=False)
    hosted: HostedEndpoint | None = None


def judge_connections(
    judges: list[ModelSpec], auth_values: dict[str, str | None], hosted: dict[str, HostedEndpoint]
) -> dict[str, JudgeConnection]:
    """judge name -> how a judging actor reaches it."""
    return {
        j.name: JudgeConnection(
            j.model_copy(update={"auth_header_value": None}), auth_values.get(j.name), hosted.get(j.name)
        )
        for j in judges
    }


def judging_limits(params: Parameters) -> dict[str, Any]:
    """The judging actors' limits from the task's parameters (MAX_JUDGING_CONCURRENCY and retries)."""
    return {
        "max_concurrency": params.max_judging_concurrency,
        "max_retries": params.max_judging_retry_per_q,
        "timeout": params.request_timeout,
    }


class JudgeClient:
    """One judge model as an actor sees it: its endpoint and its share of the judge's cluster-wide permits."""

    def __init__(
        self,
        task_id: str,
        judge: JudgeConnection,
        *,
        limit: int,
        timeout: float,
        epoch: int | None = None,
        secrets: list[str] | None = None,
    ):
        model = judge.spec
        self.name = model.name
        self.endpoint = resolve_endpoint(model, judge.auth, timeout, hosted=judge.hosted, secrets=secrets or ())
        self.limiter = ray.get_actor(limiter_name(task_id, judge_limiter_key(model.name), epoch), namespace=NAMESPACE)
        self.limit = limit
        self.permits: LeasedPermits | None = None
        self.incarnation: int | None = None

    def register(self, holder: str) -> None:
        """The actor (re)starts: its previous incarnation's leases are taken back, and its requests refused."""
        self.incarnation = ray.get(self.limiter.reset.remote(holder))

    def start(self, holder: str) -> None:
        if self.permits is None:
            self.permits = LeasedPermits(
                self.limiter,
                holder,
                self.limit,
                handle=ray.get_runtime_context().current_actor,
                incarnation=self.incarnation,
            )


class JudgeActor:
    """Ray Data callable class: asks the judges of each item's judge metrics, adds the `judging` column.

    Args:
        task_id: The task (its judges' limiters are named after it).
        judge_metrics: set name -> the judge metrics of that set (checked references).
        judges: judge name -> how to reach it.
        max_concurrency: MAX_JUDGING_CONCURRENCY.
        max_retries: MAX_JUDGING_RETRY_PER_Q.
        timeout: Seconds per judge request.
        epoch: The run (its limiters are its own).
        secrets: The task's credentials, masked in the judges' answers and errors.
        set_retries: set name -> its own MAX_JUDGING_RETRY_PER_Q, for sets that set one.
    """

    def __init__(
        self,
        task_id: str,
        judge_metrics: dict[str, list[MetricRef]],
        judges: dict[str, JudgeConnection],
        max_concurrency: int,
        max_retries: int,
        timeout: float,
        epoch: int | None = None,
        secrets: list[str] | None = None,
        set_retries: dict[str, int] | None = None,
    ):
        self.task_id, self.epoch = task_id, epoch
        self.holder = ray.get_runtime_context().get_actor_id()
        report_placement(task_id, "judging")
        self.set_retries = set_retries or {}
        self.judges = {
            name: JudgeClient(task_id, judge, limit=max_concurrency, timeout=timeout, epoch=epoch, secrets=secrets)
            for name, judge in judges.items()
        }
        for judge in self.judges.values():
            judge.register(self.holder)  # a restarted actor's old leases died with it
        self.metrics = {
            s: [
                (
                    ref.name,
                    ref.judge,
                    compile_script(source, ref.preprocess, "preprocess", timeout_s=ref.script_timeout_s)
                    if source
                    else None,
                )
                for ref in refs
                for source in [ref.script_source("preprocess")]
            ]
            for s, refs in judge_metrics.items()
        }
        self.max_retries = max_retries
        self._client = None
        self._loop = RequestLoop()  # every request of this actor runs there (rayeval.inference.loop)

    def _http(self) -> HttpClient:
        if self._client is None:
            self._client = HttpClient(max_connections=256)
            for judge in self.judges.values():
                judge.start(self.holder)
        return self._client

    __del__ = close_requests  # Ray Data calls it when the pool shuts down

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self._loop.run(self._judge(batch))

    async def _judge(self, batch: pa.Table) -> pa.Table:
        client = self._http()
        rows = batch.select([c for c in ITEM_COLUMNS if c in batch.schema.names]).to_pylist()
        judged = await asyncio.gather(*(self._item(client, row) for row in rows))
        asked = [i for i, j in enumerate(judged) if j]  # items a judge was asked about (not failed or carried)
        models, sets = batch.column("model").to_pylist(), batch.column("eval_set").to_pylist()
        report_stage(self.task_id, "judged", [models[i] for i in asked], [sets[i] for i in asked], self.epoch)
        column = [json.dumps(j, ensure_ascii=False) if j else None for j in judged]
        return batch.append_column(pa.field("judging", pa.string()), pa.array(column, pa.string()))

    async def _item(self, client: HttpClient, row: dict[str, Any]) -> dict[str, Any]:
        carried = json.loads(row.pop("carried", None) or "{}")  # scores reused from an earlier task
        metrics = [m for m in self.metrics.get(row["eval_set"], []) if m[0] not in carried]
        if row.get("error") is not None or not metrics:
            return {}
        item = item_dict({k: v for k, v in row.items() if k != "error"})

        retries = self.set_retries.get(row["eval_set"], self.max_retries)

        async def metric_step(spec: JudgeSpec, pre: Any) -> dict[str, Any]:
            judge = self.judges[spec.model]

            async def ask(step: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
                return await ask_judge(
                    client,
                    judge.endpoint,
                    body,
                    step,
                    name=judge.name,
                    max_retries=retries,
                    acquire=judge.permits.acquire,
                    release=judge.permits.release,
                )

            return await judge_item(spec, item, pre, judge.endpoint.model_id, ask)

        steps = await asyncio.gather(*(metric_step(spec, pre) for _, spec, pre in metrics))
        return {name: step for (name, _, _), step in zip(metrics, steps)}


async def judge_item(
    spec: JudgeSpec,
    item: dict[str, Any],
    preprocess: Any,
    model_id: str,
    ask: Callable[[dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]] | None,
) -> dict[str, Any]:
    """One judge metric's step on an item: the request built (`judge_request`), then `ask(step, body)`;
    with several samples, one step per sample under "samples". `ask` None builds the prompts only."""

    async def one(it: dict[str, Any]) -> dict[str, Any]:
        step, body = judge_request(spec, it, preprocess, model_id)
        return step if body is None or ask is None else await ask(step, body)

    samples = item.get("samples")
    if not samples:
        return await one(item)
    return {"samples": list(await asyncio.gather(*(one({**item, "prediction": s}) for s in samples)))}


def judge_request(
    spec: JudgeSpec, item: dict[str, Any], preprocess: Any, model_id: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The steps before asking a judge: preprocessing, then the prompt; returns (step so far, request body).

    The body is None when a step failed (the step then holds the error).
    """
    step: dict[str, Any] = {}
    if preprocess is not None:
        result = run_script(preprocess, "preprocess", dict(item))
        if result.error:
            return {"error": result.error}, None
        step["preprocessed"] = {k: v for k, v in result.value.items() if item.get(k) != v}
        item = result.value
    try:
        prompt = render_prompt(spec.prompt, item)
    except KeyError as e:
        return {**step, "error": f"prompt placeholder {{{e.args[0]}}} names no column of the item"}, None
    step["prompt"] = prompt
    messages = [{"role": "system", "content": spec.system_prompt}] if spec.system_prompt else []
    body: dict[str, Any] = {
        "model": model_id,
        "messages": [*messages, {"role": "user", "content": prompt}],
        "temperature": spec.temperature,
    }
    if spec.max_tokens is not None:
        body["max_tokens"] = spec.max_tokens
    return step, body


async def ask_judge(
    client: HttpClient,
    endpoint: Any,
    body: dict[str, Any],
    step: dict[str, Any],
    *,
    name: str,
    max_retries: int,
    acquire: Any,
    release: Any,
) -> dict[str, Any]:
    """Send a judge request (with retries) and add its raw answer, attempts and latency to `step`."""
    outcome = await infer_one(client, endpoint, body, max_retries=max_retries, acquire=acquire, release=release)
    step = {**step, "output": outcome.prediction, "attempts": outcome.attempts, "latency_ms": outcome.latency_ms}
    if outcome.error:
        step["error"] = f"judge {name}: {outcome.error}"
    return step
