"""Pairwise judging: once every answer is stored, a judge compares each item's answer with the
reference model's, twice, with the two answers' order swapped, to cancel position bias.

Each model's stored rows of a set are read by Ray Data and go through an actor pool that asks the
judge (through the judge's cluster-wide limiter, as the judging stage does) with the reference's
answers held by each actor. From the model's side each ask is a win, a loss or a tie; two asks
that agree give that outcome, two that disagree give a tie, counted as inconsistent. The per-item
rows go to `{task}/pairwise/{name}/model={model}/eval_set={set}/part-0.parquet`; the metric's
value is the mean of win 1, tie 0.5, loss 0 over the judged items.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pyarrow as pa
import ray

from rayeval.cluster.placement import pinned
from rayeval.cluster.resources import request_actor_options
from rayeval.inference.client import HostedEndpoint
from rayeval.inference.http import HttpClient
from rayeval.inference.loop import RequestLoop, close_requests
from rayeval.schema import item_dict
from rayeval.scoring.judge import (
    JudgeClient,
    JudgeConnection,
    ask_judge,
    judge_connections,
    judge_request,
    judging_limits,
)
from rayeval.spec import JudgeParser, JudgeSpec, PairwiseSpec, TaskSpec
from rayeval.store.results import ResultsStore

__all__ = ["PAIRWISE_SCHEMA", "PairwiseActor", "outcome", "run_pairwise"]

PAIRWISE_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("first", pa.string()),  # JSON step: A = the model's answer, B = the reference's
        ("second", pa.string()),  # JSON step: A = the reference's answer, B = the model's
        ("outcome", pa.string()),  # win, loss or tie, from the model's side
        ("inconsistent", pa.bool_()),
        ("score", pa.float64()),
        ("error", pa.string()),
    ]
)
_SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def _side(verdict: str | None, model_is_a: bool) -> str | None:
    """An ask's verdict from the model's side."""
    if verdict is None:
        return None
    if verdict == "tie":
        return "tie"
    return "win" if (verdict == "a") == model_is_a else "loss"


def outcome(first: str | None, second: str | None) -> tuple[str | None, bool]:
    """(outcome, inconsistent) from the two asks' verdicts (`first`: the model's answer shown as A)."""
    a, b = _side(first, True), _side(second, False)
    if a is None or b is None:
        return None, False
    return (a, False) if a == b else ("tie", True)


class PairwiseActor:
    """Ray Data callable class: two judge asks per item, with the answers' order swapped."""

    def __init__(
        self,
        task_id: str,
        spec: PairwiseSpec,
        judge: JudgeConnection,
        reference: dict[str, str],
        max_concurrency: int,
        max_retries: int,
        timeout: float,
        epoch: int | None = None,
        secrets: list[str] | None = None,
    ):
        self.spec = spec
        self.judge_spec = JudgeSpec(
            model=self.spec.judge,
            prompt=self.spec.prompt,
            system_prompt=self.spec.system_prompt,
            parser=JudgeParser(kind="regex", pattern=r"(.*)"),
            max_tokens=self.spec.max_tokens,
            temperature=self.spec.temperature,
        )
        self.pattern = re.compile(self.spec.pattern)
        self.judge = JudgeClient(task_id, judge, limit=max_concurrency, timeout=timeout, epoch=epoch, secrets=secrets)
        self.holder = ray.get_runtime_context().get_actor_id()
        self.judge.register(self.holder)  # a restarted actor's old leases died with it
        self.reference = reference
        self.max_retries = max_retries
        self._client = None
        self._loop = RequestLoop()  # every request of this actor runs there (rayeval.inference.loop)

    def _verdict(self, step: dict[str, Any]) -> str | None:
        if step.get("error"):
            return None
        match = self.pattern.search(step.get("output") or "")
        if not match:
            step["parse_failure"] = "no verdict found"
            return None
        verdict = match.group(1).strip().lower()
        if verdict not in ("a", "b", "tie"):
            step["parse_failure"] = f"verdict '{match.group(1)}' is not A, B or tie"
            return None
        step["verdict"] = verdict
        return verdict

    async def _ask(self, client: HttpClient, item: dict[str, Any], answer_a: str, answer_b: str) -> dict[str, Any]:
        step, body = judge_request(
            self.judge_spec, {**item, "answer_a": answer_a, "answer_b": answer_b}, None, self.judge.endpoint.model_id
        )
        if body is None:
            return step
        return await ask_judge(
            client, self.judge.endpoint, body, step, name=self.judge.name, max_retries=self.max_retries,
            acquire=self.judge.permits.acquire, release=self.judge.permits.release,
        )  # fmt: skip

    async def _item(self, client: HttpClient, row: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"item_id": row["item_id"], "first": None, "second": None, "outcome": None,
                               "inconsistent": False, "score": None, "error": None}  # fmt: skip
        theirs = self.reference.get(row["item_id"])
        if row.get("error") is not None or row.get("prediction") is None:
            out["error"] = "the model has no answer for this item"
            return out
        if theirs is None:
            out["error"] = "the reference model has no answer for this item"
            return out
        item = item_dict({k: v for k, v in row.items() if k != "error"})
        first, second = await asyncio.gather(
            self._ask(client, item, row["prediction"], theirs), self._ask(client, item, theirs, row["prediction"])
        )
        result, inconsistent = outcome(self._verdict(first), self._verdict(second))
        out.update(first=json.dumps(first, ensure_ascii=False), second=json.dumps(second, ensure_ascii=False))
        if result is None:
            out["error"] = "; ".join(
                f"{which}: {s.get('error') or s.get('parse_failure')}"
                for which, s in (("first ask", first), ("second ask", second))
                if s.get("error") or s.get("parse_failure")
            )
        else:
            out.update(outcome=result, inconsistent=inconsistent, score=_SCORE[result])
        return out

    __del__ = close_requests  # Ray Data calls it when the pool shuts down

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self._loop.run(self._judge(batch))

    async def _judge(self, batch: pa.Table) -> pa.Table:
        if self._client is None:
            self._client = HttpClient(max_connections=256)
            self.judge.start(self.holder)
        rows = batch.to_pylist()
        results = await asyncio.gather(*(self._item(self._client, r) for r in rows))
        return pa.Table.from_pylist(results, schema=PAIRWISE_SCHEMA)


