"""BFCL's AST match: a function-calling answer is decoded and checked by bfcl-eval's own checker.

The answer is decoded as BFCL's prompting mode decodes it (`default_decode_ast_prompting`: the
text stripped of backticks, wrapped in brackets, parsed as a Python list of calls, keyword
arguments only), then judged by `bfcl_eval.eval_checker.ast_eval.ast_checker` against the item's
function documents and possible answers. The checker is bfcl-eval's code, loaded from the
installed package (`pip install --no-deps bfcl-eval`) without the model handlers its module
imports (they need every vendor SDK): their only use in the checker is to know whether a model
service renamed `a.b` to `a_b`, which prompting mode never does.

Decoding differs from BFCL's in one way: BFCL evaluates arithmetic in an argument with Python's
`eval`; rayeval computes it only over literals (`2**10`, `'a' + 'b'`) and fails the item's
decoding otherwise, so model output is never executed here.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import operator
import sys
import threading
import types
from pathlib import Path
from typing import Any

from rayeval.errors import MetricError
from rayeval.metrics._base import Aggregator, ItemScore, MeanAggregator, Metric
from rayeval.metrics._registry import register_metric
from rayeval.sets.builtin.bfcl import CATEGORIES as BFCL_CATEGORIES

__all__ = ["BfclAst", "decode_calls", "is_call_list"]

#: The categories' names, and each file stem (BFCL v4 and v3) -> its category, as the set defines them.
CATEGORIES = tuple(BFCL_CATEGORIES)
_STEMS = {stem: category for category, stems in BFCL_CATEGORIES.items() for stem in stems}
#: The model name the checker is given (prompting mode: function names are kept as written).
_PROMPTING = "rayeval-prompting"
_INSTALL = "pip install --no-deps bfcl-eval==2026.3.23"


# ----------------------------------------------------------------------------- decoding


def _call(node: ast.AST) -> dict[str, Any]:
    if not isinstance(node, ast.Call):
        raise ValueError(f"not a function call: {ast.unparse(node)[:80]}")
    parts = []
    func = node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return {".".join(reversed(parts)): {kw.arg: _value(kw.value) for kw in node.keywords}}


_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _literal(node: ast.AST) -> Any:
    """The value of an arithmetic expression over literals (what BFCL's `eval` gives for those)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [_literal(e) for e in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _literal(node.left), _literal(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        if isinstance(node.op, ast.Mult) and any(isinstance(v, (str, list, tuple)) for v in (left, right)):
            if max(len(v) if isinstance(v, (str, list, tuple)) else abs(v) for v in (left, right)) > 10_000:
                raise ValueError("repetition too large")
        return _BINARY[type(node.op)](left, right)
    raise ValueError(f"not an expression over literals: {ast.unparse(node)[:80]}")


def _value(node: ast.AST) -> Any:
    """An argument's value, as bfcl-eval's `resolve_ast_by_type` gives it."""
    if isinstance(node, ast.Constant):
        return "..." if node.value is Ellipsis else node.value
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.operand, ast.Constant):
            raise ValueError(f"unsupported operand: {ast.unparse(node)[:80]}")
        return -node.operand.value  # BFCL negates whatever the operator (`+5` reads as -5)
    if isinstance(node, ast.List):
        return [_value(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("dictionary unpacking is not a value")
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
    if isinstance(node, ast.BinOp):
        return _literal(node)
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        return ast.unparse(node) if not node.keywords else _call(node)
    if isinstance(node, ast.Tuple):
        return tuple(_value(e) for e in node.elts)
    if isinstance(node, ast.Subscript):
        return f"{ast.unparse(node.value)}[{ast.unparse(node.slice)}]"
    raise ValueError(f"unsupported AST type: {type(node).__name__}")


def decode_calls(text: str) -> list[dict[str, Any]]:
    """Decode a prompting-mode answer `[func(a=1), mod.f(b='x')]` into `[{name: {arg: value}}, ...]`.

    Raises:
        ValueError, SyntaxError: the text is not a list of calls.
    """
    text = text.strip("`\n ")
    if not text.startswith("["):
        text = "[" + text
    if not text.endswith("]"):
        text = text + "]"
    body = ast.parse(text.strip().strip("'"), mode="eval").body
    if isinstance(body, ast.Call):
        return [_call(body)]
    if not isinstance(body, (ast.List, ast.Tuple, ast.Set)):
        raise ValueError(f"not a list of calls: {text[:80]}")
    return [_call(e) for e in body.elts]


def is_call_list(decoded: Any) -> bool:
    """bfcl-eval's `is_function_calling_format_output`: a list of {name: {arg: value}}."""
    return isinstance(decoded, list) and all(
        isinstance(c, dict) and len(c) == 1 and isinstance(next(iter(c.values())), dict) for c in decoded
    )


# ----------------------------------------------------------------------------- bfcl-eval's checker


class _PromptingModels(dict):
    """Stands in for bfcl-eval's MODEL_CONFIG_MAPPING: every model keeps dotted function names."""

    def __missing__(self, key: str) -> Any:
        return types.SimpleNamespace(underscore_to_dot=False)


#: Loading the checker swaps a module in sys.modules for a moment: one thread at a time (a program may
#: check answers from a thread pool).
_LOADING = threading.Lock()


def _checker() -> Any:
    """bfcl-eval's `ast_checker`, from a private copy of its module (see the module's docstring)."""
    with _LOADING:
        return _load_checker()


@functools.cache
def _load_checker() -> Any:
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise MetricError(f"metric 'bfcl_ast' uses bfcl-eval's AST checker; install it: {_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "eval_checker" / "ast_eval" / "ast_checker.py"
    config = "bfcl_eval.constants.model_config"
    stub = None
    if config not in sys.modules:  # the real one imports every model handler
        stub = sys.modules[config] = types.ModuleType(config)
        stub.MODEL_CONFIG_MAPPING = _PromptingModels()  # type: ignore[attr-defined]
    try:
        module_spec = importlib.util.spec_from_file_location("rayeval_bfcl_ast_checker", path)
        module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
        module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    except (ImportError, OSError) as e:
        raise MetricError(f"metric 'bfcl_ast' could not load bfcl-eval's AST checker ({e}); {_INSTALL}") from None
    finally:
        if stub is not None and sys.modules.get(config) is stub:
            del sys.modules[config]
    module.MODEL_CONFIG_MAPPING = _PromptingModels()
    from bfcl_eval.constants.enums import Language

    return functools.partial(module.ast_checker, language=Language.PYTHON, model_name=_PROMPTING)


def check(functions: list[dict[str, Any]], answer: str, possible: list[Any], category: str) -> dict[str, Any]:
    """BFCL's verdict on one answer: {"valid", "error", "error_type"} (plus "decoded" when it decoded)."""
    try:
        decoded = decode_calls(answer)
    except Exception as e:  # BFCL: any decoding failure is this verdict
        return {
            "valid": False,
            "error": [f"Invalid syntax. Failed to decode AST. {e}"],
            "error_type": "ast_decoder:decoder_failed",
        }
    if not is_call_list(decoded):
        return {
            "valid": False,
            "error": ["Did not output in the specified format."],
            "error_type": "ast_decoder:decoder_wrong_output_format",
        }
    verdict = _checker()(functions, decoded, possible, test_category=category)
    return {**verdict, "decoded": decoded}


def category_of(item_id: str) -> str | None:
    """An item's BFCL category from its id (BFCL's own convention: `<category>_<n>`)."""
    return _STEMS.get(item_id.rsplit("_", 1)[0])


# ----------------------------------------------------------------------------- metric


class CategoryMeanAggregator(Aggregator):
    """BFCL's overall AST accuracy: the unweighted mean of the categories' accuracies."""

    def __init__(self) -> None:
        super().__init__()
        self._sums: dict[str, list[float]] = {}

    def add(self, score: float | None, details: dict[str, Any] | None) -> None:
        """Adds one item's verdict (its category is in `details`)."""
        if score is None:
            return
        category = (details or {}).get("category", "?")
        total = self._sums.setdefault(category, [0.0, 0])
        total[0] += float(score)
        total[1] += 1
        self.count += 1

    def value(self) -> float | None:
        """The mean over categories of each category's mean, or None when empty."""
        means = [s / n for s, n in self._sums.values() if n]
        return sum(means) / len(means) if means else None


@register_metric
class BfclAst(Metric):
    """1 when bfcl-eval's AST checker accepts the answer. Outputs `bfcl_ast` (BFCL's overall: the
    unweighted mean of the categories present) and `bfcl_ast_<category>` per category. Items need
    the columns `functions` (JSON function documents) and `category`; the reference is the JSON
    list of possible answers (BFCL's `ground_truth`)."""

    name = "bfcl_ast"
    description = "BFCL function calling: bfcl-eval's AST match, per category and overall (unweighted over categories)"

    def outputs(self) -> list[str]:
        return [self.name] + [f"{self.name}_{c}" for c in CATEGORIES]

    def applies(self, output: str, item_id: str) -> bool:
        """A category's output counts only that category's items."""
        if output == self.name:
            return True
        return category_of(item_id) == output[len(self.name) + 1 :]

    def score(self, prediction: str, reference: str, item: dict[str, Any]) -> ItemScore:
        none: dict[str, float | None] = dict.fromkeys(self.outputs())
        category = item.get("category") or category_of(str(item.get("item_id", "")))
        if category not in CATEGORIES or not item.get("functions") or not reference:
            return ItemScore(none, {"reason": "the item needs `functions`, a BFCL `category` and possible answers"})
        verdict = check(json.loads(item["functions"]), prediction or "", json.loads(reference), category)
        value = float(bool(verdict["valid"]))
        details: dict[str, Any] = {"category": category}
        if not verdict["valid"]:
            details["error_type"] = verdict.get("error_type")
            details["error"] = [str(e)[:300] for e in verdict.get("error", [])][:3]
        return ItemScore({**none, self.name: value, f"{self.name}_{category}": value}, details)

    def aggregator(self, output: str) -> Aggregator:
        self._check_output(output)
        return CategoryMeanAggregator() if output == self.name else MeanAggregator()
