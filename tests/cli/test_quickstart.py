"""The quick start's main job as a new user sees it: `rayeval run examples/quickstart.yaml` in a process of
its own (its own local Ray cluster, SmolLM2 hosted on Serve + vLLM), with the set cut to a few questions.
The terminal shows rayeval's lines only: no JSON log line, no raylet warning, no Serve option dump; the
summary holds the real model's score."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, SHARED_DATA, free_port

pytestmark = pytest.mark.slow
OURS = ("rayeval: ", "[", "model ", "task ", "reused ")


def test_the_quick_start_prints_rayevals_lines_and_a_real_models_score(tmp_path, rayeval_home):
    if not (SHARED_DATA / "gsm8k" / "test.jsonl").is_file():
        pytest.skip(f"shared GSM8K data not found under {SHARED_DATA}")
    task = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text(encoding="utf-8"))
    assert task["models"][0]["builtin"] == "smollm2-135m-instruct"  # the real model, not a random one
    (gsm8k,) = task["evaluation_sets"]
    gsm8k["path"] = str((REPO / "examples" / gsm8k["path"]).resolve())
    gsm8k["limit"] = 12  # the same path, shorter: a few questions, short answers
    task["parameters"]["MAX_TOKENS"] = 48
    task["output"] = str(tmp_path / "results")
    (tmp_path / "quickstart.yaml").write_text(yaml.safe_dump(task))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAYEVAL_HOME=str(tmp_path / "home"), RAYEVAL_SERVE_PORT=str(free_port()))
    # A home of its own (its index, its logs), but the session's converted models: the weights are converted
    # once a session (tests/serve_apps/test_smollm2.py tests the conversion itself).
    (Path(rayeval_home) / "models").mkdir(parents=True, exist_ok=True)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "models").symlink_to(Path(rayeval_home) / "models", target_is_directory=True)
    rayeval_cli = str(Path(sys.executable).parent / "rayeval")
    run = subprocess.run(
        [rayeval_cli, "run", str(tmp_path / "quickstart.yaml")], env=env, capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert [line for line in lines if not line.startswith(OURS)] == []
    assert not [line for line in lines if "{" in line and '"levelname"' in line]  # no JSON log line
    assert not [line for line in lines if "(raylet)" in line or "Deployment Options" in line]
    assert any(line.startswith("model smollm2-135m: running: healthy after") for line in lines)
    header, rule, row = run.stdout.splitlines()[:3]
    assert header.split() == ["model", "eval_set", "metric", "value", "items", "scored", "errors"]
    name, eval_set, metric, value, items, scored, errors = row.split()
    assert (name, eval_set, metric, items, scored, errors) == (
        "smollm2-135m",
        "gsm8k",
        "numeric_match",
        "12",
        "12",
        "0",
    )
    assert 0.0 <= float(value) <= 1.0
    (log,) = (tmp_path / "home" / "logs").glob("run-*.log")
    assert "Deployment Options" in log.read_text()  # Serve's own lines went to the run's log file
