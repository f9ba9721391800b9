"""Task runner edge cases: failures of the whole pipeline, bad output locations, unreachable clusters."""

from __future__ import annotations

import pytest

import rayeval
from rayeval.errors import ServiceError, SpecError, TaskFailedError
from rayeval.jobs.prepare import prepare
from rayeval.jobs.runner import run_prepared
from rayeval.spec import parse_task
from tests.support.tasks import inference_task, write_items


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
