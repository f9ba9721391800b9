"""The inference stage: an actor pool that sends each item's query to a model service."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pyarrow as pa
import ray

from rayeval.actors.coordinator import report_placement, report_stage
from rayeval.actors.limiter import NAMESPACE, LeasedPermits, limiter_name
from rayeval.inference.client import (
    Endpoint,
    HostedEndpoint,
    ItemOutcome,
    infer_one,
    item_system,
    request_body,
    resolve_endpoint,
)
from rayeval.inference.http import HttpClient
from rayeval.inference.loglikelihood import ContinuationTokenizer, item_choices, score_choices
from rayeval.inference.loop import RequestLoop, close_requests
from rayeval.inference.prompt_budget import PromptBudget
from rayeval.schema import with_inference_columns
from rayeval.spec import ModelSpec, Parameters

__all__ = ["InferenceActor", "combine_samples", "infer_samples"]


class InferenceActor:
    """Ray Data callable class: one async HTTP client per actor, permits from the task's limiter.

    Ray Data runs several batches at once in one actor, each in a thread of its own that waits for
    its requests on the actor's request loop (rayeval.inference.loop); all of them share the
    client's connection pool and the cluster-wide limiter, so MAX_CONCURRENCY is never exceeded.
    """

    def __init__(
        self,
        task_id: str,
        model: ModelSpec,
        parameters: Parameters,
        auth_value: str | None,
        hosted: HostedEndpoint | None = None,
        system_columns: dict[str, str] | None = None,
        epoch: int | None = None,
        secrets: list[str] | None = None,
        choice_columns: dict[str, str] | None = None,
        set_parameters: dict[str, Parameters] | None = None,
    ):
        self.task_id, self.epoch = task_id, epoch
        self.model = model
        self.params = parameters
        self.endpoint = resolve_endpoint(
            self.model, auth_value, self.params.request_timeout, hosted=hosted, secrets=secrets or ()
        )
        #: eval set -> (its parameters, the endpoint with its request timeout), for sets with their own.
        self.per_set = {
            name: (p, dataclasses.replace(self.endpoint, timeout=p.request_timeout))
            for name, p in (set_parameters or {}).items()
        }
        # A model rayeval deployed: MAX_MODEL_LEN is enforced here, with the model's own tokenizer.
        self.budget = None if hosted is None else PromptBudget(hosted.tokenizer, hosted.max_model_len)
        self.limiter = ray.get_actor(limiter_name(task_id, self.model.name, epoch), namespace=NAMESPACE)
        report_placement(task_id, "inference")
        self.holder = ray.get_runtime_context().get_actor_id()
        # A restarted actor's old leases died with it; the limiter refuses its old incarnation's requests.
        self.incarnation = ray.get(self.limiter.reset.remote(self.holder))
        self._permits: LeasedPermits | None = None
        self._client = None
        #: eval set -> the column of its items' own system message (sets that have one).
        self.system_columns = system_columns or {}
        #: eval set -> the column of its items' choices, for sets scored by log-likelihood.
        self.choice_columns = choice_columns or {}
        self._continuations: ContinuationTokenizer | None = None
        if self.choice_columns:
            tokenizer = hosted.tokenizer if hosted is not None else model.tokenizer
            window = hosted.max_model_len if hosted is not None else model.window
            assert tokenizer, "prepare refuses log-likelihood sets for a model without a tokenizer"
            self._continuations = ContinuationTokenizer(tokenizer, window)
        self._batches = itertools.count()
        self._loop = RequestLoop()  # every request of this actor runs there (rayeval.inference.loop)

    def _http(self) -> HttpClient:
        if self._client is None:
            limit = self.params.max_concurrency
            self._client = HttpClient(max_connections=limit)
            handle = ray.get_runtime_context().current_actor
            self._permits = LeasedPermits(self.limiter, self.holder, limit, handle=handle, incarnation=self.incarnation)
        return self._client

    async def _acquire(self, order: int) -> None:
        await self._permits.acquire(order)

    def _release(self) -> None:
        self._permits.release()

    __del__ = close_requests  # Ray Data calls it when the pool shuts down

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self._loop.run(self._answer(batch))

    async def _answer(self, batch: pa.Table) -> pa.Table:
        client = self._http()
        order = next(self._batches)  # its requests (retries too) get permits before later batches'
        queries = batch.column("query").to_pylist()
        systems = self._systems(batch)
        choices = self._choices(batch)
        sets = batch.column("eval_set").to_pylist()
        how = [self.per_set.get(s, (self.params, self.endpoint)) for s in sets]  # (parameters, endpoint) per item
        outcomes = await asyncio.gather(
            *(
                self._item(client, q or "", s, p, e, order)
                if c is None
                else self._choice_item(client, q or "", c, p, e, order)
                for q, s, c, (p, e) in zip(queries, systems, choices, how)
            )
        )
        columns = {
            name: [getattr(o, name) for o in outcomes]
            for name in (
                "prediction",
                "started_at",
                "latency_ms",
                "prompt_tokens",
                "completion_tokens",
                "finish_reason",
                "attempts",
                "error",
                "loglikelihoods",
            )
        }
        if any(p.inference_count > 1 for p, _ in how):
            columns["samples"] = [o.samples for o in outcomes]
        report_stage(self.task_id, "inferred", [self.model.name] * len(sets), sets, self.epoch)
        return with_inference_columns(batch, self.model.name, columns)

    def _systems(self, batch: pa.Table) -> list[str | None]:
        if not self.system_columns:
            return [None] * batch.num_rows
        sets = batch.column("eval_set").to_pylist()
        fields = batch.column("fields").to_pylist()
        return [item_system(f, self.system_columns.get(s)) for s, f in zip(sets, fields)]

    def _choices(self, batch: pa.Table) -> list[list[str] | None]:
        """Each item's choices when its set is scored by log-likelihood, else None."""
        if not self.choice_columns:
            return [None] * batch.num_rows
        sets = batch.column("eval_set").to_pylist()
        fields = batch.column("fields").to_pylist()
        out: list[list[str] | None] = []
        for s, f in zip(sets, fields):
            column = self.choice_columns.get(s)
            out.append(None if column is None else item_choices(f, column))
        return out

    async def _choice_item(
        self, client: Any, context: str, choices: list[str], params: Parameters, endpoint: Endpoint, order: int
    ) -> ItemOutcome:
        assert self._continuations is not None
        return await score_choices(
            client,
            endpoint,
            self._continuations,
            context,
            choices,
            max_retries=params.max_retry_per_query,
            acquire=lambda: self._acquire(order),
            release=self._release,
        )

    async def _item(
        self, client: Any, query: str, system: str | None, params: Parameters, endpoint: Endpoint, order: int
    ) -> ItemOutcome:
        return await infer_samples(
            lambda: self._one(client, query, system, params, endpoint, order), params.inference_count
        )

    async def _one(
        self, client: Any, query: str, system: str | None, params: Parameters, endpoint: Endpoint, order: int
    ) -> ItemOutcome:
        body = request_body(endpoint, query, params, system)
        if self.budget is not None:
            error = self.budget.fit(body)
            if error is not None:  # never sent: the engine would refuse it
                return ItemOutcome(attempts=0, error=error)
        return await infer_one(
            client,
            endpoint,
            body,
            max_retries=params.max_retry_per_query,
            acquire=lambda: self._acquire(order),
            release=self._release,
        )


