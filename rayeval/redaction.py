"""Credentials kept out of texts: the one rule every log, error and stored file goes through.

Standard library only: the evaluation programs of Custom Evaluation run it inside the user's
image, where rayeval is not installed (rayeval.custom.program ships it by value).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["masked", "scrub"]


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


def masked(text: str, secrets: Iterable[str | None], limit: int | None = None) -> str:
    """`text` scrubbed of `secrets`, then cut to `limit` characters: masking first, so that no prefix of a
    secret survives a cut through it."""
    text = scrub(text, secrets)
    return text if limit is None or len(text) <= limit else text[:limit] + "..."
