"""The OpenAI wire format as the stub server speaks it, without server state.

Reading the prompt out of a request body (:func:`prompt_text`,
:func:`word_count`), the default responder, request validation, OpenAI-style
error responses, the ``/v1/models`` entry and the response bodies of
``/v1/chat/completions`` and ``/v1/completions``. Everything the server keeps
(models served, creation time, response numbers, responder) comes in as
arguments.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Set
from typing import Any

from starlette.responses import JSONResponse, Response

__all__ = [
    "Responder",
    "completion_body",
    "completion_envelope",
    "default_responder",
    "echo_logprobs_body",
    "error_response",
    "stub_logprob",
    "model_entry",
    "model_not_found",
    "prompt_text",
    "validate_request",
    "word_count",
]

Responder = Callable[[dict[str, Any]], str]


def _content_text(content: Any) -> str:
    """Returns the text of a chat message ``content`` (string or list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                parts.append(str(part.get("text", "")))
            else:
                parts.append(str(part))
        return "\n".join(parts)
    return str(content)


def prompt_text(body: dict[str, Any]) -> str:
    """Returns the prompt text of a completion request body.

    Args:
        body: The JSON body of a chat or text completion request.

    Returns:
        For chat, the content of the last user message; otherwise the
        ``prompt`` field (list prompts joined by newlines).
    """
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return _content_text(message.get("content"))
        return ""
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        return "\n".join(str(p) for p in prompt)
    return "" if prompt is None else str(prompt)


def word_count(text: str) -> int:
    """Returns the stub's token count of ``text``: its whitespace-split words."""
    return len(text.split())


def default_responder(body: dict[str, Any]) -> str:
    """Answers ``"The answer is N."`` where N is the prompt length in characters."""
    return f"The answer is {len(prompt_text(body))}."


def error_response(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Builds an OpenAI-style error response."""
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def model_not_found(model: str) -> JSONResponse:
    """Builds the 404 error response for a model that is not served."""
    return error_response(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
    )


def model_entry(model: str, created: int) -> dict[str, Any]:
    """Returns the ``/v1/models`` entry of ``model``, created at ``created`` (Unix seconds)."""
    return {"id": model, "object": "model", "created": created, "owned_by": "stub"}


def validate_request(body: dict[str, Any], *, chat: bool, models: Set[str]) -> Response | None:
    """Checks a completion request body.

    Args:
        body: The JSON body of the request.
        chat: Whether it is a ``/v1/chat/completions`` request (else ``/v1/completions``).
        models: The model ids served.

    Returns:
        The error response for an invalid request; None for a valid one.
    """
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return error_response(400, "You must provide a model parameter.")
    if model not in models:
        return model_not_found(model)
    if body.get("stream"):
        return error_response(400, "The stub server does not support stream=true.")
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        return error_response(400, "n must be a positive integer.")
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return error_response(400, "'messages' must be a non-empty list.")
        if not all(isinstance(m, dict) for m in messages):
            return error_response(400, "Each message must be an object.")
    return None


def completion_envelope(body: dict[str, Any], *, chat: bool, ids: Iterator[int]) -> dict[str, Any]:
    """Returns the head of a completion response: its ``id``, ``object``, ``created`` and ``model``.

    Args:
        body: The (valid) request body; its ``model`` is echoed.
        chat: Whether it answers ``/v1/chat/completions`` (else ``/v1/completions``).
        ids: The server's response numbers; the ``id`` takes the next one.
    """
    return {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-stub{next(ids)}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": body["model"],
    }


def completion_body(body: dict[str, Any], *, chat: bool, responder: Responder, ids: Iterator[int]) -> dict[str, Any]:
    """Returns the response body of a chat or text completion request.

    Args:
        body: The (valid) request body.
        chat: Whether it answers ``/v1/chat/completions`` (else ``/v1/completions``).
        responder: Maps a request body to the completion text; a list prompt of
            strings gets one call per prompt.
        ids: The server's response numbers; the ``id`` takes the next one once
            the responder has answered.

    Returns:
        The completion with ``n`` choices per prompt and word-count ``usage``.
    """
    n = body.get("n") or 1
    choices: list[dict[str, Any]] = []
    completion_tokens = 0
    if chat:
        text = responder(body)
        prompt_tokens = sum(word_count(_content_text(m.get("content"))) for m in body["messages"])
        for i in range(n):
            choices.append(
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            )
        completion_tokens = n * word_count(text)
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            prompts: list[str] = prompt
            texts = [responder({**body, "prompt": p}) for p in prompts]
        else:
            prompts = [prompt_text(body)]
            texts = [responder(body)]
        prompt_tokens = sum(word_count(p) for p in prompts)
        for text in texts:
            for _ in range(n):
                choices.append({"index": len(choices), "text": text, "logprobs": None, "finish_reason": "stop"})
            completion_tokens += n * word_count(text)
    return {
        **completion_envelope(body, chat=chat, ids=ids),
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def stub_logprob(previous: int, token: int) -> float:
    """The stub's log-probability of `token` after `previous`: a fixed bigram table, in [-4.05, -0.05]."""
    return -(((previous * 7919 + token * 104729) % 1000) / 250 + 0.05)


def echo_logprobs_body(body: dict[str, Any], *, ids: Iterator[int]) -> dict[str, Any]:
    """The answer to a completions request with `echo` and `logprobs` whose `prompt` is token ids, as vLLM
    gives it: per prompt token its log-probability (`stub_logprob`; null for the first) and its top
    alternatives (the token itself is the top one when its log-probability is above -1), then the
    `max_tokens` generated tokens (token 0, at -0.1)."""
    prompt = [int(t) for t in body["prompt"]]
    generated = int(body.get("max_tokens") or 0)
    values: list[float | None] = [None]
    tops: list[dict[str, float] | None] = [None]
    for previous, token in zip(prompt, prompt[1:]):
        value = stub_logprob(previous, token)
        values.append(value)
        tops.append({f"t{token}": value} if value > -1 else {f"t{token}": value, "t-best": -0.5})
    values += [-0.1] * generated
    tops += [{"t0": -0.1}] * generated
    tokens = [f"t{t}" for t in prompt] + ["t0"] * generated
    choice = {
        "index": 0,
        "text": " ".join(tokens),
        "logprobs": {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": []},
        "finish_reason": "length",
    }
    usage = {"prompt_tokens": len(prompt), "completion_tokens": generated, "total_tokens": len(prompt) + generated}
    return {**completion_envelope(body, chat=False, ids=ids), "choices": [choice], "usage": usage}
