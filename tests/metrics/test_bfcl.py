"""BFCL's AST match against bfcl-eval's own code: its shipped possible answers as perfect answers
and mutated ones as wrong answers, decoded by rayeval and by BFCL's decoder (taken from
bfcl-eval's source), judged by rayeval's metric and by bfcl-eval's checker imported directly."""

from __future__ import annotations

import ast
import builtins
import copy
import functools
import importlib
import importlib.util
import json
import re
import sys
import types
from collections import Counter
from pathlib import Path

import pytest

from rayeval.metrics import get_metric
from rayeval.metrics._bfcl import CategoryMeanAggregator, decode_calls
from rayeval.sets.builtin import materialize
from rayeval.sets.builtin.bfcl import bfcl_system_prompt

pytest.importorskip("bfcl_eval.constants.enums")
BFCL_ROOT = Path(importlib.util.find_spec("bfcl_eval").submodule_search_locations[0])


# ----------------------------------------------------------------------------- bfcl-eval's own code


def bfcl_decoder():
    """BFCL's `default_decode_ast_prompting`, compiled from bfcl-eval's source (its module imports
    tree-sitter and more, which its Python decoding never uses)."""
    from bfcl_eval.constants.enums import ReturnFormat

    path = BFCL_ROOT / "model_handler" / "utils.py"
    wanted = {"default_decode_ast_prompting", "ast_parse", "resolve_ast_call", "resolve_ast_by_type"}
    tree = ast.parse(path.read_text())
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    assert {n.name for n in body} == wanted
    namespace = {"ast": ast, "re": re, "builtins": builtins, "ReturnFormat": ReturnFormat}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), namespace)
    return namespace["default_decode_ast_prompting"]


@functools.cache
def bfcl_reference():
    """(decode, verdict): BFCL's decoder, and BFCL's verdict on an answer through its decoder and its
    `ast_checker`, imported the plain way with its model table stood in for (prompting mode keeps
    dotted names)."""
    name = "bfcl_eval.constants.model_config"
    stub = types.ModuleType(name)

    class Models(dict):
        def __missing__(self, key):
            return types.SimpleNamespace(underscore_to_dot=False)

    stub.MODEL_CONFIG_MAPPING = Models()
    saved = sys.modules.get(name)
    sys.modules[name] = stub
    try:
        checker = importlib.import_module("bfcl_eval.eval_checker.ast_eval.ast_checker")
    finally:
        if saved is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = saved
    from bfcl_eval.constants.enums import Language

    decode = bfcl_decoder()

    def verdict(functions, answer, possible, category):
        try:
            decoded = decode(answer)
        except Exception:
            return False
        if not isinstance(decoded, list) or not all(
            isinstance(c, dict) and len(c) == 1 and isinstance(next(iter(c.values())), dict) for c in decoded
        ):
            return False
        return checker.ast_checker(functions, decoded, possible, Language.PYTHON, category, "x")["valid"]

    return decode, verdict


@pytest.fixture(scope="module")
def bfcl():
    return bfcl_reference()


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    path = materialize("bfcl", None, None, cache=tmp_path_factory.mktemp("bfcl"))
    return [json.loads(line) for line in path.read_text().splitlines()]


# ----------------------------------------------------------------------------- answers


def concrete(value):
    """A possible-answer value as a model would write it: nested dicts hold lists of acceptable values."""
    if isinstance(value, dict):
        return {k: concrete(vs[0]) for k, vs in value.items() if "" not in vs}
    if isinstance(value, list):
        return [concrete(v) for v in value]
    return value


def perfect_calls(ground_truth, functions):
    """The first acceptable value of each parameter (the first given one where "" is acceptable too);
    optional parameters (those accepting "" that the function does not require) left out."""
    required = {f["name"]: set(f["parameters"].get("required", [])) for f in functions}
    calls = []
    for call in ground_truth:
        ((name, params),) = call.items()
        args = {}
        for k, opts in params.items():
            given = [o for o in opts if o != ""]
            if given and ("" not in opts or k in required.get(name, ())):
                args[k] = concrete(given[0])
        calls.append((name, args))
    return calls


