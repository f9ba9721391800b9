"""Functional correctness of code: the prediction's program runs the item's tests in a sandbox."""

from __future__ import annotations

import re
from typing import Any

from rayeval.metrics._base import ItemScore, Metric
from rayeval.metrics._registry import register_metric

__all__ = ["CodePass", "extract_code"]

_FENCED = re.compile(r"```[\w+-]*\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str:
    """The first fenced code block of a response, else the whole response (OpenCompass's HumanEval rule)."""
    match = _FENCED.search(text)
    return match.group(1) if match else text


@register_metric
class CodePass(Metric):
    """1 when the program passes the item's tests: HumanEval's assembly, prompt + completion + test +
    `check(entry_point)`, run in rayeval.metrics.sandbox. Over several samples its mean is the unbiased pass@1;
    add `pass_at: [k]` for pass@k."""

    name = "code_pass"
    description = "1 when the code passes the item's tests (HumanEval style, run in a sandbox); use pass_at for pass@k"
    defaults = {"timeout": 3.0, "memory_mb": 1024}
    runs_programs = True

    def score(self, prediction: str, reference: str, item: dict[str, Any]) -> ItemScore:
        from rayeval.metrics.sandbox import run_python

        missing = [k for k in ("prompt", "test", "entry_point") if not item.get(k)]
        if missing:
            return ItemScore({self.name: None}, {"reason": f"the item has no {', '.join(missing)} column"})
        completion = extract_code(prediction or "")
        program = f"{item['prompt']}{completion}\n{item['test']}\ncheck({item['entry_point']})\n"
        result = run_python(program, timeout=float(self.options["timeout"]), memory_mb=int(self.options["memory_mb"]))
        details: dict[str, Any] = {"status": result.status, "seconds": round(result.seconds, 3)}
        if not result.passed:
            details["detail"] = result.detail[-600:]
        return ItemScore({self.name: float(result.passed)}, details)
