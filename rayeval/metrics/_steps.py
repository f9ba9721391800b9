"""A metric as a pipeline of steps on one item: preprocessing -> rule or judge scoring -> postprocessing.

With several samples per item (INFERENCE_COUNT > 1, or a list of predictions), every step runs
on each sample; the item's score is the mean over its samples, and pass@k outputs use the
unbiased estimator of Chen et al. (2021) over the item's n samples of which c pass.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Literal

from rayeval.metrics._base import ItemScore, MeanAggregator, Metric
from rayeval.metrics._judge import build_metric
from rayeval.metrics._scripts import compile_script, run_script
from rayeval.metrics.sandbox import program_threads
from rayeval.spec import JudgeParser, MetricRef

__all__ = ["MetricSteps", "PassAtK", "corpus_inputs", "pass_at_k", "pass_output", "ref_outputs"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k: 1 - C(n-c, k) / C(n, k), the chance that k of the n samples include a passing one.

    Computed as a running product (no huge binomials), as in the HumanEval reference code.

    Raises:
        ValueError: k > n, or c outside [0, n].
    """
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 < k <= n and 0 <= c <= n (got n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def pass_output(output: str, k: int) -> str:
    """Name of the pass@k output of a metric output."""
    return f"{output}_pass@{k}"


class PassAtK(Metric):
    """The pass@k output of another metric (its per-item value is computed by MetricSteps)."""

    name = "pass@k"
    description = "Unbiased pass@k over an item's samples."

    def __init__(self, base: Metric, output: str, k: int):
        super().__init__()
        self.name = base.name  # details are kept under the base metric's name
        self.base, self.output, self.k = base, output, k

    def applies(self, output: str, item_id: str) -> bool:
        return self.base.applies(self.output, item_id)

    def outputs(self) -> list[str]:
        return [pass_output(self.output, self.k)]

    def score(self, prediction: str, reference: str, item: dict[str, Any]) -> ItemScore:
        raise NotImplementedError("pass@k is computed from the samples' scores")


def ref_outputs(ref: MetricRef) -> list[tuple[str, Metric]]:
    """(output name, metric object) of every output of a metric reference, pass@k outputs included."""
    return metric_outputs_at(build_metric(ref), ref.pass_at)


def metric_outputs_at(metric: Metric, pass_at: list[int]) -> list[tuple[str, Metric]]:
    """(output name, metric object) of every output of a metric, with pass@k outputs for each k of `pass_at`."""
    outs: list[tuple[str, Metric]] = [(o, metric) for o in metric.outputs()]
    for o in metric.outputs():
        outs.extend((pass_output(o, k), PassAtK(metric, o, k)) for k in pass_at)
    return outs


def _error_text(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)[-1]
    return f"{type(e).__name__}: {e} ({tb.filename}:{tb.lineno})"


def _as_text(score: float | None) -> str:
    return "" if score is None else f"{score:g}"


@dataclass
class MetricSteps:
    """One metric's steps, ready to run on items (scripts compiled, parser built).

    Attributes:
        name: The metric's name (its details are kept under it).
        metric: The rule metric, or a JudgeMetric.
        preprocess: Compiled preprocessing script (rule metrics only: judges preprocess before asking).
        postprocess: Compiled postprocessing script.
        parser: The judge answer's parser (judge metrics only).
        pass_at: The k of the pass@k outputs.
        pass_threshold: Score at which a sample passes.
    """

    name: str
    metric: Metric
    preprocess: Any = None
    postprocess: Any = None
    parser: JudgeParser | None = None
    pass_at: list[int] = field(default_factory=list)
    pass_threshold: float = 1.0

    @classmethod
    def from_ref(cls, ref: MetricRef) -> MetricSteps:
        """Build from a checked metric reference (its scripts' source carried with it)."""

        def script(kind: Literal["preprocess", "postprocess"]) -> Any:
            source = ref.script_source(kind)
            return (
                None
                if source is None
                else compile_script(source, getattr(ref, kind), kind, timeout_s=ref.script_timeout_s)
            )

        return cls(
            ref.name,
            build_metric(ref),
            None if ref.judge else script("preprocess"),
            script("postprocess"),
            ref.judge.parser if ref.judge else None,
            list(ref.pass_at),
            float(ref.pass_threshold),
        )

    def outputs(self) -> list[str]:
        """Every score column this metric fills."""
        return [o for o, _ in metric_outputs_at(self.metric, self.pass_at)]

    def run(self, item: dict[str, Any], judged: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(score by output, details of each step) for one item; `judged` is the judging stage's step.

        A failing step (or an unparsable judge answer) leaves this metric's scores None for the item.
        """
        samples = item.get("samples")
        if not samples:
            scores, details = self._one(item, judged)
            self._add_pass_at(scores, {o: [scores[o]] for o in self.metric.outputs()})
            return scores, details
        judged_samples = (judged or {}).get("samples") or []

        def one(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
            return self._one({**item, "prediction": samples[i]}, judged_samples[i] if i < len(judged_samples) else None)

        if self.metric.runs_programs and len(samples) > 1:  # the samples' programs run at once
            runs = list(program_threads().map(one, range(len(samples))))
        else:
            runs = [one(i) for i in range(len(samples))]
        outs = self.metric.outputs()
        details: dict[str, Any] = {"samples": [d for _, d in runs]}
        for i, (scores, d) in enumerate(runs):  # one unscored sample leaves the item unscored
            if d.get("parse_failure"):
                details["parse_failure"] = f"sample {i}: {d['parse_failure']}"
            elif d.get("error") or any(scores[o] is None for o in outs):
                details["error"] = f"sample {i}: {d.get('error') or 'not scored'}"
            else:
                continue
            return dict.fromkeys(self.outputs()), details
        details["sample_scores"] = per_sample = {o: [s[o] for s, _ in runs] for o in outs}
        result: dict[str, Any] = {o: sum(values) / len(values) for o, values in per_sample.items()}
        self._add_pass_at(result, per_sample)
        return result, details

    def _add_pass_at(self, scores: dict[str, Any], per_sample: dict[str, list[float | None]]) -> None:
        """pass@k of each output from its samples' scores (None where k exceeds the samples or one is unscored)."""
        for o, values in per_sample.items():
            n = len(values)
            ok = all(v is not None for v in values)
            passed = sum(v >= self.pass_threshold for v in values) if ok else 0
            for k in self.pass_at:
                scores[pass_output(o, k)] = pass_at_k(n, passed, k) if ok and k <= n else None

    def _one(self, item: dict[str, Any], judged: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.parser is not None:
            return self._judged(item, judged)
        nothing = dict.fromkeys(self.metric.outputs())
        details: dict[str, Any] = {}
        if self.preprocess is not None:
            pre = run_script(self.preprocess, "preprocess", dict(item))
            if pre.error:
                return nothing, {"error": pre.error}
            details["preprocessed"] = {k: v for k, v in pre.value.items() if item.get(k) != v}
            item = pre.value
        try:
            result = self.metric.score(item.get("prediction") or "", item.get("reference") or "", item)
        except Exception as e:  # a metric failing on one item must not stop the rest
            return nothing, {**details, "error": _error_text(e)}
        scores = dict(result.scores)
        details.update(result.details or {})
        if self.postprocess is not None:
            (output,) = self.metric.outputs()
            details["scored"] = scores[output]
            scores[output], error = self._postprocessed(_as_text(scores[output]), item, details)
            if error:
                return nothing, {**details, "error": error}
        return scores, details

    def _judged(self, item: dict[str, Any], judged: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """A judge metric: the judging stage's stored answer, parsed, then postprocessed."""
        nothing = {self.name: None}
        step = dict(judged or {"error": "the judge was not asked"})
        if step.get("error"):
            return nothing, step
        parsed = self.parser.parse(step.get("output"))
        if not parsed.ok:  # counted apart from the score: never a silent 0
            return nothing, {**step, "parse_failure": parsed.failure}
        step["parsed"] = score = parsed.score
        if self.postprocess is not None:
            score, error = self._postprocessed(step.get("output") or "", {**item, **step.get("preprocessed", {})}, step)
            if error:
                return nothing, {**step, "error": error}
        return {self.name: score}, step

    def _postprocessed(self, text: str, item: dict[str, Any], details: dict[str, Any]) -> tuple[float | None, str]:
        """(score, error) from the postprocessing script; what it returned goes into `details`."""
        post = run_script(self.postprocess, "postprocess", text, item)
        if post.error:
            return None, post.error
        details["postprocessed"] = post.value
        value = post.value.get("score") if isinstance(post.value, dict) else post.value
        return (None if value is None else float(value)), ""


def corpus_inputs(
    aggregator: Any, output: str, score: float | None, details: dict[str, Any] | None
) -> list[tuple[float | None, dict[str, Any] | None]]:
    """What an item adds to `output`'s aggregator: its score and details, or, for a corpus-level
    aggregate (BLEU) of an item with several samples, each sample's score and statistics."""
    if (
        score is not None
        and isinstance(details, dict)
        and isinstance(details.get("samples"), list)
        and not isinstance(aggregator, MeanAggregator)
    ):
        return list(zip(details.get("sample_scores", {}).get(output) or [], details["samples"]))
    return [(score, details)]
