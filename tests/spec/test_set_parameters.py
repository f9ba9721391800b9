"""Parameters per evaluation set: task < set < model, per-task limits refused on a set, and the
fingerprint of a model's answers on a set that changes what it is asked (fast tier: no Ray)."""

from __future__ import annotations

import pytest

from rayeval.errors import SpecError
from rayeval.jobs.prepare import prepare
from rayeval.spec import parse_task
from tests.support.tasks import inference_task, write_items


def _task(tmp_path, **over):
    data = write_items(tmp_path / "items.jsonl", 3)
    task = inference_task(
        data,
        tmp_path / "out",
        [
            {"name": "a", "url": "http://127.0.0.1:9/v1"},
            {"name": "b", "url": "http://127.0.0.1:9/v1", "parameters": {"MAX_TOKENS": 16}},
        ],
        parameters={"temperature": 0.2, "max_tokens": 128, "MAX_RETRY_PER_QUERY": 1},
    )
    task["evaluation_sets"].append(
        {
            "name": "long",
            "path": str(data),
            "columns": {"id": "id"},
            "metrics": ["numeric_match"],
            "parameters": {"MAX_TOKENS": 512, "temperature": 0.7, "MAX_RETRY_PER_QUERY": 3, "REQUEST_TIMEOUT": 600},
        }
    )
    task.update(over)
    return task


def test_a_set_overrides_the_task_and_a_model_overrides_both(tmp_path):
    spec = parse_task(_task(tmp_path))
    a, b = spec.models
    assert spec.set_parameters(a, "q") == spec.model_parameters(a)  # a set without its own: the task's
    long_a = spec.set_parameters(a, "long")
    assert (long_a.max_tokens, long_a.temperature, long_a.max_retry_per_query, long_a.request_timeout) == (
        512,
        0.7,
        3,
        600,
    )
    long_b = spec.set_parameters(b, "long")
    assert (long_b.max_tokens, long_b.temperature) == (16, 0.7)  # b's own max_tokens wins over the set's
    table = spec.effective_parameters()
    assert table["a"]["q"]["max_tokens"] == 128 and table["a"]["long"]["max_tokens"] == 512
    assert table["b"]["long"]["max_tokens"] == 16 and table["b"]["long"]["temperature"] == 0.7


@pytest.mark.parametrize("name", ["MAX_CONCURRENCY", "max_judging_concurrency"])
def test_limits_across_the_cluster_stay_per_task(tmp_path, name):
    task = _task(tmp_path)
    task["evaluation_sets"][1]["parameters"] = {name: 4}
    with pytest.raises(SpecError, match="for the whole task: set them in the task's `parameters`"):
        parse_task(task)


def test_sampling_checks_see_a_sets_own_parameters(tmp_path):
    task = _task(tmp_path)
    task["evaluation_sets"][1]["parameters"] = {"INFERENCE_COUNT": 4, "DO_SAMPLE": False}
    with pytest.raises(SpecError, match="model 'a' on set 'long': INFERENCE_COUNT 4 with greedy decoding"):
        parse_task(task)


def test_only_a_set_that_changes_what_is_asked_has_its_own_fingerprint(tmp_path):
    task = prepare(parse_task(_task(tmp_path)), check_services=False)
    assert set(task.set_fps) == {"a", "b"} and set(task.set_fps["a"]) == {"long"}
    assert task.answers_fp("a", "q") == task.model_fps["a"]
    assert task.answers_fp("a", "long") != task.model_fps["a"]
    assert task.answers_fp("a", "long") != task.answers_fp("b", "long")

    # Retries and time limits change no answer: a set setting only those shares its model's fingerprint.
    quiet = _task(tmp_path)
    quiet["evaluation_sets"][1]["parameters"] = {"MAX_RETRY_PER_QUERY": 5, "REQUEST_TIMEOUT": 30}
    assert prepare(parse_task(quiet), check_services=False).set_fps == {}


def test_the_stored_spec_keeps_overrides_as_set(tmp_path):
    """spec.json holds a model's and a set's overrides as written: defaults dumped with them would override
    the task's parameters once read back (a restart would run with MAX_CONCURRENCY 24, say)."""
    spec = parse_task(_task(tmp_path, parameters={"MAX_CONCURRENCY": 4, "temperature": 0.2, "max_tokens": 128}))
    again = parse_task(spec.redacted())
    assert again.effective_parameters() == spec.effective_parameters()
    assert again.set_parameters(again.models[1], "q").max_concurrency == 4
    assert again.models[1].parameters.model_fields_set == {"max_tokens"}
