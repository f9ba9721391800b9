"""MAX_MODEL_LEN before a request leaves the actor: counting, clipping, and the engine's own refusal."""

from __future__ import annotations

import pytest

from rayeval.inference.prompt_budget import PromptBudget, context_error
from rayeval.serve_apps.tiny_model import build_tiny_model


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("tok") / "tiny", max_position_embeddings=512))


def test_prompts_are_counted_with_the_chat_template_and_max_tokens_clipped(tokenizer_dir):
    budget = PromptBudget(tokenizer_dir, 64)
    body = {"messages": [{"role": "user", "content": "What is 2 + 2?"}], "max_tokens": 1000}
    n = budget.count(body)
    assert n > budget.count({"prompt": "What is 2 + 2?"})  # the template's role markers count too
    assert budget.fit(body) is None and body["max_tokens"] == 64 - n
    unset = {"messages": body["messages"]}
    assert budget.fit(unset) is None and unset["max_tokens"] == 64 - n  # made explicit
    small = {"messages": body["messages"], "max_tokens": 3}
    assert budget.fit(small) is None and small["max_tokens"] == 3


def test_a_prompt_that_does_not_fit_is_an_item_error(tokenizer_dir):
    budget = PromptBudget(tokenizer_dir, 32)
    body = {"messages": [{"role": "user", "content": "natalia sold clips " * 40}]}
    n = budget.count(body)
    assert budget.fit(body) == f"prompt of {n} tokens exceeds MAX_MODEL_LEN 32"
    assert PromptBudget(None, 32).fit(body) is None  # no tokenizer: the engine decides (below)


def test_the_engines_refusal_becomes_the_same_item_error():
    vllm = (
        '{"error":{"message":"Message: This model\'s maximum context length is 256 tokens. However, your prompt '
        'contains at least 257 input tokens, which exceeds this limit even without any output tokens."}}'
    )
    assert context_error(vllm) == "prompt of at least 257 tokens exceeds MAX_MODEL_LEN 256"
    older = "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4990 in the"
    assert (
        context_error(older + " messages, 10 in the completion)") == "prompt of 4990 tokens exceeds MAX_MODEL_LEN 4096"
    )
    assert context_error('{"error": "model not found"}') is None
