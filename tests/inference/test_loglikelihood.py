"""Log-likelihood requests: context and continuation split as lm-eval splits them, the request shape, the
answer read back, and an item's choices folded into one outcome (against the stub service over HTTP)."""

from __future__ import annotations

import asyncio
import json

import pytest

from rayeval.inference.client import resolve_endpoint
from rayeval.inference.http import HttpClient, Reply
from rayeval.inference.loglikelihood import (
    ContinuationTokenizer,
    NoLogprobs,
    choice_scores,
    parse_choice,
    probe_service,
    score_choices,
)
from rayeval.serve_apps.tiny_model import build_tiny_model
from rayeval.spec import ModelSpec
from tests.support.openai_wire import stub_logprob


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("tok") / "tiny"))


def _tokens(tokenizer_dir: str, text: str) -> list[int]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)(text, add_special_tokens=False).input_ids


def test_the_boundary_falls_where_lm_eval_puts_it(tokenizer_dir):
    split = ContinuationTokenizer(tokenizer_dir, 2048)
    context, continuation = "The answer to 12 + 7 is", " 19 apples"
    context_ids, continuation_ids = split.encode_pair(context, continuation)
    whole = _tokens(tokenizer_dir, context + continuation)
    assert context_ids == _tokens(tokenizer_dir, context) and context_ids + continuation_ids == whole
    # a context's trailing spaces move to the continuation (lm-eval's _encode_pair)
    assert split.encode_pair(context + " ", "19 apples") == (context_ids, continuation_ids)
    ids, context_len, n = split.prompt(context, continuation)
    assert ids == whole and context_len == len(context_ids) and n == len(continuation_ids)


def test_a_sequence_longer_than_the_window_loses_context_from_the_left(tokenizer_dir):
    context = "one two three four five six seven eight nine ten " * 4
    full, context_len, n = ContinuationTokenizer(tokenizer_dir, 4096).prompt(context.strip(), " eleven")
    window = len(full) - 5  # five tokens too many for the window (which keeps one for the generated token)
    ids, cut_context_len, cut_n = ContinuationTokenizer(tokenizer_dir, window + 1).prompt(context.strip(), " eleven")
    assert ids == full[5:] and cut_n == n and cut_context_len == context_len - 5
    with pytest.raises(ValueError, match="empty context"):
        ContinuationTokenizer(tokenizer_dir, 64).prompt("", " x")


def _reply(body: dict) -> Reply:
    return Reply(200, json.dumps(body).encode())


def test_the_answer_is_read_as_lm_eval_reads_it():
    endpoint = resolve_endpoint(ModelSpec(name="m", url="http://127.0.0.1:9/v1"), None)
    logprobs = {
        "token_logprobs": [None, -1.0, -0.5, -0.25, -2.0, -0.1],
        "top_logprobs": [None, {"a": -1.0}, {"b": -0.5, "z": -0.2}, {"c": -0.25}, {"d": -2.0}, {"g": -0.1}],
    }
    body = {"choices": [{"logprobs": logprobs}], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}
    # context of 3 tokens, continuation of 2, then the generated token (left out)
    score = json.loads(parse_choice("x", 3)(endpoint, _reply(body)).prediction)
    assert score == {"choice": "x", "logprob": -2.25, "tokens": 2, "greedy": True}
    score = json.loads(parse_choice("x", 2)(endpoint, _reply(body)).prediction)  # 'z' was likelier than 'b'
    assert score == {"choice": "x", "logprob": -2.75, "tokens": 3, "greedy": False}
    with pytest.raises(NoLogprobs, match="no log-probabilities"):
        parse_choice("x", 2)(endpoint, _reply({"choices": [{"text": "hi", "logprobs": None}]}))


def _expected(tokenizer_dir: str, context: str, choice: str) -> tuple[float, int]:
    ids, context_len, n = ContinuationTokenizer(tokenizer_dir, 2048).prompt(context, " " + choice)
    values = [stub_logprob(ids[i - 1], ids[i]) for i in range(context_len, len(ids))]
    return sum(values), n


def test_an_items_choices_are_asked_at_once_and_folded(stub_server, tokenizer_dir):
    server = stub_server()
    endpoint = resolve_endpoint(ModelSpec(name="m", model="stub-model", url=server.url), None)
    context, choices = "Question: what is 2 + 2?\nAnswer:", ["4", "22", "four apples"]
    held = []

    async def run():
        client = HttpClient(max_connections=4)
        try:

            async def acquire():
                held.append(1)

            return await score_choices(
                client,
                endpoint,
                ContinuationTokenizer(tokenizer_dir, 2048),
                context,
                choices,
                max_retries=0,
                acquire=acquire,
                release=held.pop,
            )
        finally:
            await client.close()

    outcome = asyncio.run(run())
    assert outcome.error is None and outcome.attempts == 3 and held == []
    scores = choice_scores(outcome.loglikelihoods)
    expected = [_expected(tokenizer_dir, context, c) for c in choices]
    assert [s.choice for s in scores] == choices
    assert [s.logprob for s in scores] == pytest.approx([e[0] for e in expected])
    assert [s.tokens for s in scores] == [e[1] for e in expected]
    assert outcome.prediction == str(max(range(3), key=lambda i: expected[i][0]))
    bodies = [b for b in server.received if b.get("echo")]
    assert len(bodies) == 3 and all(
        b["max_tokens"] == 1 and b["logprobs"] == 1 and b["temperature"] == 0 for b in bodies
    )
    assert all(isinstance(b["prompt"], list) and all(isinstance(t, int) for t in b["prompt"]) for b in bodies)


def test_a_service_without_prompt_logprobs_is_told_apart(stub_server, tokenizer_dir):
    good = stub_server()
    endpoint = resolve_endpoint(ModelSpec(name="m", model="stub-model", url=good.url), None)
    assert probe_service(endpoint, tokenizer_dir) is None
    plain = stub_server(echo_logprobs=False)
    endpoint = resolve_endpoint(ModelSpec(name="m", model="stub-model", url=plain.url), None)
    assert "cannot score by log-likelihood" in probe_service(endpoint, tokenizer_dir)
    assert "cannot be loaded" in probe_service(endpoint, "/nonexistent/tokenizer")
