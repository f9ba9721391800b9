"""Reading a reference that may hold several acceptable answers."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["reference_answers"]


def reference_answers(reference: Any) -> list[str]:
    """Returns the acceptable answers in a reference.

    A string starting with '[' that parses as a JSON list is a list of answers; any other
    string is one answer. A list or tuple is taken as it is.
    """
    if isinstance(reference, (list, tuple)):
        return [str(answer) for answer in reference]
    text = str(reference)
    if text.lstrip().startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            return [text]
        if isinstance(parsed, list):
            return [str(answer) for answer in parsed]
    return [text]
