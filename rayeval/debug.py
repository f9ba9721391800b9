"""Try a set's metrics on a few samples before a real run: every step shown, nothing written.

The responses come from the chosen model (asked here, directly), from the set itself (Evaluation
Only), or from the user (typed, or in a file). Each configured metric then runs its steps as in a
real run (preprocessing, the judge's prompt and answer, the parsed score, postprocessing), with
the same code as the scoring actors. Nothing goes to the results store or the coordinator's task
registry. Ray is started only when a model or judge must be hosted on Ray Serve.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rayeval.errors import SpecError
from rayeval.inference.client import HostedEndpoint
from rayeval.spec import MetricRef, ModelSpec, TaskSpec

__all__ = ["DebugSample", "debug_metrics", "format_debug", "load_responses", "preview_requests"]


@dataclass
class DebugSample:
    """One sample of a debug run.

    Attributes:
        item: The item as metrics see it (item_id, query, reference, its other columns).
        response: The response scored (the first one when there are several).
        samples: All responses, when INFERENCE_COUNT > 1 or the set holds several.
        source: Where the response came from: 'model <name>', 'set (<model>)' or 'given'.
        inference: Inference facts (latency_ms, tokens, attempts, error) when a model was asked.
        metrics: metric name -> {"scores": {output: value}, "steps": details of each step}.
    """

    item: dict[str, Any]
    response: str | None
    source: str
    samples: list[str] | None = None
    inference: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "item": self.item,
            "response": self.response,
            "samples": self.samples,
            "source": self.source,
            "inference": self.inference,
            "metrics": self.metrics,
        }


def load_responses(path: str | Path) -> list[str] | dict[str, str]:
    """Responses from a file: a JSON list of strings or object {item_id: response}; JSON Lines of
    strings or of objects with `prediction` (and `item_id`); any other text: one response per line.

    Raises:
        SpecError: the file cannot be read or holds something else.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"responses file '{path}' cannot be read: {e}", field="responses") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        return {str(k): str(v) for k, v in data.items()}
    if isinstance(data, list):
        return [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in data]
    if p.suffix == ".jsonl":
        by_id: dict[str, str] = {}
        ordered: list[str] = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SpecError(
                    f"responses file '{path}' line {n}: invalid JSON ({e.msg})", field="responses"
                ) from None
            if isinstance(row, str):
                ordered.append(row)
            elif isinstance(row, dict) and "prediction" in row:
                if "item_id" in row:
                    by_id[str(row["item_id"])] = str(row["prediction"])
                else:
                    ordered.append(str(row["prediction"]))
            else:
                raise SpecError(
                    f"responses file '{path}' line {n}: expected a string or an object with 'prediction'",
                    field="responses",
                )
        if by_id and ordered:
            raise SpecError(f"responses file '{path}': give item_id on every line or on none", field="responses")
        return by_id or ordered
    return [line for line in text.splitlines() if line.strip()]


async def _no_permit() -> None:
    """Debugging sends one request at a time: no cluster-wide permits to take."""


def _no_release() -> None:
    pass


def _pick_set(spec: TaskSpec, name: str | None) -> str:
    if spec.is_custom:
        raise SpecError(
            "mode custom runs your own programs, whose metrics rayeval does not compute: try a program by running "
            "its command with EVAL_OUTPUT_DIR and EVAL_INFERENCE_URL set",
            field="mode",
        )
    names = [s.name for s in spec.evaluation_sets]
    if name is None:
        if len(names) == 1:
            return names[0]
        raise SpecError(f"the task has several sets; choose one with --set ({', '.join(names)})", field="set")
    if name not in names:
        raise SpecError(f"the task has no set '{name}'; its sets: {', '.join(names)}", field="set")
    return name


def _pick_model(spec: TaskSpec, name: str | None) -> ModelSpec:
    if name is None:
        return spec.models[0]
    for m in spec.models:
        if m.name == name:
            return m
    raise SpecError(
        f"the task has no model '{name}'; its models: {', '.join(m.name for m in spec.models)}", field="model"
    )


