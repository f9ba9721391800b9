"""The task specification: what a task declares, loaded from YAML or JSON and checked before anything runs.

- `task`: the task (mode, sets, models, parameters, resources, reuse, output) and the checks spanning them;
- `sets`, `models`, `parameters`, `custom`: the parts a task is made of;
- `load`: task files into checked specs; `secrets`: `${env:NAME}` credentials;
- `metrics_config`, `weights`, `judge_parser`: metric quick-configuration, score weights, judge answers.
"""

from rayeval.spec.base import DEFAULT_OUTPUT, format_validation_error
from rayeval.spec.custom import CustomConfigSpec, CustomResources, MountSpec
from rayeval.spec.judge_parser import JudgeParser, ParsedScore
from rayeval.spec.load import load_task, parse_task
from rayeval.spec.models import EngineSpec, ModelSpec
from rayeval.spec.parameters import Parameters
from rayeval.spec.secrets import env_references, resolve_secret
from rayeval.spec.sets import ColumnMapping, EvaluationSetSpec, JudgeSpec, MetricRef, PairwiseSpec
from rayeval.spec.task import Mode, ResourceSpec, ReuseSpec, Stage, TaskSpec
from rayeval.spec.weights import Weights, parse_weights

__all__ = [
    "DEFAULT_OUTPUT",
    "ColumnMapping",
    "CustomConfigSpec",
    "CustomResources",
    "EngineSpec",
    "EvaluationSetSpec",
    "JudgeParser",
    "JudgeSpec",
    "MetricRef",
    "Mode",
    "ModelSpec",
    "MountSpec",
    "Parameters",
    "PairwiseSpec",
    "ParsedScore",
    "ResourceSpec",
    "ReuseSpec",
    "Stage",
    "TaskSpec",
    "Weights",
    "env_references",
    "format_validation_error",
    "load_task",
    "parse_task",
    "parse_weights",
    "resolve_secret",
]
