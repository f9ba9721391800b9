"""Responders for the stub server that stand in for judge models: they answer by a rule the caller knows.

Use one in a test (`OpenAIStubServer(responder=...)`) or on the command line
(`python -m tests.support.openai_server --responder tests.support.responders:last_number_judge`).
"""

from __future__ import annotations

import re
from typing import Any

from tests.support.openai_server import prompt_text

__all__ = ["last_number_judge"]

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def last_number_judge(body: dict[str, Any]) -> str:
    """A judge for prompts with 'Reference: ...' and 'Answer: ...' lines: 'Score: 1' when the answer's
    last number is the reference's last number, else 'Score: 0'."""
    text = prompt_text(body)
    ref = re.search(r"^Reference: (.*)$", text, re.M)
    ans = re.search(r"^Answer: (.*)$", text, re.M)
    ref_n = _NUMBER.findall(ref.group(1)) if ref else []
    ans_n = _NUMBER.findall(ans.group(1)) if ans else []
    right = bool(ref_n and ans_n and ref_n[-1] == ans_n[-1])
    return f"The final numbers {'agree' if right else 'differ'}. Score: {int(right)}"
