"""Managing tasks like jobs: list with filters, copy with overrides, delete (with confirmation)."""

from __future__ import annotations

import json
import os

import yaml
from click.testing import CliRunner

import rayeval
from rayeval.cli import main
from tests.support.tasks import gsm8k_task


def _task(tmp_path, gsm8k_predictions, name, tags):
    return gsm8k_task(gsm8k_predictions, tmp_path / "out", name=name, limit=40, tags=tags, remarks="a small check")


def test_list_copy_and_delete(ray_cluster, gsm8k_predictions, tmp_path):
    first = rayeval.run(_task(tmp_path, gsm8k_predictions, "managed", ["team-a"]))
    second = rayeval.run(_task(tmp_path, gsm8k_predictions, "managed-b", ["team-b"]))
    runner = CliRunner()

    listed = json.loads(runner.invoke(main, ["list", "--tag", "team-a", "--json"]).output)
    assert [r["task_id"] for r in listed] == [first.task_id]
    assert {
        r["task_id"] for r in json.loads(runner.invoke(main, ["list", "--state", "succeeded", "--json"]).output)
    } >= {
        first.task_id,
        second.task_id,
    }
    table = runner.invoke(main, ["list", "--tag", "team-b"]).output
    assert second.task_id in table and "succeeded" in table and "100.0%" in table and "tags team-b" in table
    assert runner.invoke(main, ["list", "--tag", "nobody"]).output.strip() == "no tasks matching"

    to = tmp_path / "copy.yaml"
    result = runner.invoke(
        main,
        ["copy", first.task_id, "--name", "managed-20", "--set", "evaluation_sets.gsm8k.limit=20", "--to", str(to)],
    )
    assert result.exit_code == 0, result.output
    copied = yaml.safe_load(to.read_text())
    assert copied["name"] == "managed-20" and copied["evaluation_sets"][0]["limit"] == 20
    assert copied["tags"] == ["team-a"]
    ran = runner.invoke(main, ["copy", first.task_id, "--set", "evaluation_sets.0.limit=10", "--quiet"])
    assert ran.exit_code == 0, ran.output
    copy_row = json.loads(runner.invoke(main, ["list", "--json"]).output)[0]
    assert copy_row["name"] == "managed-copy" and copy_row["progress"]["a"]["gsm8k"]["total"] == 10
    bad = runner.invoke(main, ["copy", first.task_id, "--set", "models.nobody.url=http://x"])
    assert bad.exit_code == 2 and "no entry 'nobody'" in bad.output

    folder = tmp_path / "out" / first.task_id
    assert folder.exists()
    refused = runner.invoke(main, ["delete", first.task_id], input="n\n")
    assert refused.exit_code != 0 and folder.exists()
    gone = runner.invoke(main, ["delete", first.task_id, "--yes"])
    assert gone.exit_code == 0 and gone.output.strip() == f"deleted task {first.task_id}"
    assert not folder.exists()  # no files left behind
    assert not os.path.exists(os.path.join(os.environ["RAYEVAL_HOME"], "tasks", first.task_id))
    assert first.task_id not in runner.invoke(main, ["list"]).output
    missing = runner.invoke(main, ["delete", first.task_id, "--yes"])
    assert missing.exit_code == 1 and "no task with id or name" in missing.output
