"""A real vLLM engine on Ray Serve (CPU), deployed by rayeval's own code path, answering real clients.

One tiny random-weights model is deployed for the module; tasks naming the same model and engine
settings join that deployment. Tasks with other settings deploy (and take down) their own.
"""

from __future__ import annotations

import json

import httpx
import pyarrow.dataset as pads
import pytest
import ray
from ray import serve

from rayeval.actors.coordinator import get_coordinator
from rayeval.errors import SpecError, TaskFailedError
from rayeval.inference.client import request_body, resolve_endpoint
from rayeval.inference.prompt_budget import PromptBudget
from rayeval.jobs.prepare import prepare
from rayeval.jobs.runner import run_prepared
from rayeval.serve_apps.hosting import deploy, release
from rayeval.spec import ModelSpec, Parameters, parse_task
from tests.support.tasks import inference_task

pytestmark = pytest.mark.slow
MAX_LEN = 256


def write_items(path, items: list[dict]):
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path


def tiny(name: str = "tiny", **engine) -> dict:
    return {"name": name, "builtin": "tiny-random-llama", "engine": {"max_model_len": MAX_LEN, **engine}}


@pytest.fixture(scope="module")
def hosted(ray_cluster):
    """The tiny model deployed as user 'pytest' (so that tasks sharing it leave it up); deleted at the end."""
    coordinator = get_coordinator()
    endpoint = deploy(ModelSpec.model_validate(tiny()), user="pytest", coordinator=coordinator)
    yield endpoint
    assert release(endpoint.app, user="pytest", coordinator=coordinator, keep=False)
    assert endpoint.app not in serve.status().applications


def test_the_official_openai_client_gets_chat_completions_and_models(hosted):
    from openai import OpenAI

    client = OpenAI(base_url=hosted.base_url, api_key="unused", timeout=60)
    assert "tiny" in [m.id for m in client.models.list().data]
    chat = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "What is 2 + 3?"}], max_tokens=8, temperature=0
    )
    assert isinstance(chat.choices[0].message.content, str) and chat.usage.completion_tokens <= 8
    assert chat.usage.prompt_tokens == PromptBudget(hosted.tokenizer, MAX_LEN).count(
        {"messages": [{"role": "user", "content": "What is 2 + 3?"}]}
    )  # rayeval counts prompts exactly as the engine does
    completion = client.completions.create(model="tiny", prompt="1 + 1 =", max_tokens=8, temperature=0)
    assert isinstance(completion.choices[0].text, str) and completion.usage.completion_tokens <= 8


def test_greedy_repeats_and_top_k_and_repetition_penalty_reach_the_engine(hosted):
    endpoint = resolve_endpoint(ModelSpec.model_validate(tiny()), None, hosted=hosted)

    def answer(**params) -> str:
        body = request_body(endpoint, "natalia sold clips in april", Parameters(max_tokens=24, **params))
        r = httpx.post(endpoint.url, json=body, timeout=60)
        r.raise_for_status()
        return r.json()["choices"][0]["message"]["content"]

    greedy = answer(do_sample=False)
    assert answer(do_sample=False) == greedy  # temperature 0 sent: deterministic
    assert answer(do_sample=True, temperature=1.0, top_k=1) == greedy  # top_k=1 at temperature 1 is greedy
    assert answer(do_sample=False, repetition_penalty=2.0) == greedy  # greedy is greedy: the penalty is not sent
    assert answer(do_sample=True, temperature=1.0, top_k=1, repetition_penalty=2.0) != greedy  # it reaches vLLM


def test_max_model_len_is_enforced_per_item_and_max_tokens_clipped(hosted, tmp_path):
    items = [{"id": str(i), "query": f"What is {i} + {i}?", "reference": f"#### {2 * i}"} for i in range(6)]
    items.append({"id": "long", "query": "natalia sold clips " * 100, "reference": "#### 1"})
    data = write_items(tmp_path / "set.jsonl", items)
    spec = parse_task(
        inference_task(data, tmp_path / "out", [tiny()], parameters={"max_tokens": 5000, "do_sample": False})
    )
    task = prepare(spec)
    final = run_prepared(task)
    assert final["state"] == "succeeded"
    assert final["deployments"]["tiny"]["app"] == hosted.app  # joined the running deployment
    assert final["deployments"]["tiny"]["state"] == "released (still used by another task)"
    assert hosted.app in serve.status().applications
    rows = {r["item_id"]: r for r in pads.dataset(task.store.results_path(task.task_id)).to_table().to_pylist()}
    budget = PromptBudget(hosted.tokenizer, MAX_LEN)
    n = budget.count({"messages": [{"role": "user", "content": items[-1]["query"]}]})
    assert n > MAX_LEN and rows["long"]["error"] == f"prompt of {n} tokens exceeds MAX_MODEL_LEN {MAX_LEN}"
    assert rows["long"]["attempts"] == 0  # never sent
    for i in range(6):
        r = rows[str(i)]
        assert r["error"] is None and r["prompt_tokens"] + r["completion_tokens"] <= MAX_LEN
        if r["finish_reason"] == "length":  # ran into the clipped max_tokens, not 5000
            assert r["prompt_tokens"] + r["completion_tokens"] == MAX_LEN
    summary = {row["metric"]: row for row in final["summary"]}
    assert summary["numeric_match"]["items"] == 7 and summary["numeric_match"]["errors"] == 1


