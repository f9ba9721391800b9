"""The service client: endpoints from URLs, and credentials kept out of error texts."""

from __future__ import annotations

from rayeval.inference.client import resolve_endpoint
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


def test_an_items_system_message_goes_before_the_tasks():
    import json

    from rayeval.inference.client import item_system, request_body
    from rayeval.spec import Parameters

    chat = resolve_endpoint(ModelSpec(name="m", url="http://127.0.0.1:9/v1"), None)
    both = request_body(chat, "Q?", Parameters(SYSTEM_PROMPT="Be brief."), "Use tools.")
    assert both["messages"] == [
        {"role": "system", "content": "Use tools.\n\nBe brief."},
        {"role": "user", "content": "Q?"},
    ]
    assert request_body(chat, "Q?", Parameters(), None)["messages"] == [{"role": "user", "content": "Q?"}]
    completions = resolve_endpoint(ModelSpec(name="m", url="http://127.0.0.1:9/v1/completions"), None)
    assert request_body(completions, "Q?", Parameters(), "Use tools.")["prompt"] == "Use tools.\n\nQ?"
    fields = json.dumps({"sys": "Use tools.", "topic": "x"})
    assert item_system(fields, "sys") == "Use tools." and item_system(fields, None) is None
    assert item_system(None, "sys") is None and item_system(json.dumps({"topic": "x"}), "sys") is None


def test_which_http_errors_are_retried():
    from rayeval.inference.client import retryable_status

    assert retryable_status(503, "busy") and retryable_status(429, "") and retryable_status(599, "")
    assert not retryable_status(400, "bad request") and not retryable_status(401, "no key")
    # Serve's proxy while a hosted model's ingress is replaced: the route is back within seconds
    missing = "Path '/rayeval-tiny-d346/v1/chat/completions' not found. Ping http://.../-/routes for available routes."
    assert retryable_status(404, missing)
    assert not retryable_status(404, '{"error": {"message": "The model `x` does not exist."}}')  # a real 404


def test_a_retry_after_hint_is_seconds_a_date_or_nothing():
    import email.utils
    import time

    from rayeval.inference.client import retry_after
    from rayeval.inference.http import Reply

    def hint(value):
        return retry_after(Reply(503, b"", {"retry-after": value} if value is not None else {}))

    assert hint("2.5") == 2.5 and hint("-3") == 0.0 and hint(None) is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < hint(later) <= 30
    assert hint(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0  # a date gone by: at once
    for malformed in ("soon", "Wed, 99 Foo 2026 25:61:00 GMT", "", "1e9999x"):
        assert hint(malformed) is None  # no hint: the usual backoff applies


def test_greedy_sends_no_sampling_parameter_and_the_task_is_told():
    from rayeval.inference.client import request_body
    from rayeval.spec import Parameters

    endpoint = resolve_endpoint(ModelSpec(name="m", url="http://127.0.0.1:9/v1"), None)
    every = {"temperature": 0.7, "top_p": 0.9, "top_k": 5, "repetition_penalty": 1.2}
    greedy = Parameters(do_sample=False, **every)
    body = request_body(endpoint, "Q?", greedy)
    assert body["temperature"] == 0.0 and not set(every) - {"temperature"} & set(body)
    assert greedy.notes() == ["do_sample is false (greedy): temperature, top_p, top_k, repetition_penalty not sent"]
    sampled = Parameters(**every)
    assert {k: request_body(endpoint, "Q?", sampled)[k] for k in every} == every
    (note,) = sampled.notes()
    assert note == "temperature and top_p and top_k are all set: set only one of temperature, top_p and top_k"
    assert Parameters(temperature=0.7, repetition_penalty=1.1).notes() == []
    assert Parameters(do_sample=False).notes() == []
