"""BFCL (Berkeley Function Calling Leaderboard): the four single-turn AST categories in Python.

Each item is one BFCL question with its function documents. The model is asked in BFCL's
prompting mode: BFCL's default system prompt (its text, with the functions as JSON and BFCL's
"Python 3 syntax" hint added to each description) as the item's system message, the question as
the user message; the answer is expected as `[func(a=1, b='x'), ...]` and is scored by metric
`bfcl_ast` with bfcl-eval's own AST checker.

Data: BFCL's data folder (`BFCL_v4_<category>.json` or `BFCL_v3_<category>.json` beside
`possible_answer/` with the same file names, as in the `bfcl-eval` package and the gorilla
repository), or the `bfcl-eval` package itself.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rayeval.errors import DatasetError
from rayeval.sets.builtin.registry import BuiltinSet, json_lines, register_set

__all__ = ["BFCL", "CATEGORIES", "bfcl_system_prompt"]

#: The categories, and their file stems in BFCL v4 and v3.
CATEGORIES = {
    "simple": ("simple_python", "simple"),
    "multiple": ("multiple", "multiple"),
    "parallel": ("parallel", "parallel"),
    "parallel_multiple": ("parallel_multiple", "parallel_multiple"),
}

# BFCL's default system prompt (bfcl_eval.constants.default_prompts, format
# "ret_fmt=python&tool_call_tag=False&func_doc_fmt=json&prompt_fmt=plaintext&style=classic"),
# assembled as bfcl_eval.model_handler.utils.formulate_system_prompt does.
_PERSONA = "You are an expert in composing functions."
_TASK = (
    "You are given a question and a set of possible functions. Based on the question, you will need to make one "
    "or more function/tool calls to achieve the purpose. If none of the functions can be used, point it out. If the "
    "given question lacks the parameters required by the function, also point it out."
)
_FORMAT = (
    "You should only return the function calls in your response.\n\nIf you decide to invoke any of the function(s), "
    "you MUST put it in the format of [func_name1(params_name1=params_value1, params_name2=params_value2...), "
    "func_name2(params)].  You SHOULD NOT include any other text in the response."
)
_MULTITURN = (
    "At each turn, you should try your best to complete the tasks requested by the user within the current turn. "
    "Continue to output functions to call until you have fulfilled the user's request to the best of your ability. "
    "Once you have no more functions to call, the system will consider the current turn complete and proceed to the "
    "next turn or task."
)
_TOOLS = "Here is a list of functions in json format that you can invoke.\n{functions}\n"
_PYTHON_HINT = " Note that the provided function is in Python 3 syntax."


def bfcl_system_prompt(functions: list[dict[str, Any]]) -> str:
    """BFCL's default prompting-mode system prompt for these function documents (Python hint added)."""
    docs = copy.deepcopy(functions)
    for doc in docs:
        doc["description"] = doc.get("description", "") + _PYTHON_HINT
    tools = _TOOLS.format(functions=json.dumps(docs, indent=4))
    return f"{_PERSONA}{_TASK}\n\n{_FORMAT}\n\n{_MULTITURN}\n\n{tools}"


@register_set
class BFCL(BuiltinSet):
    name = "bfcl"
    description = (
        "Berkeley Function Calling Leaderboard, single-turn Python: simple, multiple, parallel, parallel_multiple "
        "(1,000 items); AST match per category and overall"
    )
    folder = "bfcl"
    layout = (
        "BFCL_v4_<category>.json (or BFCL_v3_<category>.json) for simple_python (v3: simple), multiple, parallel, "
        "parallel_multiple, and possible_answer/ with the same file names (JSON lines: id, question, function / "
        "id, ground_truth)"
    )
    metrics = ["bfcl_ast"]
    prompt = (
        "BFCL prompting mode: BFCL's default system prompt with the functions as JSON, the question as the user "
        "message; answers like [func(a=1), ...]"
    )
    package = "bfcl-eval"
    system_column = "system"

    @staticmethod
    def _pairs(folder: Path) -> dict[str, tuple[Path, Path]] | None:
        """category -> (questions, possible answers), all four or None."""
        pairs = {}
        for category, stems in CATEGORIES.items():
            for version, stem in (("v4", stems[0]), ("v3", stems[1])):
                questions = folder / f"BFCL_{version}_{stem}.json"
                answers = folder / "possible_answer" / questions.name
                if questions.exists() and answers.exists():
                    pairs[category] = (questions, answers)
                    break
            else:
                return None
        return pairs

    def source_files(self, folder: Path) -> list[Path]:
        pairs = self._pairs(folder)
        if pairs is None:
            raise DatasetError(f"built-in set 'bfcl': {folder} lacks some of the files it needs: {self.layout}")
        return [p for pair in pairs.values() for p in pair]

    def read_folder(self, folder: Path, shots: int) -> Iterator[dict[str, Any]]:
        self.source_files(folder)
        for category, (questions, answers) in (self._pairs(folder) or {}).items():
            truth = {r["id"]: r["ground_truth"] for r in json_lines(answers)}
            for r in json_lines(questions):
                if r["id"] not in truth:
                    raise DatasetError(f"{answers} has no possible answer for {r['id']}")
                yield self._row(category, r, truth[r["id"]])

    @staticmethod
    def _row(category: str, r: dict[str, Any], ground_truth: list[Any]) -> dict[str, Any]:
        turn = r["question"][0]
        user = "\n\n".join(m["content"] for m in turn if m["role"] == "user")
        given = "\n\n".join(m["content"] for m in turn if m["role"] == "system")
        system = bfcl_system_prompt(r["function"]) + (f"\n\n{given}" if given else "")
        return {
            "id": r["id"],
            "query": user,
            "reference": json.dumps(ground_truth, ensure_ascii=False),
            "system": system,
            "category": category,
            "functions": json.dumps(r["function"], ensure_ascii=False),
        }

    @staticmethod
    def _package_data() -> Path | None:
        spec = importlib.util.find_spec("bfcl_eval")  # located, not imported (its imports are heavy)
        if spec is None or not spec.submodule_search_locations:
            return None
        data = Path(next(iter(spec.submodule_search_locations))) / "data"
        return data if data.is_dir() else None

    def package_files(self) -> list[Path] | None:
        data = self._package_data()
        if data is None or self._pairs(data) is None:
            return None
        return self.source_files(data)

    def read_package(self, shots: int) -> Iterator[dict[str, Any]]:
        data = self._package_data()
        assert data is not None
        return self.read_folder(data, shots)
