"""Tags isolate tasks between teams: a caller presenting tags sees and acts on only the tasks that carry
one of them, in the coordinator itself, through the CLI (--tags, RAYEVAL_TAGS) and the Python API;
results are not reused across that line either."""

from __future__ import annotations

import json

import pytest
import ray
from click.testing import CliRunner

import rayeval
from rayeval.actors.coordinator import get_coordinator
from rayeval.cli import main
from rayeval.errors import TaskNotFoundError
from tests.support.tasks import gsm8k_task


def _task(tmp_path, gsm8k_predictions, name, tags):
    return gsm8k_task(gsm8k_predictions, tmp_path / "out", name=name, limit=30, tags=tags, reuse=True)


def test_a_caller_sees_and_acts_only_on_tasks_carrying_its_tags(ray_cluster, gsm8k_predictions, tmp_path):
    a = rayeval.run(_task(tmp_path, gsm8k_predictions, "tagged-a", ["team-a"]))
    b = rayeval.run(_task(tmp_path, gsm8k_predictions, "tagged-b", ["team-b", "nightly"]))
    coordinator = get_coordinator()

    # The coordinator enforces it, whatever the client.
    assert ray.get(coordinator.get.remote(a.task_id, ["team-b"])) is None
    assert ray.get(coordinator.get.remote("tagged-a", ["team-b"])) is None
    assert ray.get(coordinator.get.remote(b.task_id, ["nightly"]))["task_id"] == b.task_id
    listed = [r["task_id"] for r in ray.get(coordinator.list_tasks.remote(["team-b"]))]
    assert b.task_id in listed and a.task_id not in listed
    assert ray.get(coordinator.request_stop.remote(a.task_id, ["team-b"])) is None
    assert ray.get(coordinator.forget.remote(a.task_id, ["team-b"])) is False
    assert ray.get(coordinator.get.remote(a.task_id))["task_id"] == a.task_id  # still there, untouched

    # The Python API.
    with pytest.raises(TaskNotFoundError):
        rayeval.stop(a.task_id, tags=["team-b"])
    with pytest.raises(TaskNotFoundError):
        rayeval.restart(a.task_id, tags=["team-b"])
    with pytest.raises(TaskNotFoundError):
        rayeval.copy_spec(a.task_id, tags=["team-b"])
    with pytest.raises(TaskNotFoundError):
        rayeval.delete(a.task_id, tags=["team-b"])
    assert [r["task_id"] for r in rayeval.list_tasks(tags=["team-a"]) if r["name"].startswith("tagged-")] == [a.task_id]

    # The CLI, with --tags and with RAYEVAL_TAGS.
    runner = CliRunner()
    seen = json.loads(runner.invoke(main, ["--tags", "team-b", "list", "--json"]).output)
    assert b.task_id in {r["task_id"] for r in seen} and a.task_id not in {r["task_id"] for r in seen}
    for command in (["status", a.task_id], ["results", a.task_id], ["logs", a.task_id], ["copy", a.task_id],
                    ["stop", a.task_id], ["restart", a.task_id], ["delete", a.task_id, "--yes"]):  # fmt: skip
        result = runner.invoke(main, command, env={"RAYEVAL_TAGS": "team-b"})
        assert result.exit_code != 0, (command, result.output)
        assert "no task" in result.output and "visible to the tags you present" in result.output, result.output
        assert a.task_id not in result.output.replace(f"'{a.task_id}'", "")  # nothing about it but the name given
    assert (tmp_path / "out" / a.task_id / "results").is_dir()  # nothing was deleted
    assert ray.get(coordinator.get.remote(a.task_id))["state"] == "succeeded"

    shown = runner.invoke(main, ["--tags", "team-a,other", "status", a.task_id])
    assert shown.exit_code == 0 and "succeeded" in shown.output
    gone = runner.invoke(main, ["--tags", "team-a", "delete", a.task_id, "--yes"])
    assert gone.exit_code == 0, gone.output
    assert not (tmp_path / "out" / a.task_id).exists()


def test_results_are_not_reused_from_tasks_of_other_tags(ray_cluster, gsm8k_predictions, tmp_path):
    def task(name, tags):
        spec = _task(tmp_path, gsm8k_predictions, name, tags)
        spec["evaluation_sets"][0]["name"] = "gsm8k-isolated"  # no other test's results for this set
        return spec

    first = rayeval.run(task("iso-a", ["iso-team-a"]))
    other = rayeval.run(task("iso-b", ["iso-team-b"]))
    assert other.status()["reused"] == {"total": 0, "sources": {}}  # team-a's results are not team-b's
    same = rayeval.run(task("iso-a2", ["iso-team-a", "x"]))
    assert same.status()["reused"] == {"total": 30, "sources": {first.task_id: 30}}
    # An untagged task (anyone may read it) takes nothing from tagged tasks, even its caller's own team's.
    untagged = rayeval.run(task("iso-c", []), tags=["iso-team-b"])
    assert untagged.status()["reused"] == {"total": 0, "sources": {}}
    # The caller's tags bound what a task may take: team-b presenting a task tagged team-a takes nothing.
    hidden = rayeval.run(task("iso-d", ["iso-team-a"]), tags=["iso-team-b"])
    assert hidden.status()["reused"] == {"total": 0, "sources": {}}
