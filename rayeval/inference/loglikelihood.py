"""Multiple choice by log-likelihood: each choice read as a continuation of the item's context.

Requests are shaped the way lm-evaluation-harness's `local-completions` model shapes them, so the
numbers match: the context and the continuation (the target delimiter, a space, then the choice)
are tokenized with the model's own tokenizer, context + continuation is sent as token ids to
`/v1/completions` with `echo`, `logprobs: 1`, `max_tokens: 1` and temperature 0, and the
log-probabilities the service returns for the continuation's tokens are summed. The boundary
between context and continuation falls where lm-eval puts it: trailing spaces of the context move
to the continuation, the whole text is tokenized, and the continuation is what follows the
context's own tokens. A sequence longer than the model's window loses tokens from the left.

Each choice is one request with the limiter, retries and item errors of inference.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from rayeval.inference.client import Endpoint, ItemOutcome, infer_one, malformed
from rayeval.inference.http import HttpClient, Reply

__all__ = [
    "TARGET_DELIMITER",
    "ChoiceScore",
    "ContinuationTokenizer",
    "choice_scores",
    "fold_choices",
    "item_choices",
    "loglikelihood_body",
    "parse_choice",
    "probe_service",
    "score_choices",
]

#: What separates the context from each choice (lm-eval's default `target_delimiter`).
TARGET_DELIMITER = " "


@dataclass(frozen=True)
class ChoiceScore:
    """One choice read as a continuation of the context.

    Attributes:
        choice: The choice's text (without the delimiter).
        logprob: Sum of the log-probabilities of the continuation's tokens.
        tokens: How many tokens the continuation has.
        greedy: Every continuation token was the model's most likely one.
    """

    choice: str
    logprob: float
    tokens: int
    greedy: bool


class ContinuationTokenizer:
    """Splits context and continuation into token ids as lm-eval does, with the model's tokenizer.

    Args:
        tokenizer_dir: Local folder of the model's tokenizer files.
        max_length: The model's window (MAX_MODEL_LEN): a request holds at most max_length - 1
            tokens, one being left for the token the service generates.
    """

    def __init__(self, tokenizer_dir: str, max_length: int):
        self.tokenizer_dir, self.max_length = tokenizer_dir, max_length
        self._tokenizer: Any = None

    def _encode(self, text: str) -> list[int]:
        if self._tokenizer is None:
            from transformers import AutoTokenizer  # heavy: only where log-likelihoods are asked for

            self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_dir)
        return list(self._tokenizer(text, add_special_tokens=False, return_attention_mask=False).input_ids)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of the context and of the continuation (lm-eval's `_encode_pair`, causal models)."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self._encode(context + continuation)
        context_ids = self._encode(context)
        return context_ids, whole[len(context_ids) :]

    def prompt(self, context: str, continuation: str) -> tuple[list[int], int, int]:
        """(prompt token ids, tokens of context in it, tokens of continuation): left-truncated to the window."""
        context_ids, continuation_ids = self.encode_pair(context, continuation)
        if not context_ids:
            raise ValueError("an empty context has no log-likelihood to condition on: give the item a query")
        limit = self.max_length - 1
        ids = (context_ids + continuation_ids)[-limit:]
        context_len = len(context_ids) - max(0, len(context_ids) + len(continuation_ids) - limit)
        return ids, context_len, len(continuation_ids)


def loglikelihood_body(endpoint: Endpoint, prompt_ids: list[int]) -> dict[str, Any]:
    """The completions request that echoes the prompt's log-probabilities (lm-eval's payload)."""
    return {
        "model": endpoint.model_id,
        "prompt": prompt_ids,
        "temperature": 0,
        "max_tokens": 1,
        "logprobs": 1,
        "seed": 1234,
        "echo": True,
    }


class NoLogprobs(Exception):
    """The service answered, but without the prompt's log-probabilities: it cannot score this way."""