def debug_metrics(
    spec: TaskSpec | dict[str, Any] | str | Path,
    set_name: str | None = None,
    *,
    samples: int = 5,
    model: str | None = None,
    responses: list[str] | dict[str, str] | str | Path | None = None,
    show_prompt: bool = False,
) -> list[DebugSample]:
    """Score the first `samples` items of a set with its configured metrics, step by step; write nothing.

    Args:
        spec: The task: a TaskSpec, a dict, or the path of a task file.
        set_name: The set to try (may be left out when the task has one).
        samples: How many items, from the start of the set.
        model: The model whose responses are scored: asked now (Inference and Evaluation), or read
            from the set (Evaluation Only). Default: the task's first model.
        responses: Responses given by the user instead: a list (matched to items in order), a dict
            {item_id: response}, or a file (see `load_responses`).
        show_prompt: Build each judge's prompt but do not ask the judge (nothing is scored by it).

    Raises:
        SpecError / ServiceError: a bad task, set, model, responses file or unreachable service.
    """
    task, plan, chosen, items = _first_items(spec, set_name, model, samples, "--samples")
    spec, name = task.spec, plan.spec.name
    given = load_responses(responses) if isinstance(responses, (str, Path)) else responses
    eval_only = spec.predictions_given
    refs = task.metrics_by_set[name]
    ask_model = given is None and not eval_only
    judges = {r.judge.model for r in refs if r.judge is not None} if not show_prompt else set()
    return asyncio.run(_debug(task, items, refs, chosen, given, ask_model, judges, show_prompt))


def _first_items(
    spec: TaskSpec | dict[str, Any] | str | Path, set_name: str | None, model: str | None, n: int, flag: str
) -> tuple[Any, Any, ModelSpec, list[dict[str, Any]]]:
    """(checked task, the set's plan, the model, the set's first `n` items) for debug and preview."""
    from rayeval.jobs.prepare import prepare
    from rayeval.sets.read import head_items
    from rayeval.spec import load_task, parse_task

    if not isinstance(spec, TaskSpec):
        spec = parse_task(spec, source="<dict>") if isinstance(spec, dict) else load_task(spec)
    if n < 1:
        raise SpecError(f"{flag} must be at least 1", field=flag.lstrip("-"))
    name = _pick_set(spec, set_name)
    chosen = _pick_model(spec, model)
    task = prepare(spec, check_services=False)
    plan = next(p for p in task.plans if p.spec.name == name)
    return task, plan, chosen, head_items(plan, chosen.name if spec.predictions_given else None, n)


def preview_requests(
    spec: TaskSpec | dict[str, Any] | str | Path,
    set_name: str | None = None,
    *,
    n: int = 5,
    model: str | None = None,
) -> list[dict[str, Any]]:
    """The first `n` items of a set (built-in or your own) as they will be sent to a model: each item's id,
    reference and the request body, with the system prompt, few-shot examples and template applied. Nothing
    is run or sent, and nothing is deployed (a hosted model's body names its served id).

    Raises:
        SpecError: a bad task, set or model, or n below 1.
    """
    from rayeval.inference.client import Endpoint, item_system, request_body, resolve_endpoint

    task, plan, chosen, items = _first_items(spec, set_name, model, n, "--n")
    spec = task.spec
    if chosen.hosted:
        endpoint = Endpoint("(Ray Serve)", chosen.api or "chat", chosen.served_model, {})
    else:
        endpoint = resolve_endpoint(chosen, None)
    params = spec.set_parameters(chosen, plan.spec)
    if plan.spec.loglikelihood:
        return _preview_choices(task, plan, chosen, endpoint, items)
    out = []
    for item in items:
        system = item_system(item.get("fields"), plan.spec.system_column)
        out.append(
            {
                "item_id": item["item_id"],
                "reference": item.get("reference"),
                "url": endpoint.url if not chosen.hosted else f"Ray Serve: {chosen.name}",
                "body": request_body(endpoint, item.get("query") or "", params, system),
            }
        )
    return out


def _preview_choices(task: Any, plan: Any, chosen: ModelSpec, endpoint: Any, items: list[dict[str, Any]]) -> list:
    """A log-likelihood set's requests: one completions body per choice (rayeval.inference.loglikelihood),
    with the context and continuation each holds, in the model's tokens."""
    from dataclasses import replace

    from rayeval.inference.loglikelihood import (
        TARGET_DELIMITER,
        ContinuationTokenizer,
        item_choices,
        loglikelihood_body,
    )

    source = task.sources.get(chosen.name) if chosen.hosted else None
    tokenizer_dir = source.tokenizer if source is not None else chosen.tokenizer
    if not tokenizer_dir:
        raise SpecError(f"model '{chosen.name}' has no tokenizer to split set '{plan.spec.name}''s choices with")
    tokens = ContinuationTokenizer(tokenizer_dir, chosen.window)
    completions = replace(endpoint, api="completions")
    out = []
    for item in items:
        requests = []
        for choice in item_choices(item.get("fields"), plan.spec.columns.choices):
            ids, context_len, n = tokens.prompt(item.get("query") or "", TARGET_DELIMITER + choice)
            requests.append(
                {"choice": choice, "context_tokens": context_len, "choice_tokens": n,
                 "body": loglikelihood_body(completions, ids)}
            )  # fmt: skip
        out.append(
            {
                "item_id": item["item_id"],
                "reference": item.get("reference"),
                "url": completions.url if not chosen.hosted else f"Ray Serve: {chosen.name}",
                "context": item.get("query"),
                "requests": requests,
            }
        )
    return out


