"""Task runner edge cases: failures of the whole pipeline, bad output locations, unreachable clusters."""

from __future__ import annotations

import json

import pytest

import rayeval
from rayeval.errors import ServiceError, SpecError, TaskFailedError, TooManyErrors
from rayeval.jobs.prepare import prepare
from rayeval.jobs.runner import run_prepared
from rayeval.spec import parse_task
from tests.support.tasks import inference_task, stub_task, write_items


def test_a_pipeline_failure_marks_the_task_failed_and_keeps_the_secret_out(ray_cluster, stub_server, tmp_path):
    server = stub_server(api_key="fail-secret-321")
    data = write_items(tmp_path / "items.jsonl", 10)
    spec = parse_task(
        inference_task(
            data,
            tmp_path / "out",
            [{"name": "m", "url": server.url, "model": "stub-model", "auth_header_value": "Bearer fail-secret-321"}],
        )
    )
    task = prepare(spec)
    data.unlink()  # the set vanishes between validation and the run
    with pytest.raises(TaskFailedError, match=f"task {task.task_id} failed"):
        run_prepared(task)
    handle = rayeval.TaskHandle(task.task_id, spec.output)
    record = handle.status()
    assert record["state"] == "failed" and "items.jsonl" in record["error"]
    assert "fail-secret-321" not in record["error"]
    with pytest.raises(rayeval.RayevalError, match="failed"):
        handle.wait(timeout=5)


def test_output_that_is_a_file_is_rejected_before_anything_runs(tmp_path):
    data = write_items(tmp_path / "items.jsonl", 3)
    (tmp_path / "out").write_text("not a folder")
    spec = parse_task(inference_task(data, tmp_path / "out", [{"name": "m", "url": "http://127.0.0.1:9/v1"}]))
    with pytest.raises(SpecError, match="is a file; give a folder"):
        prepare(spec, check_services=False)


def test_submit_to_an_unreachable_dashboard_says_how_to_fix_it(tmp_path):
    data = write_items(tmp_path / "items.jsonl", 3)
    task = inference_task(data, tmp_path / "out", [{"name": "m", "url": "http://127.0.0.1:9/v1"}])
    with pytest.raises(
        ServiceError, match=r"cannot reach the Ray cluster at http://127.0.0.1:9 .*--address http://HEAD:8265"
    ):
        rayeval.submit(task, address="http://127.0.0.1:9")


def test_a_task_whose_items_all_failed_is_failed_and_says_so(ray_cluster, stub_server, tmp_path):
    from click.testing import CliRunner

    from rayeval.cli import main

    server = stub_server()
    server.set_faults(rate=1.0, kinds=["500"])
    task = tmp_path / "task.json"
    task.write_text(
        json.dumps(
            stub_task(tmp_path, server, 20, name="all-failed", parameters={"MAX_RETRY_PER_QUERY": 0}, output="out")
        )
    )
    result = CliRunner().invoke(main, ["run", str(task), "--quiet"])
    assert result.exit_code == 1, result.output
    assert "failed: 20 of its 20 items failed (100%), none of them succeeded" in result.output
    assert "numeric_match" in result.output  # the summary is printed before the error
    (record,) = [r for r in rayeval.list_tasks(output=str(tmp_path / "out")) if r["name"] == "all-failed"]
    assert record["state"] == "failed" and "20 of its 20 items failed" in record["error"]
    assert rayeval.TaskHandle(record["task_id"], str(tmp_path / "out")).items().count_rows() == 20  # kept


def test_max_error_rate_sets_how_many_failed_items_fail_the_task(ray_cluster, stub_server, tmp_path):
    server = stub_server()
    server.set_faults(rate=0.3, kinds=["500"], seed=5)
    params = {"MAX_RETRY_PER_QUERY": 0}
    lenient = rayeval.run(stub_task(tmp_path, server, 40, name="lenient", parameters=params))
    record = lenient.status()
    errors = record["progress"]["m"]["q"]["errors"]
    assert record["state"] == "succeeded" and 0 < errors < 40  # unset: only all failed fails the task
    strict = stub_task(tmp_path, server, 40, name="strict", parameters=params, max_error_rate=0.05)
    with pytest.raises(TooManyErrors, match="more than max_error_rate 0.05") as e:
        rayeval.run(strict)
    assert e.value.record["state"] == "failed"
