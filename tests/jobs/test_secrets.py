"""Credentials never reach what rayeval stores, shows or forwards, even from a service that echoes them:
answers and errors are masked against every credential of the task before they are cut, stored or put in
a judge prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner

import rayeval
from rayeval.cli import main
from tests.support.tasks import write_items

N = 60
MODEL_KEY = "sk-SECRETmodel0123456789"
JUDGE_KEY = "sk-SECRETjudge9876543210"
PROMPT = "Question: {query}\nReference: {reference}\nAnswer: {prediction}\nReply 'Score: 1' if the answer is right."


def _leaks(text: str) -> list[str]:
    """What of either key shows in `text`: the key, or its first 8 characters (a cut through it)."""
    return [k for key in (MODEL_KEY, JUDGE_KEY) for k in (key, key[:8]) if k in text]


def test_an_echoing_service_leaks_no_credential_anywhere(ray_cluster, stub_server, tmp_path, monkeypatch):
    model = stub_server(api_key=MODEL_KEY, echo_auth=True)
    model.set_faults(rate=0.2, kinds=["500"], seed=3)
    judge = stub_server(api_key=JUDGE_KEY, echo_auth=True, responder=lambda b: "Score: 1")
    monkeypatch.setenv("RAYEVAL_TEST_MODEL_KEY", f"Bearer {MODEL_KEY}")
    monkeypatch.setenv("RAYEVAL_TEST_JUDGE_KEY", f"Bearer {JUDGE_KEY}")
    data = write_items(tmp_path / "items.jsonl", N)
    task = {
        "name": "secrets",
        "mode": "inference_and_evaluation",
        "output": str(tmp_path / "out"),
        "models": [
            {
                "name": "m",
                "url": model.url,
                "model": "stub-model",
                "auth_header_value": "${env:RAYEVAL_TEST_MODEL_KEY}",
            }
        ],
        "judges": [
            {
                "name": "referee",
                "url": judge.url,
                "model": "stub-model",
                "auth_header_value": "${env:RAYEVAL_TEST_JUDGE_KEY}",
            }
        ],
        "parameters": {"MAX_CONCURRENCY": 4, "MAX_RETRY_PER_QUERY": 0},
        "reuse": False,  # every answer from the echoing services, none from earlier tasks
        "evaluation_sets": [
            {
                "name": "q",
                "path": str(data),
                "columns": {"id": "id", "query": "query", "reference": "reference"},
                "metrics": [
                    {
                        "name": "judged",
                        "judge": {
                            "model": "referee",
                            "prompt": PROMPT,
                            "parser": {"kind": "regex", "pattern": r"Score: ([01])"},
                        },
                    },
                    "numeric_match",
                ],
            }
        ],
    }
    handle = rayeval.run(task)
    record = handle.status()
    assert record["state"] == "succeeded"
    rows = handle.items().to_table().to_pylist()
    failed = [r for r in rows if r["error"]]
    answered = [r for r in rows if not r["error"]]
    assert failed and answered  # both paths were taken: echoed errors and echoed answers
    assert all("Authorization: ***" in r["error"] for r in failed), failed[0]["error"]
    assert all("(you sent Authorization: ***)" in r["prediction"] for r in answered)

    texts = {"rows": json.dumps(rows, default=str)}
    out = Path(task["output"]) / handle.task_id
    for path in out.rglob("*"):
        if path.is_file():
            texts[str(path)] = (
                json.dumps(pq.read_table(path).to_pylist(), default=str)
                if path.suffix == ".parquet"
                else path.read_text(errors="replace")
            )
    runner = CliRunner()
    report = tmp_path / "report.html"
    for args in (
        ["logs", handle.task_id],
        ["status", handle.task_id, "--json"],
        ["results", handle.task_id],
        ["item", handle.task_id, answered[0]["item_id"]],
        ["item", handle.task_id, failed[0]["item_id"]],
        ["report", handle.task_id, "--out", str(report)],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        texts[" ".join(args)] = result.output
    texts["report.html"] = report.read_text()
    # What the judge was sent: the model's echoed answers, masked before they went into its prompts.
    texts["judge prompts"] = json.dumps(judge.received)
    assert judge.received and "(you sent Authorization: ***)" in texts["judge prompts"]
    leaks = {where: found for where, text in texts.items() if (found := _leaks(text))}
    assert leaks == {}
