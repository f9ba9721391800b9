"""MAX_MODEL_LEN, enforced before a request leaves the inference actor.

For a hosted model rayeval knows the engine's MAX_MODEL_LEN and where its tokenizer lives, so
each prompt is counted the way vLLM counts it (the chat template applied, then tokenized). A
prompt that does not fit becomes an item error; otherwise `max_tokens` is clipped to what is
left of the context. Where no tokenizer is at hand (a hub model not cached on this node), the
engine's own refusal is turned into the same item error (see `context_error`).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["PromptBudget", "context_error"]

_LIMIT = re.compile(r"maximum context length is (\d+) tokens")
_PROMPT = re.compile(r"\((\d+) in the messages|(at least )?(\d+) input tokens")


def too_long(prompt_tokens: int, limit: int, *, at_least: bool = False) -> str:
    """The item error of a prompt that does not fit."""
    return f"prompt of {'at least ' if at_least else ''}{prompt_tokens} tokens exceeds MAX_MODEL_LEN {limit}"


def context_error(text: str) -> str | None:
    """The item error for an engine's context-length refusal, or None when `text` is something else."""
    limit, prompt = _LIMIT.search(text), _PROMPT.search(text)
    if limit is None or prompt is None:
        return None
    count = prompt.group(1) or prompt.group(3)
    return too_long(int(count), int(limit.group(1)), at_least=bool(prompt.group(2)))


class PromptBudget:
    """Counts prompt tokens with the model's own tokenizer and fits requests into MAX_MODEL_LEN.

    Args:
        tokenizer_dir: Local folder with the model's tokenizer files (None: count nothing).
        max_model_len: The engine's MAX_MODEL_LEN.
    """

    def __init__(self, tokenizer_dir: str | None, max_model_len: int):
        self.tokenizer_dir, self.max_model_len = tokenizer_dir, max_model_len
        self._tokenizer: Any = None

    def _load(self) -> Any:
        if self._tokenizer is None and self.tokenizer_dir:
            from transformers import AutoTokenizer  # heavy: only where hosted models are called

            self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_dir)
        return self._tokenizer

    def count(self, body: dict[str, Any]) -> int | None:
        """Prompt tokens of a chat or completions request body, as the engine will see them."""
        tokenizer = self._load()
        if tokenizer is None:
            return None
        if "messages" in body:
            ids = tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            return len(ids)
        return len(tokenizer.encode(body["prompt"]))

    def fit(self, body: dict[str, Any]) -> str | None:
        """Clip the body's max_tokens to the room left; return an item error when the prompt does not fit."""
        n = self.count(body)
        if n is None:
            return None
        room = self.max_model_len - n
        if room < 1:
            return too_long(n, self.max_model_len)
        body["max_tokens"] = min(body.get("max_tokens") or room, room)
        return None