async def _debug(
    task: Any,
    items: list[dict[str, Any]],
    refs: list[MetricRef],
    model: ModelSpec,
    given: list[str] | dict[str, str] | None,
    ask_model: bool,
    judge_names: set[str],
    show_prompt: bool,
) -> list[DebugSample]:
    from rayeval.inference.client import resolve_endpoint
    from rayeval.inference.http import HttpClient

    spec = task.spec
    wanted = [model] if ask_model else []
    wanted += [j for j in spec.judges if j.name in judge_names]
    user = f"debug-{uuid.uuid4().hex[:8]}"
    hosted = _deploy_hosted(task, [m for m in wanted if m.hosted], user)
    try:
        endpoints = {
            m.name: resolve_endpoint(
                m,
                task.auth_values.get(m.name),
                spec.model_parameters(m).request_timeout,
                hosted=hosted.get(m.name),
            )
            for m in wanted
        }
        client = HttpClient()
        try:
            out = []
            for i, item in enumerate(items):  # one at a time: the printout follows the set's order
                out.append(await _sample(task, client, endpoints, item, i, refs, model, given, ask_model, show_prompt))
            return out
        finally:
            await client.close()
    finally:
        _release_hosted(hosted, user)


def _deploy_hosted(task: Any, models: list[ModelSpec], user: str) -> dict[str, HostedEndpoint]:
    """Host the models debugging needs on Ray Serve (joining a running deployment when there is one)."""
    if not models:
        return {}
    from rayeval.actors.coordinator import get_coordinator
    from rayeval.cluster import connect
    from rayeval.serve_apps.hosting import deploy

    connect(None, log_to_driver=False)
    coordinator = get_coordinator()
    hosted = {}
    for m in models:
        endpoint = deploy(m, user=user, coordinator=coordinator, source=task.sources[m.name])
        hosted[m.name] = endpoint
    return hosted


def _release_hosted(hosted: dict[str, HostedEndpoint], user: str) -> None:
    if not hosted:
        return
    from rayeval.actors.coordinator import get_coordinator
    from rayeval.serve_apps.hosting import release

    coordinator = get_coordinator()
    for endpoint in hosted.values():
        release(endpoint.app, user=user, coordinator=coordinator, keep=False)


async def _sample(
    task: Any,
    client: Any,
    endpoints: dict[str, Any],
    item: dict[str, Any],
    index: int,
    refs: list[MetricRef],
    model: ModelSpec,
    given: list[str] | dict[str, str] | None,
    ask_model: bool,
    show_prompt: bool,
) -> DebugSample:
    from rayeval.inference.client import infer_one, item_system, request_body
    from rayeval.inference.stage import infer_samples
    from rayeval.metrics import MetricSteps
    from rayeval.schema import item_dict

    spec = task.spec
    row = item_dict(item)
    sample = DebugSample(
        item={k: v for k, v in row.items() if k not in ("prediction", "samples")}, response=None, source=""
    )

    if given is not None:
        text = given.get(row["item_id"]) if isinstance(given, dict) else (given[index] if index < len(given) else None)
        if text is None:
            sample.inference["error"] = "no response given for this item"
        sample.source = "given"
        row["prediction"], row["samples"] = text, None
    elif ask_model:
        params = spec.set_parameters(model, item["eval_set"])
        endpoint = endpoints[model.name]
        columns = next(p.spec.columns for p in task.plans if p.spec.name == item["eval_set"])
        body = request_body(endpoint, row["query"] or "", params, item_system(item.get("fields"), columns.system))
        outcome = await infer_samples(
            lambda: infer_one(
                client, endpoint, body, max_retries=params.max_retry_per_query, acquire=_no_permit, release=_no_release
            ),
            params.inference_count,
        )
        sample.source = f"model {model.name}"
        sample.inference = {
            k: v
            for k, v in {
                "latency_ms": outcome.latency_ms,
                "prompt_tokens": outcome.prompt_tokens,
                "completion_tokens": outcome.completion_tokens,
                "attempts": outcome.attempts,
                "error": outcome.error,  # scrubbed by infer_one
            }.items()
            if v is not None
        }
        row["prediction"], row["samples"] = outcome.prediction, outcome.samples
    else:
        sample.source = f"set ({model.name})"
        if row.get("prediction") is None:
            sample.inference["error"] = "no prediction in the set for this item"
    sample.response, sample.samples = row.get("prediction"), row.get("samples")
    if sample.inference.get("error"):
        return sample
    for ref in refs:
        steps = MetricSteps.from_ref(ref)
        judged = None
        if ref.judge is not None:
            judged = await _judge(ref, row, endpoints, client, spec, show_prompt)
            if show_prompt:
                sample.metrics[ref.name] = {"scores": {}, "steps": judged}
                continue
        scores, details = steps.run(row, judged)
        sample.metrics[ref.name] = {"scores": scores, "steps": details}
    return sample