def render(calls) -> str:
    return "[" + ", ".join(f"{n}({', '.join(f'{k}={v!r}' for k, v in a.items())})" for n, a in calls) + "]"


def _wrong(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 7
    if isinstance(value, str):
        return value + "_wrong"
    if isinstance(value, list):
        return value[:-1] if value else ["wrong"]
    if isinstance(value, dict):
        return {**value, "wrong": 1}
    return "wrong"


def mutations(calls):
    """Wrong answers (and a few that stay right, such as reordered parallel calls), by name."""
    name, args = calls[0]
    out = {}
    if args:
        first = next(iter(args))
        out["wrong_value"] = render([(name, {**args, first: _wrong(args[first])}), *calls[1:]])
        out["missing_param"] = render([(name, {k: v for k, v in args.items() if k != first}), *calls[1:]])
        out["positional"] = f"[{name}({', '.join(repr(v) for v in args.values())})]"
    out["wrong_name"] = render([(name + "_v2", args), *calls[1:]])
    out["unexpected_param"] = render([(name, {**args, "bogus_flag": True}), *calls[1:]])
    out["extra_call"] = render([*calls, calls[0]])
    out["dropped_call"] = render(calls[:-1]) if len(calls) > 1 else "[]"
    out["reordered"] = render(list(reversed(calls)))
    out["prose"] = f"You should call {name} with the values from the question."
    out["fenced"] = f"```python\n{render(calls)}\n```"
    out["bare_call"] = render(calls)[1:-1]
    out["spaced"] = f"  {render(calls)}  \n"
    out["single_quoted"] = f"'{render(calls)}'"
    return out


# ----------------------------------------------------------------------------- tests


def test_the_system_prompt_is_bfcls_default(items):
    from bfcl_eval.constants.default_prompts import (
        DEFAULT_SYSTEM_PROMPT_FORMAT,
        OUTPUT_FORMAT_MAPPING,
        PARAM_TYPE_MAPPING,
        PROMPT_STYLE_TEMPLATES,
        PROMPT_TEMPLATE_MAPPING,
    )

    assert DEFAULT_SYSTEM_PROMPT_FORMAT == (
        "ret_fmt=python&tool_call_tag=False&func_doc_fmt=json&prompt_fmt=plaintext&style=classic"
    )
    style = PROMPT_STYLE_TEMPLATES["classic"]
    for row in items[::97]:
        docs = copy.deepcopy(json.loads(row["functions"]))
        for d in docs:
            d["description"] += " Note that the provided function is in Python 3 syntax."
        expected = PROMPT_TEMPLATE_MAPPING["plaintext"].format(
            persona=style["persona"],
            task=style["task"],
            tool_call_format=style["tool_call_no_tag"].format(
                output_format=OUTPUT_FORMAT_MAPPING["python"], param_types=PARAM_TYPE_MAPPING["python"]
            ),
            multiturn_behavior=style["multiturn_behavior"],
            available_tools=style["available_tools"].format(format="json", functions=json.dumps(docs, indent=4)),
        )
        assert row["system"] == expected == bfcl_system_prompt(json.loads(row["functions"]))


def test_the_package_holds_the_four_categories(items):
    assert Counter(r["category"] for r in items) == {
        "simple": 400,
        "multiple": 200,
        "parallel": 200,
        "parallel_multiple": 200,
    }
    first = items[0]
    assert first["id"] == "simple_python_0" and "triangle" in first["query"]
    assert json.loads(first["reference"])[0]["calculate_triangle_area"]["base"] == [10]


def test_decoding_equals_bfcls_decoder(bfcl, items):
    decode, _ = bfcl
    texts = [
        m
        for r in items[::7]
        for m in mutations(perfect_calls(json.loads(r["reference"]), json.loads(r["functions"]))).values()
    ]
    texts += [
        "[f(a=-3, b=+2, c=[1, (2, 3)], d={'k': [None, True]})]",
        "[m.sub.f(x=2**10, y='a' + 'b', z=3 * 4.5, w=[1, 2] + [3])]",
        "[f(g(1), h=k(2), i=np.array(x=[1]), j=data[0], k=...)]",
        "(f(a=1), g(b=2))",
        "[f(a=lambda x: x)]",
        "[f(a={**d})]",
        "[f(a=-(1 + 2))]",
        "[]",
        "[1, 2]",
        "[f(a=x.y)]",
    ]
    agreed = 0
    for text in texts:
        try:
            theirs = decode(text)
        except Exception:
            theirs = "failed"
        try:
            ours = decode_calls(text)
        except Exception:
            ours = "failed"
        assert ours == theirs, text
        agreed += theirs != "failed"
    assert agreed > len(texts) // 2  # most of them decode


def test_perfect_answers_pass_and_verdicts_equal_bfcls_checker(bfcl, items):
    _, verdict = bfcl
    metric = get_metric("bfcl_ast")
    per_kind: dict[str, Counter] = {}
    for row in items:
        item = {**row, "item_id": row["id"]}
        possible, functions = json.loads(row["reference"]), json.loads(row["functions"])
        calls = perfect_calls(possible, functions)
        answers = {"perfect": render(calls), **mutations(calls)}
        for kind, answer in answers.items():
            score = metric.score(answer, row["reference"], item)
            expected = verdict(functions, answer, possible, row["category"])
            assert score.scores["bfcl_ast"] == float(expected), (row["id"], kind, answer, score.details)
            assert score.scores[f"bfcl_ast_{row['category']}"] == float(expected)
            assert [o for o, v in score.scores.items() if v is not None] == ["bfcl_ast", f"bfcl_ast_{row['category']}"]
            per_kind.setdefault(kind, Counter())[expected] += 1
    assert per_kind["perfect"] == {True: 1000}
    wrong = ("wrong_value", "missing_param", "wrong_name", "unexpected_param", "prose", "fenced", "extra_call")
    for kind in (*wrong, "single_quoted"):  # BFCL strips quotes only after adding brackets: these fail
        assert per_kind[kind][True] <= per_kind[kind][False] // 20, (kind, per_kind[kind])  # nearly all wrong
    for kind in ("bare_call", "spaced"):
        assert per_kind[kind] == {True: 1000}, kind
    # Parallel calls in another order stay right (but where BFCL's greedy matching of calls fails).
    assert per_kind["reordered"][False] <= 2, per_kind["reordered"]


def test_overall_is_the_unweighted_mean_of_categories():
    agg = CategoryMeanAggregator()
    for category, scores in {"simple": [1, 1, 1, 0], "parallel": [0, 1], "multiple": [None, 0]}.items():
        for s in scores:
            agg.add(s, {"category": category})
    assert agg.count == 7
    assert agg.value() == pytest.approx((0.75 + 0.5 + 0.0) / 3)
    metric = get_metric("bfcl_ast")
    assert metric.applies("bfcl_ast_simple", "simple_python_3") and metric.applies("bfcl_ast", "multiple_1")
    assert not metric.applies("bfcl_ast_parallel", "parallel_multiple_4")
    assert metric.applies("bfcl_ast_parallel_multiple", "parallel_multiple_4")


def test_the_checker_loads_once_when_threads_ask_for_it_at_the_same_time():
    """A program scoring answers from a thread pool (examples/custom/bfcl_simple_eval.py) loads the checker
    from several threads at once; each load swaps a module in sys.modules for a moment."""
    import subprocess
    import sys

    code = (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from rayeval.metrics._bfcl import _checker\n"
        "with ThreadPoolExecutor(16) as pool:\n"
        "    checkers = list(pool.map(lambda _: _checker(), range(64)))\n"
        "assert len({id(c) for c in checkers}) == 1\n"
        "print('one checker')\n"
    )
    for _ in range(3):  # fresh processes: nothing loaded yet
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "one checker" in result.stdout, result.stderr[-2000:]
