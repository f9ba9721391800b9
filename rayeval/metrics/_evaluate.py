"""Hugging Face `evaluate` metric modules as rayeval metrics: `{evaluate: PATH, outputs: [...]}`.

A module is a folder holding `<folder name>.py` (an `evaluate.Metric` subclass), or that script itself, as
`evaluate.load` takes it. Its source is read when the task is checked and travels with the metric's
options, so scoring actors on other nodes load the same code without the file, and a changed script
changes the metric's fingerprint (its results are not reused). Each item gets the module's `compute()`
on that item alone; each output's aggregate is `compute()` over every scored item, so corpus-level
metrics (BLEU, F1 over a set) are what the module itself says.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import threading
from pathlib import Path
from typing import Any

from rayeval.errors import MetricError
from rayeval.metrics._base import Aggregator, ItemScore, Metric
from rayeval.metrics._registry import register_metric

__all__ = ["EvaluateModule", "module_source"]

_LOADED: dict[str, Any] = {}  # source hash -> the loaded module (one per process)
_LOCK = threading.Lock()


def module_source(path: str) -> tuple[str, str]:
    """(module name, script source) of an `evaluate` module: a folder with `<name>/<name>.py`, or a .py file.

    Raises:
        MetricError: no such folder or script (the message says what evaluate expects).
    """
    p = Path(path)
    script = p / f"{p.name}.py" if p.is_dir() else p
    if script.suffix != ".py" or not script.is_file():
        raise MetricError(
            f"evaluate module '{path}' not found: give a folder holding <folder name>.py (an evaluate.Metric) "
            "or that .py file"
        )
    return script.stem, script.read_text(encoding="utf-8")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    try:  # numpy scalars
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@register_metric
class EvaluateModule(Metric):
    """A Hugging Face `evaluate` metric module: per-item `compute()`, and `compute()` over the set as the
    aggregate of each named output."""

    name = "evaluate"
    description = "a Hugging Face evaluate module (local folder or script): compute() per item and over the set"
    defaults = {"module": None, "outputs": None, "kwargs": {}, "source": None}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        module, outputs, kwargs = self.options["module"], self.options["outputs"], self.options["kwargs"]
        if not isinstance(module, str) or not module:
            raise self._bad_option("module", "give the path of the evaluate module (a folder or its .py file)")
        if not isinstance(outputs, list) or not outputs or not all(isinstance(o, str) and o for o in outputs):
            raise self._bad_option(
                "outputs", "list the keys of compute()'s result to keep as scores, e.g. [accuracy] or [f1, precision]"
            )
        if not isinstance(kwargs, dict):
            raise self._bad_option("kwargs", f"expected a mapping of compute() arguments, got {kwargs!r}")
        #: The module's name (its script's stem).
        self.script = Path(module).stem if module.endswith(".py") else Path(module.rstrip("/")).name

    def outputs(self) -> list[str]:
        """The keys of compute()'s result kept as scores, in the order given."""
        return list(self.options["outputs"])

    def source(self) -> str:
        """The module's script: as checked with the task (`source`), else read from `module` now."""
        return self.options["source"] or module_source(self.options["module"])[1]

    def _module(self) -> Any:
        source = self.source()
        key = hashlib.sha256(source.encode()).hexdigest()
        with _LOCK:
            if key not in _LOADED:
                import evaluate  # heavy (datasets, ...): imported only where such a metric scores

                name = self.script
                folder = Path(tempfile.mkdtemp(prefix="rayeval-evaluate-")) / name
                folder.mkdir()
                (folder / f"{name}.py").write_text(source, encoding="utf-8")
                _LOADED[key] = evaluate.load(str(folder))
            return _LOADED[key]

    def compute(self, predictions: list[str], references: list[str]) -> dict[str, Any]:
        """The module's compute() on these pairs, with the metric's `kwargs`."""
        try:
            return self._module().compute(predictions=predictions, references=references, **self.options["kwargs"])
        except Exception as e:  # noqa: BLE001 (the module's own error, said as the item's or the set's)
            raise MetricError(f"evaluate module '{self.script}' failed: {type(e).__name__}: {e}") from e

    def score(self, prediction: str, reference: str, item: dict[str, Any]) -> ItemScore:
        """compute() on this item alone; its prediction and reference are kept for the set's compute()."""
        result = self.compute([prediction], [str(reference)])
        missing = [o for o in self.outputs() if o not in result]
        if missing:
            raise MetricError(
                f"evaluate module '{self.script}' returned no {', '.join(missing)} "
                f"(it returned: {', '.join(map(str, result)) or 'nothing'})"
            )
        return ItemScore(
            {o: _number(result[o]) for o in self.outputs()},
            {"prediction": prediction, "reference": str(reference)},
        )

    def aggregator(self, output: str) -> Aggregator:
        """compute() over every scored item's prediction and reference, keeping `output`."""
        self._check_output(output)
        return _SetCompute(self, output)


class _SetCompute(Aggregator):
    """Collects the scored items' predictions and references; `value` is the module's compute() over them."""

    def __init__(self, metric: EvaluateModule, output: str) -> None:
        super().__init__()
        self.metric, self.output = metric, output
        self.predictions: list[str] = []
        self.references: list[str] = []

    def add(self, score: float | None, details: dict[str, Any] | None) -> None:
        """Adds one scored item (its details hold its prediction and reference); None is skipped."""
        if score is None or not details:
            return
        self.predictions.append(details["prediction"])
        self.references.append(details["reference"])
        self.count += 1

    def value(self) -> float | None:
        """The module's value of the output over the items added, or None when empty."""
        if not self.count:
            return None
        return _number(self.metric.compute(self.predictions, self.references).get(self.output))
