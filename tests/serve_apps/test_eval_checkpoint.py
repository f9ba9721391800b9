"""Checkpoint quick evaluation: a checkpoint folder hosted on Ray Serve with vLLM (CPU here), evaluated on
built-in sets with their default metrics, the deployment taken down at the end."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from ray import serve

from rayeval.api import checkpoint_task
from rayeval.cli import main
from rayeval.errors import SpecError
from rayeval.serve_apps.tiny_model import tiny_model_dir
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.slow


def test_the_task_it_builds():
    spec = checkpoint_task("/models/My Model_v2/", ["gsm8k", "humaneval"], data={"gsm8k": "/d/gsm8k"}, limit=3)
    assert spec.name == "eval-My-Model_v2" and spec.models[0].path == "/models/My Model_v2"
    assert spec.parameters.do_sample is False and spec.tags == ["checkpoint"]
    assert [(s.builtin, s.path, s.limit, [m.name for m in s.metrics]) for s in spec.evaluation_sets] == [
        ("gsm8k", "/d/gsm8k", 3, ["numeric_match"]),
        ("humaneval", None, 3, ["code_pass"]),
    ]
    with pytest.raises(SpecError, match="unknown built-in set 'nope'"):
        checkpoint_task("/m", ["nope"])
    with pytest.raises(SpecError, match="data is given for sets that are not evaluated: mmlu"):
        checkpoint_task("/m", ["gsm8k"], data={"mmlu": "/d"})


def test_eval_checkpoint_hosts_evaluates_and_takes_down(ray_cluster, tmp_path):
    checkpoint = tiny_model_dir()
    result = CliRunner().invoke(
        main,
        ["eval-checkpoint", str(checkpoint), "--sets", "gsm8k,humaneval", "--data", f"gsm8k={SHARED_DATA / 'gsm8k'}",
         "--limit", "4", "--max-model-len", "512", "--max-tokens", "16", "--output", str(tmp_path / "out"),
         "--json", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # the JSON summary ends stdout (the session's cluster also forwards the replicas' logs there)
    rows = json.loads(result.stdout[result.stdout.rindex("[\n  {") :])
    by_set = {(r["eval_set"], r["metric"]): r for r in rows}
    assert by_set[("gsm8k", "numeric_match")]["items"] == 4 and by_set[("humaneval", "code_pass")]["items"] == 4
    assert all(r["errors"] == 0 for r in rows)  # every answer scored (random weights: wrong, but scored)
    assert not [a for a in serve.status().applications if "eval-" in a or checkpoint.name in a]
