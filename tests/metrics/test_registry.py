"""Tests of the metric registry, the base classes and option checking."""

from __future__ import annotations

from typing import Any

import pytest

import rayeval.metrics as metrics
from rayeval.errors import MetricError, SpecError
from rayeval.metrics import (
    ItemScore,
    MeanAggregator,
    Metric,
    _registry,
    get_metric,
    list_metrics,
    register_metric,
)

BUILTIN = ["accuracy", "bfcl_ast", "bleu", "code_pass", "exact_match", "f1", "numeric_match", "rouge"]


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_METRICS", dict(_registry._METRICS))


def test_public_api() -> None:
    assert sorted(metrics.__all__) == sorted(
        [
            "ItemScore",
            "Aggregator",
            "LOGLIKELIHOOD_METRICS",
            "gold_index",
            "EvaluateModule",
            "module_source",
            "MeanAggregator",
            "Metric",
            "register_metric",
            "get_metric",
            "list_metrics",
            "JudgeParser",
            "ParsedScore",
            "ScriptResult",
            "compile_script",
            "build_metric",
            "checked_source",
            "JudgeMetric",
            "placeholders",
            "render_prompt",
            "load_script",
            "run_script",
            "MetricSteps",
            "PassAtK",
            "corpus_inputs",
            "pass_at_k",
            "pass_output",
            "ref_outputs",
        ]
    )


def test_list_metrics_has_builtins_with_one_line_descriptions() -> None:
    listed = list_metrics()
    # evaluate needs its module (tests/metrics/test_evaluate); acc* read log-likelihoods (test_loglikelihood)
    assert sorted(listed) == sorted([*BUILTIN, "evaluate", "acc", "acc_norm", "acc_bytes"])
    for description in listed.values():
        assert description and "\n" not in description


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_metrics_build_and_score(name: str) -> None:
    metric = get_metric(name)
    assert metric.name == name
    result = metric.score("A", "A", {})
    assert set(result.scores) == set(metric.outputs())
    for output in metric.outputs():
        value = result.scores[output]
        assert value is None or 0.0 <= value <= 1.0
        metric.aggregator(output).add(value, result.details)


def test_unknown_metric_lists_known_names() -> None:
    with pytest.raises(MetricError) as info:
        get_metric("exact_mach")
    message = str(info.value)
    assert "unknown metric 'exact_mach'" in message
    assert "did you mean 'exact_match'" in message
    for name in BUILTIN:
        assert name in message
    assert isinstance(info.value, SpecError)


def test_unknown_option_names_metric_and_allowed_options() -> None:
    with pytest.raises(MetricError, match=r"metric 'bleu' has no option 'smooth'; allowed options: tokenize"):
        get_metric("bleu", smooth="exp")
    with pytest.raises(MetricError, match=r"metric 'f1' has no option 'x'; allowed options: none"):
        get_metric("f1", x=1)


def test_unknown_output_is_rejected() -> None:
    with pytest.raises(ValueError, match="rouge3"):
        get_metric("rouge").aggregator("rouge3")


class _Length(Metric):
    name = "test_length"
    description = "test metric"
    defaults = {"limit": 10}

    def score(self, prediction: str, reference: str, item: dict[str, Any]) -> ItemScore:
        return ItemScore({self.name: min(len(prediction), self.options["limit"]) / self.options["limit"]})


def test_register_custom_metric(isolated_registry: None) -> None:
    assert register_metric(_Length) is _Length
    metric = get_metric("test_length", limit=4)
    assert metric.outputs() == ["test_length"]
    assert metric.score("abcdef", "", {}).scores == {"test_length": 1.0}
    assert list_metrics()["test_length"] == "test metric"
    assert isinstance(metric.aggregator("test_length"), MeanAggregator)


def test_register_duplicate_name_raises(isolated_registry: None) -> None:
    register_metric(_Length)
    with pytest.raises(ValueError, match="already registered"):
        register_metric(_Length)


def test_register_without_name_raises(isolated_registry: None) -> None:
    class Nameless(Metric):
        description = "x"

        def score(self, prediction: str, reference: str, item: dict[str, Any]) -> ItemScore:
            return ItemScore({})

    with pytest.raises(TypeError, match="name"):
        register_metric(Nameless)


def test_mean_aggregator() -> None:
    agg = MeanAggregator()
    assert agg.value() is None and agg.count == 0
    for score in (1.0, None, 0.0, 0.5):
        agg.add(score, None)
    assert agg.count == 3
    assert agg.value() == pytest.approx(0.5)