async def _judge(
    ref: MetricRef,
    row: dict[str, Any],
    endpoints: dict[str, Any],
    client: Any,
    spec: TaskSpec,
    show_prompt: bool,
) -> dict[str, Any]:
    """The judging stage's step for one item (per sample when there are several), as the judge actors make it."""
    from rayeval.metrics import compile_script
    from rayeval.scoring.judge import ask_judge, judge_item

    judge = ref.judge
    assert judge is not None
    source = ref.script_source("preprocess")
    pre = compile_script(source, ref.preprocess, "preprocess", timeout_s=ref.script_timeout_s) if source else None
    endpoint = endpoints.get(judge.model)
    model_id = endpoint.model_id if endpoint is not None else judge.model

    async def ask(step: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        return await ask_judge(
            client,
            endpoint,
            body,
            step,
            name=judge.model,
            max_retries=spec.parameters.max_judging_retry_per_q,
            acquire=_no_permit,
            release=_no_release,
        )

    return await judge_item(judge, row, pre, model_id, None if show_prompt else ask)


def _block(text: Any) -> str:
    body = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
    return "\n".join("    | " + line for line in (body.splitlines() or [""]))


def _steps_lines(steps: dict[str, Any]) -> list[str]:
    lines = []
    labels = [
        ("preprocessed", "preprocessed (changed columns)"),
        ("prompt", "judge prompt"),
        ("output", "raw judge output"),
        ("parsed", "parsed score"),
        ("parse_failure", "PARSE FAILURE"),
        ("scored", "rule score"),
        ("postprocessed", "postprocessed"),
        ("error", "ERROR"),
    ]
    for key, label in labels:
        if key in steps and steps[key] is not None:
            lines += [f"  {label}:", _block(steps[key])]
    rest = {k: v for k, v in steps.items() if k not in dict(labels) and k not in ("samples", "sample_scores")}
    if rest:
        lines.append(f"  details: {json.dumps(rest, ensure_ascii=False)}")
    for i, s in enumerate(steps.get("samples") or []):
        lines.append(f"  -- sample {i}")
        lines += ["  " + line for line in _steps_lines(s)]
    return lines


def format_debug(samples: list[DebugSample], *, set_name: str = "") -> str:
    """A readable printout: per sample, the item, the response, then each metric's steps and scores."""
    out = []
    for n, s in enumerate(samples, 1):
        where = f" (set {set_name})" if set_name else ""
        out.append(f"=== sample {n}/{len(samples)}: item {s.item.get('item_id')}{where}")
        out += ["query:", _block(s.item.get("query")), "reference:", _block(s.item.get("reference"))]
        extra = {
            k: v for k, v in s.item.items() if k not in ("item_id", "eval_set", "query", "reference", "model", "error")
        }
        if extra:
            out.append(f"other columns: {json.dumps(extra, ensure_ascii=False)}")
        out += [f"response ({s.source}):", _block(s.response)]
        for i, text in enumerate(s.samples or []):
            out += [f"  sample {i}:", _block(text)]
        if s.inference:
            out.append("inference: " + ", ".join(f"{k}={v}" for k, v in s.inference.items()))
        for name, m in s.metrics.items():
            out.append(f"--- metric {name}")
            out += _steps_lines(m["steps"])
            if m["scores"]:
                out.append("  score: " + ", ".join(f"{k}={_fmt(v)}" for k, v in m["scores"].items()))
        out.append("")
    return "\n".join(out)


def _fmt(v: Any) -> str:
    return "unscored" if v is None else f"{v:.4g}"
