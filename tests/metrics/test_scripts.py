"""Pre/post-processing scripts: loaded and checked up front, failing per item when they raise."""

from __future__ import annotations

import pytest

from rayeval.errors import MetricError
from rayeval.metrics import load_script, run_script


def _write(tmp_path, name, code):
    path = tmp_path / name
    path.write_text(code, encoding="utf-8")
    return path


def test_scripts_transform_items_and_judge_outputs(tmp_path):
    pre = load_script(
        _write(
            tmp_path,
            "pre.py",
            "def preprocess(item):\n    return {**item, 'prediction': item['prediction'].strip().lower()}\n",
        ),
        "preprocess",
    )
    result = run_script(pre, "preprocess", {"query": "q", "prediction": "  YES "})
    assert result.error is None and result.value == {"query": "q", "prediction": "yes"}
    post = load_script(
        _write(
            tmp_path,
            "post.py",
            "def postprocess(judge_output, item):\n    return {'score': len(judge_output) / 10, 'n': 1}\n",
        ),
        "postprocess",
    )
    assert run_script(post, "postprocess", "12345", {}).value == {"score": 0.5, "n": 1}


def test_a_script_that_raises_gives_an_item_error_with_its_own_frames(tmp_path):
    path = _write(
        tmp_path,
        "boom.py",
        "def helper(item):\n    return item['missing']\n\ndef preprocess(item):\n    return helper(item)\n",
    )
    result = run_script(load_script(path, "preprocess"), "preprocess", {"query": "q"})
    assert result.value is None
    assert result.error.startswith("preprocess script 'boom.py' raised KeyError: 'missing'")
    assert "boom.py:5 in preprocess: return helper(item)" in result.error
    assert "boom.py:2 in helper: return item['missing']" in result.error


def test_wrong_return_types_are_item_errors(tmp_path):
    pre = load_script(_write(tmp_path, "p.py", "def preprocess(item):\n    return None\n"), "preprocess")
    assert "expected a dict" in run_script(pre, "preprocess", {}).error
    post = load_script(_write(tmp_path, "q.py", "def postprocess(out, item):\n    return 'high'\n"), "postprocess")
    assert "expected a number" in run_script(post, "postprocess", "x", {}).error


@pytest.mark.parametrize(
    "code, kind, message",
    [
        (None, "preprocess", "not found"),
        ("def preprocess(item:\n", "preprocess", "does not load \\(line 1\\): SyntaxError"),
        ("import no_such_module_here\n", "preprocess", "does not load: ModuleNotFoundError"),
        ("def other(item):\n    return item\n", "preprocess", "defines no function `preprocess`"),
        (
            "def postprocess(out):\n    return 1\n",
            "postprocess",
            "takes 1 parameter\\(s\\); expected \\(judge_output, item\\)",
        ),
    ],
)
def test_a_script_that_does_not_load_is_a_clear_error(tmp_path, code, kind, message):
    path = tmp_path / "s.py" if code is None else _write(tmp_path, "s.py", code)
    with pytest.raises(MetricError, match=message):
        load_script(path, kind, field="evaluation_sets.0.metrics.0.preprocess")