async def infer_samples(ask: Callable[[], Awaitable[ItemOutcome]], n: int) -> ItemOutcome:
    """One response (`ask()`), or INFERENCE_COUNT of them at once folded into one outcome (`combine_samples`)."""
    if n == 1:
        return await ask()
    return combine_samples(list(await asyncio.gather(*(ask() for _ in range(n)))))


def combine_samples(outcomes: list[ItemOutcome]) -> ItemOutcome:
    """Several responses to one query as one item: the first as `prediction`, all in `samples`,
    tokens and attempts summed, latency the slowest; the item fails if any of its samples failed
    (a partial set of samples would bias pass@k and the mean)."""
    errors = [f"sample {i}: {o.error}" for i, o in enumerate(outcomes) if o.error]
    samples = None if errors else [o.prediction or "" for o in outcomes]
    starts = [o.started_at for o in outcomes if o.started_at is not None]
    latencies = [o.latency_ms for o in outcomes if o.latency_ms is not None]

    def total(name: str) -> int | None:
        values = [getattr(o, name) for o in outcomes if getattr(o, name) is not None]
        return sum(values) if values else None

    return ItemOutcome(
        prediction=outcomes[0].prediction if not errors else None,
        started_at=min(starts) if starts else None,
        latency_ms=max(latencies) if latencies else None,
        prompt_tokens=total("prompt_tokens"),
        completion_tokens=total("completion_tokens"),
        finish_reason=outcomes[0].finish_reason,
        attempts=total("attempts") or 0,
        error="; ".join(errors) if errors else None,
        samples=samples,
    )
