"""The service client: endpoints from URLs, and credentials kept out of error texts."""

from __future__ import annotations

from rayeval.client import resolve_endpoint
from rayeval.spec import ModelSpec


def test_url_names_the_api_and_only_the_credential_is_scrubbed():
    model = ModelSpec(name="m", url="http://127.0.0.1:9/v1/completions")
    endpoint = resolve_endpoint(model, "Bearer sk-secret-1234")
    assert (endpoint.base_url, endpoint.api, endpoint.url) == (
        "http://127.0.0.1:9/v1",
        "completions",
        "http://127.0.0.1:9/v1/completions",
    )
    text = "HTTP 400: expected application/json; got token sk-secret-1234 (Bearer sk-secret-1234)"
    assert endpoint.scrub(text) == "HTTP 400: expected application/json; got token *** (***)"
    assert "sk-secret" not in repr(endpoint)
