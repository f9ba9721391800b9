"""Rule metrics: per-item scores and streaming aggregators, registered by name.

Importing this package registers the built-in metrics: exact_match, f1, accuracy,
numeric_match, rouge, bleu, code_pass, bfcl_ast, evaluate (any Hugging Face `evaluate`
module), and acc, acc_norm and acc_bytes (multiple choice by log-likelihood).
Any metric takes pass@k outputs over an item's samples (MetricSteps).
"""

from rayeval.metrics import _bfcl, _bleu, _choice, _code, _evaluate, _numeric, _rouge, _text  # noqa: F401  (registration)
from rayeval.metrics._base import Aggregator, ItemScore, MeanAggregator, Metric
from rayeval.metrics._evaluate import EvaluateModule, module_source
from rayeval.metrics._judge import JudgeMetric, build_metric, placeholders, render_prompt
from rayeval.metrics._loglikelihood import LOGLIKELIHOOD_METRICS, gold_index
from rayeval.metrics._registry import get_metric, list_metrics, register_metric
from rayeval.metrics._scripts import ScriptResult, checked_source, compile_script, load_script, run_script
from rayeval.metrics._steps import MetricSteps, PassAtK, corpus_inputs, pass_at_k, pass_output, ref_outputs
from rayeval.spec.judge_parser import JudgeParser, ParsedScore

__all__ = [
    "LOGLIKELIHOOD_METRICS",
    "Aggregator",
    "EvaluateModule",
    "ItemScore",
    "JudgeMetric",
    "JudgeParser",
    "MeanAggregator",
    "Metric",
    "MetricSteps",
    "PassAtK",
    "ParsedScore",
    "ScriptResult",
    "build_metric",
    "checked_source",
    "compile_script",
    "corpus_inputs",
    "get_metric",
    "gold_index",
    "list_metrics",
    "load_script",
    "module_source",
    "pass_at_k",
    "pass_output",
    "placeholders",
    "ref_outputs",
    "register_metric",
    "render_prompt",
    "run_script",
]
