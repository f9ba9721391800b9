"""Parameters per evaluation set on a real cluster: each request carries its model's parameters on its
set (task < set < model), spec.json and `rayeval status` show them, and reuse keys on them per set."""

from __future__ import annotations

import json
from collections import Counter

from click.testing import CliRunner

import rayeval
from rayeval.cli import main
from tests.support.tasks import inference_task, write_items

N = 12
LONG = {"MAX_TOKENS": 512, "TEMPERATURE": 0.7, "SYSTEM_PROMPT": "Answer at length."}


def _task(tmp_path, server, name: str, long: dict) -> dict:
    data = write_items(tmp_path / "items.jsonl", N)
    models = [
        {"name": "a", "url": server.url, "model": "stub-model"},
        {"name": "b", "url": server.url, "model": "stub-model", "parameters": {"MAX_TOKENS": 16}},
    ]
    task = inference_task(data, tmp_path / "out", models, name=name, parameters={"max_tokens": 128, "temperature": 0.2})
    task["evaluation_sets"].append(
        {"name": "long", "path": str(data), "columns": {"id": "id"}, "metrics": ["numeric_match"], "parameters": long}
    )
    return task


def _asked(bodies: list[dict]) -> Counter:
    """(set by its system message, max_tokens, temperature) of each request."""
    return Counter(
        ("long" if body["messages"][0]["role"] == "system" else "q", body["max_tokens"], body["temperature"])
        for body in bodies
    )


def test_each_set_is_asked_with_its_own_parameters_and_reused_by_them(ray_cluster, stub_server, tmp_path):
    server = stub_server(latency=0.01)
    first = rayeval.run(_task(tmp_path, server, "per-set", LONG))
    assert first.status()["state"] == "succeeded"
    assert _asked(server.received) == {
        ("q", 128, 0.2): N,  # a on q: the task's
        ("long", 512, 0.7): N,  # a on long: the set's over the task's
        ("q", 16, 0.2): N,  # b: its own max_tokens over the task's ...
        ("long", 16, 0.7): N,  # ... and over the set's; the set's temperature and system prompt
    }
    system = [b["messages"][0]["content"] for b in server.received if b["messages"][0]["role"] == "system"]
    assert set(system) == {"Answer at length."}

    stored = json.loads((tmp_path / "out" / first.task_id / "spec.json").read_text())
    assert stored["effective_parameters"]["b"]["long"]["max_tokens"] == 16
    assert stored["effective_parameters"]["a"]["long"]["system_prompt"] == "Answer at length."
    copied = rayeval.copy_spec(first.task_id, name="per-set-copy")  # the stored spec parses again
    assert copied.evaluation_sets[1].parameters.max_tokens == 512
    shown = CliRunner().invoke(main, ["status", first.task_id]).output
    assert "parameters of a / long: max_tokens=512, system_prompt='Answer at length.', temperature=0.7" in shown
    assert "parameters of b / q: max_tokens=16, temperature=0.2" in shown

    # Another temperature on `long` only: q's answers are reused, long's asked again.
    second = rayeval.run({**_task(tmp_path, server, "per-set-2", {**LONG, "TEMPERATURE": 0.8}), "reuse": True})
    rows = second.items().to_table(columns=["model", "eval_set", "reused_from"]).to_pylist()
    assert Counter((r["eval_set"], r["reused_from"]) for r in rows) == {
        ("q", first.task_id): 2 * N,
        ("long", None): 2 * N,
    }
    assert _asked(server.received[4 * N :]) == {("long", 512, 0.8): N, ("long", 16, 0.8): N}