def test_a_task_deploys_its_own_model_and_takes_it_down(ray_cluster, tmp_path):
    data = write_items(tmp_path / "set.jsonl", [{"id": "a", "query": "1 + 1?", "reference": "#### 2"}])
    spec = parse_task(inference_task(data, tmp_path / "out", [tiny("own", max_model_len=128)]))
    task = prepare(spec)
    seen_running = []

    def on_progress(record):
        state = record.get("deployments", {}).get("own", {})
        if state.get("state") == "running":
            seen_running.append(state["app"] in serve.status().applications)

    final = run_prepared(task, on_progress=on_progress, progress_every=0.5)
    assert final["state"] == "succeeded" and seen_running and all(seen_running)
    app = final["deployments"]["own"]["app"]
    assert final["deployments"]["own"]["state"] == "deleted" and app not in serve.status().applications


def test_a_failed_deployment_fails_the_task_and_leaves_no_replicas(ray_cluster, tmp_path):
    data = write_items(tmp_path / "set.jsonl", [{"id": "a", "query": "1 + 1?", "reference": "#### 2"}])
    bad = tiny("broken", engine_kwargs={"quantization": "no-such-quantization"})
    task = prepare(parse_task(inference_task(data, tmp_path / "out", [bad])))
    with pytest.raises(TaskFailedError, match="could not be deployed on Ray Serve.*no-such-quantization"):
        run_prepared(task)
    record = task.store.read_json(task.task_id, "task.json")
    assert record["state"] == "failed" and record["deployments"]["broken"]["state"] == "failed"
    assert not [a for a in serve.status().applications if a.startswith("rayeval-broken-")]


def test_an_impossible_max_model_len_fails_before_anything_runs(tmp_path):
    data = write_items(tmp_path / "set.jsonl", [{"id": "a", "query": "q", "reference": "r"}])
    spec = parse_task(inference_task(data, tmp_path / "out", [tiny("long", max_model_len=100_000)]))
    with pytest.raises(SpecError, match="exceeds the model's context length"):
        prepare(spec)


def test_keep_leaves_the_deployment_running_for_later_tasks(hosted):
    import ray

    coordinator = get_coordinator()
    assert ray.get(coordinator.use_deployment.remote(hosted.app, "kept-task")) == 2  # pytest + this one
    assert ray.get(coordinator.release_deployment.remote(hosted.app, "pytest")) == 1
    assert not release(hosted.app, user="kept-task", coordinator=coordinator, keep=True)
    assert hosted.app in serve.status().applications  # nobody uses it, but `keep` said leave it
    assert ray.get(coordinator.use_deployment.remote(hosted.app, "pytest")) == 1  # the fixture's hold again


def test_debug_asks_a_hosted_model_and_gives_the_deployment_back(hosted, tmp_path):
    from rayeval.debug import debug_metrics

    items = [{"id": str(i), "query": f"What is {i} + {i}?", "reference": f"#### {2 * i}"} for i in range(3)]
    data = write_items(tmp_path / "set.jsonl", items)
    task = inference_task(data, tmp_path / "out", [tiny()], parameters={"max_tokens": 8, "do_sample": False})
    samples = debug_metrics(task, samples=2)
    assert [s.item["item_id"] for s in samples] == ["0", "1"]
    for s in samples:
        assert s.source == "model tiny" and s.response and s.inference["completion_tokens"] <= 8
        assert s.metrics["numeric_match"]["scores"]["numeric_match"] in (0.0, 1.0)
    coordinator = get_coordinator()
    assert hosted.app in serve.status().applications  # joined, then released: the fixture still holds it
    assert ray.get(coordinator.use_deployment.remote(hosted.app, "pytest")) == 1
    assert not (tmp_path / "out").exists()