def parse_choice(choice: str, context_len: int) -> Callable[[Endpoint, Reply], ItemOutcome]:
    """A response parser for `infer_one`: the continuation's summed log-probability and greedy flag,
    as ItemOutcome.prediction (JSON of a ChoiceScore)."""

    def parse(endpoint: Endpoint, response: Reply) -> ItemOutcome:
        try:
            data = response.json()
            logprobs = data["choices"][0]["logprobs"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise malformed(e, response) from None
        if not logprobs or not logprobs.get("token_logprobs"):
            raise NoLogprobs(
                "the service returned no log-probabilities of the prompt (a completions request with echo and "
                "logprobs): it cannot score by log-likelihood; use a generative set, or a service that echoes "
                "them (vLLM does)"
            )
        try:
            values = logprobs["token_logprobs"][context_len:-1]
            tops = logprobs["top_logprobs"][context_len:-1]
            greedy = all(v == max(top.values()) for v, top in zip(values, tops))
            score = ChoiceScore(choice, float(sum(values)), len(values), greedy)
        except (KeyError, TypeError, ValueError) as e:
            raise malformed(e, response) from None
        usage = data.get("usage") or {}
        return ItemOutcome(
            prediction=json.dumps(score.__dict__),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            finish_reason="loglikelihood",
        )

    return parse


async def score_choices(
    client: HttpClient,
    endpoint: Endpoint,
    tokenizer: ContinuationTokenizer,
    context: str,
    choices: list[str],
    *,
    max_retries: int,
    acquire: Callable[[], Awaitable[Any]],
    release: Callable[[], Any],
) -> ItemOutcome:
    """One item: every choice asked at once, folded into one outcome. `prediction` is the index of the
    choice with the highest log-likelihood; `loglikelihoods` holds every choice's ChoiceScore (JSON).
    The item fails when any of its choices failed (a choice left out would change the answer)."""
    if not choices:
        return ItemOutcome(attempts=0, error="the item has no choices to score")
    endpoint = replace(endpoint, api="completions")
    try:
        prompts = [tokenizer.prompt(context, TARGET_DELIMITER + c) for c in choices]
    except ValueError as e:
        return ItemOutcome(attempts=0, error=str(e))
    outcomes = await asyncio.gather(
        *(
            infer_one(
                client,
                endpoint,
                loglikelihood_body(endpoint, ids),
                max_retries=max_retries,
                acquire=acquire,
                release=release,
                parse=parse_choice(choice, context_len),
                fatal=(NoLogprobs,),
            )
            for choice, (ids, context_len, _) in zip(choices, prompts)
        )
    )
    return fold_choices(outcomes)


def fold_choices(outcomes: list[ItemOutcome]) -> ItemOutcome:
    """The outcomes of an item's choices as one item outcome (see `score_choices`)."""
    errors = [f"choice {i}: {o.error}" for i, o in enumerate(outcomes) if o.error]
    starts = [o.started_at for o in outcomes if o.started_at is not None]
    latencies = [o.latency_ms for o in outcomes if o.latency_ms is not None]
    prompt_tokens = [o.prompt_tokens for o in outcomes if o.prompt_tokens is not None]
    outcome = ItemOutcome(
        started_at=min(starts) if starts else None,
        latency_ms=max(latencies) if latencies else None,
        prompt_tokens=sum(prompt_tokens) if prompt_tokens else None,
        completion_tokens=0 if not errors else None,
        finish_reason="loglikelihood",
        attempts=sum(o.attempts for o in outcomes),
        error="; ".join(errors) if errors else None,
    )
    if errors:
        return outcome
    scores = [json.loads(o.prediction) for o in outcomes]
    outcome.prediction = str(max(range(len(scores)), key=lambda i: scores[i]["logprob"]))
    outcome.loglikelihoods = json.dumps(scores, ensure_ascii=False)
    return outcome


def item_choices(fields: str | None, column: str) -> list[str]:
    """An item's choices: `column` of its other columns (`fields`, JSON), a list of texts."""
    value = json.loads(fields).get(column) if fields else None
    if isinstance(value, str):  # a CSV cell holding a JSON list
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return [str(c) for c in value] if isinstance(value, list) else []


def choice_scores(value: str | None) -> list[ChoiceScore]:
    """The stored `loglikelihoods` column of an item, as ChoiceScores (empty for none)."""
    return [ChoiceScore(**s) for s in json.loads(value)] if value else []


def probe_service(endpoint: Endpoint, tokenizer_dir: str) -> str | None:
    """Ask a service for one short log-likelihood; None when it answers with the prompt's log-probabilities,
    else what is wrong (for a validation error)."""
    import httpx

    try:
        ids, context_len, _ = ContinuationTokenizer(tokenizer_dir, 64).prompt("The sky is", " blue")
    except Exception as e:  # noqa: BLE001  (a folder transformers cannot read: said as it is)
        return f"its tokenizer at {tokenizer_dir} cannot be loaded ({type(e).__name__}: {str(e)[:200]})"
    completions = replace(endpoint, api="completions")
    try:
        with httpx.Client(timeout=min(endpoint.timeout, 30.0)) as client:
            response = client.post(completions.url, json=loglikelihood_body(completions, ids), headers=endpoint.headers)
    except httpx.HTTPError as e:
        return endpoint.scrub(f"{completions.url}: {type(e).__name__}: {e}")
    if response.status_code != 200:
        return endpoint.scrub(
            f"{completions.url} answered HTTP {response.status_code} to a completions request with echo and "
            f"logprobs: {response.text[:300]}"
        )
    try:
        reply = Reply(response.status_code, response.content, {k.lower(): v for k, v in response.headers.items()})
        parse_choice("blue", context_len)(completions, reply)
    except NoLogprobs as e:
        return str(e)
    except Exception as e:  # noqa: BLE001  (malformed: said as it is)
        return endpoint.scrub(f"{completions.url}: {e}", 300)
    return None