def _predictions(store: ResultsStore, task_id: str, model: str, eval_set: str) -> dict[str, str]:
    out = {}
    for batch in store.iter_results(task_id, ["item_id", "prediction", "error"], partition=(model, eval_set)):
        for item_id, prediction, error in zip(*(batch.column(i).to_pylist() for i in range(3))):
            if error is None and prediction is not None:
                out[item_id] = prediction
    return out


def run_pairwise(task: Any, hosted: dict[str, HostedEndpoint]) -> None:
    """Judge every model against the reference model on every set with pairwise metrics."""
    import ray.data

    spec: TaskSpec = task.spec
    store, task_id, reference = task.store, task.task_id, spec.reference_model
    judges = judge_connections(spec.judges, task.auth_values, hosted)
    for s in spec.evaluation_sets:
        if not s.pairwise:
            continue
        theirs = _predictions(store, task_id, reference, s.name)
        for model in (m.name for m in spec.models if m.name != reference):
            files = store.result_files(task_id, (model, s.name))
            if not files:
                continue
            columns = ["item_id", "query", "reference", "prediction", "fields", "error"]
            for p in s.pairwise:
                ds = ray.data.read_parquet(
                    files, filesystem=store.fs, columns=columns, num_cpus=0.25, ray_remote_args=pinned(task.output_node)
                )
                judged = ds.map_batches(
                    PairwiseActor,
                    fn_constructor_kwargs={
                        "task_id": task_id,
                        "spec": p,
                        "judge": judges[p.judge],
                        "reference": theirs,
                        "epoch": task.epoch,
                        "secrets": [v for v in task.auth_values.values() if v],
                        **judging_limits(spec.parameters),
                    },
                    **request_actor_options(spec.resources, "judging"),
                )
                tables = list(judged.iter_batches(batch_format="pyarrow"))  # pyarrow Tables
                table = pa.concat_tables(tables) if tables else PAIRWISE_SCHEMA.empty_table()
                store.write_pairwise(task_id, p.name, model, s.name, table.cast(PAIRWISE_SCHEMA))
