"""`rayeval eval`: one line evaluates a model behind a URL (a real stub server on 127.0.0.1), a built-in model
or a checkpoint on built-in sets, printing the task file it runs."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from rayeval.api import eval_task, eval_task_data
from rayeval.cli import main
from rayeval.errors import SpecError
from rayeval.spec import load_task
from tests.conftest import SHARED_DATA


def test_the_task_it_builds_for_each_kind_of_model(stub_server):
    server = stub_server()
    data = eval_task_data(server.url, ["gsm8k"], limit=5, auth_env="MY_KEY")
    assert data["models"] == [
        {"name": "stub-model", "url": server.url, "model": "stub-model", "auth_header_value": "${env:MY_KEY}"}
    ]
    assert data["parameters"] == {"do_sample": False} and data["evaluation_sets"][0]["limit"] == 5
    assert eval_task("smollm2-135m-instruct", ["gsm8k"]).models[0].builtin == "smollm2-135m-instruct"
    spec = eval_task("/ckpt/My Model/", ["humaneval"], max_model_len=1024)
    assert spec.models[0].path == "/ckpt/My Model" and spec.name == "eval-My-Model" and spec.tags == ["checkpoint"]
    resources = {"gpus_per_replica": 2, "tensor_parallel_size": 2, "accelerator_type": "H100", "replicas": 3}
    engine = eval_task("/ckpt/m", ["gsm8k"], engine={**resources, "max_model_len": None}).models[0].engine
    assert (engine.gpus_per_replica, engine.tensor_parallel_size, engine.accelerator_type, engine.replicas) == (
        2,
        2,
        "H100",
        3,
    )
    with pytest.raises(SpecError, match="replicas: for a model rayeval hosts"):
        eval_task_data(server.url, ["gsm8k"], engine={"replicas": 2})
    two = stub_server(models=("a", "b"))
    with pytest.raises(SpecError, match=r"lists 2 models \(a, b\): give served_model"):
        eval_task_data(two.url, ["gsm8k"])
    assert eval_task_data(two.url, ["gsm8k"], served_model="b")["models"][0]["model"] == "b"
    with pytest.raises(SpecError, match="served_model and auth_env are for a model behind a URL"):
        eval_task_data("/ckpt", ["gsm8k"], served_model="x")
    with pytest.raises(SpecError, match="unknown built-in set 'nope'"):
        eval_task(server.url, ["nope"])


@pytest.mark.ray
def test_one_line_evaluates_a_url_and_prints_its_task_file(ray_cluster, stub_server, tmp_path):
    server = stub_server()
    saved = tmp_path / "task.yaml"
    args = ["eval", "--model", server.url, "--sets", "gsm8k", "--data", f"gsm8k={SHARED_DATA / 'gsm8k'}"]
    args += ["--limit", "6", "--output", str(tmp_path / "out"), "--save", str(saved)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "rayeval: the task file of this run (saved to" in result.output and f"url: {server.url}" in result.output
    row = [line.split() for line in result.output.splitlines() if line.startswith("stub-model")]
    assert row and row[0][:2] == ["stub-model", "gsm8k"] and row[0][4:] == ["6", "6", "0"]
    assert server.total_requests == 6
    spec = load_task(saved)  # the printed file runs again as it is
    assert spec.evaluation_sets[0].limit == 6 and yaml.safe_load(saved.read_text())["models"][0]["url"] == server.url
