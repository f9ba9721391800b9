"""Credentials kept out of texts: the one rule every log, error and stored file goes through.

Standard library only: the evaluation programs of Custom Evaluation run it inside the user's
image, where rayeval is not installed (rayeval.custom.program ships it by value).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["scrub"]


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Replace each secret, and the token after its auth scheme ("Bearer xyz" -> "xyz"), by '***'."""
    for value in secrets:
        if not value or len(value) < 4:
            continue
        text = text.replace(value, "***")
        token = value.split(" ", 1)[-1]
        if len(token) >= 4:
            text = text.replace(token, "***")
    return text
