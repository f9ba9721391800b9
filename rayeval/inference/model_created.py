"""When a model service says its model was created (`/v1/models`' `created`), for telling stale answers.

A service identified only by URL and served id may be redeployed with other weights under the same
name; an answer stored before that is not the model's answer any more. OpenAI's API gives each model's
creation time; vLLM's server (and Ray Serve LLM's) puts the time of the *request* there instead, which
says nothing: two looks a second apart tell the two apart.
"""

from __future__ import annotations

import time

import httpx

from rayeval.inference.client import Endpoint

__all__ = ["model_created"]

#: Seconds between the two looks (more than the one-second resolution of `created`).
_APART_S = 1.1


def _created(client: httpx.Client, endpoint: Endpoint) -> int | None:
    r = client.get(f"{endpoint.base_url}/models", headers=endpoint.headers)
    if r.status_code != 200:
        return None
    try:
        entries = r.json().get("data", [])
    except (ValueError, AttributeError):
        return None
    for entry in entries:
        if isinstance(entry, dict) and entry.get("id") == endpoint.model_id:
            created = entry.get("created")
            return created if isinstance(created, int) and not isinstance(created, bool) and created > 0 else None
    return None


def model_created(endpoint: Endpoint) -> float | None:
    """Unix seconds at which the service says its model was created; None when it does not say, cannot
    be asked, or says the time of each answer instead (the value moves between two looks)."""
    try:
        with httpx.Client(timeout=min(endpoint.timeout, 30.0)) as client:
            first = _created(client, endpoint)
            if first is None:
                return None
            time.sleep(_APART_S)
            second = _created(client, endpoint)
    except httpx.HTTPError:
        return None
    return float(first) if second == first else None
