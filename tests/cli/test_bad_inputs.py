"""Bad inputs through `rayeval run`: each is refused before anything runs or is written, with one
`rayeval: error:` line that names the task file, the field and what to fix, and exit status 2."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from rayeval.cli import main

ROWS = [{"id": f"i{i}", "query": f"q{i}", "answer": "a", "pred": "a"} for i in range(5)]


def _task(**over):
    task = {
        "name": "bad",
        "mode": "evaluation_only",
        "output": "out",
        "models": [{"name": "m"}],
        "evaluation_sets": [
            {
                "name": "s",
                "path": "set.jsonl",
                "columns": {"id": "id", "reference": "answer"},
                "predictions": {"m": "pred"},
                "metrics": ["exact_match"],
            }
        ],
    }
    task.update(over)
    return task


def _set(**over):
    return {**_task()["evaluation_sets"][0], **over}


CASES = {
    "not-yaml": ("name: [unclosed\n", None, "invalid YAML at line 2"),
    "key-twice": (
        yaml.safe_dump(_task(), sort_keys=False) + "output: elsewhere\n",
        None,
        "key 'output' is given twice",
    ),
    "unknown-key": (_task(colour="blue"), None, "colour"),
    "no-models": (_task(models=[]), None, "models"),
    "bad-mode": (_task(mode="quick"), None, "mode"),
    "missing-set-file": (_task(evaluation_sets=[_set(path="nope.jsonl")]), None, "evaluation_sets.0.path"),
    "set-not-utf8": (_task(), b'{"id": "i0", "query": "\xff", "answer": "a", "pred": "a"}\n', "is not UTF-8"),
    "set-bad-json-line": (_task(), b'{"id": "i0", "query": "q"\n', "line 1: invalid JSON"),
    "set-missing-column": (
        _task(evaluation_sets=[_set(columns={"id": "id", "reference": "nope"})]),
        None,
        "row has no column 'nope'",
    ),
    "duplicate-ids": (_task(), "\n".join(json.dumps({**r, "id": "same"}) for r in ROWS) + "\n", "repeats item ids"),
    "zero-concurrency": (_task(parameters={"MAX_CONCURRENCY": 0}), None, "MAX_CONCURRENCY"),
    "unknown-metric": (_task(evaluation_sets=[_set(metrics=["no_such_metric"])]), None, "no_such_metric"),
    "missing-script": (
        _task(evaluation_sets=[_set(metrics=[{"name": "exact_match", "preprocess": "nope.py"}])]),
        None,
        "evaluation_sets.0.metrics.0.preprocess",
    ),
    "script-hangs-at-import": (
        _task(
            evaluation_sets=[_set(metrics=[{"name": "exact_match", "preprocess": "hang.py", "script_timeout_s": 1}])]
        ),
        None,
        "exceeded 1 s while loading",
    ),
    "error-rate-above-one": (_task(max_error_rate=2), None, "max_error_rate"),
    "nan-weight": (_task(weights={"sets": {"s": float("nan")}}), None, "weights"),
    "unknown-judge": (
        _task(
            evaluation_sets=[
                _set(
                    metrics=[
                        {
                            "name": "j",
                            "judge": {
                                "model": "nobody",
                                "prompt": "{prediction}",
                                "parser": {"kind": "regex", "pattern": "(\\d)"},
                            },
                        }
                    ]
                )
            ]
        ),
        None,
        "nobody",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_input_is_one_line_naming_the_field(tmp_path, monkeypatch, case):
    task, rows, expected = CASES[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hang.py").write_text("while True:\n    pass\ndef preprocess(item):\n    return item\n")
    data = rows if rows is not None else "".join(json.dumps(r) + "\n" for r in ROWS)
    (tmp_path / "set.jsonl").write_bytes(data if isinstance(data, bytes) else data.encode())
    path = tmp_path / "task.yaml"
    path.write_text(task if isinstance(task, str) else yaml.safe_dump(task))
    result = CliRunner().invoke(main, ["run", str(path), "--quiet"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("rayeval: error:")]
    assert len(errors) == 1 and expected in errors[0], result.output
    assert "task.yaml" in errors[0] and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # nothing written
