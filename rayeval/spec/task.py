"""The task: sets x models x metrics (or Custom Evaluation programs), parameters, resources, reuse and
an output location, with the checks that span them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from rayeval.spec.base import DEFAULT_OUTPUT, NAME_PATTERN, SpecModel
from rayeval.spec.custom import CustomConfigSpec
from rayeval.spec.models import ModelSpec
from rayeval.spec.parameters import Parameters
from rayeval.spec.secrets import redact_secret
from rayeval.spec.sets import EvaluationSetSpec
from rayeval.spec.weights import Weights

__all__ = ["Mode", "ResourceSpec", "ReuseSpec", "Stage", "TaskSpec"]

#: What a task runs: the sets hold predictions, rayeval asks the models, or the user's programs evaluate them.
Mode = Literal["evaluation_only", "inference_and_evaluation", "custom"]
#: The stages whose actors a task places on the cluster.
Stage = Literal["inference", "judging", "scoring", "writer"]


class ResourceSpec(SpecModel):
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
    stage_resources: dict[Stage, dict[str, float]] = Field(
        default_factory=dict,
        description="Custom Ray resources the actors of a stage ask for, e.g. {inference: {io: 0.01}}: they then run "
        "only on nodes that declare them (`ray start --resources`). Stages: inference, judging, scoring, writer.",
    )
    wait_timeout_s: float = Field(
        300.0,
        gt=0,
        description="Seconds the task may wait for resources the cluster does not have (an actor pool, the writer, "
        "a deployment) before it fails, naming what it waited for and what the cluster has.",
    )

    @field_validator("stage_resources")
    @classmethod
    def _positive_amounts(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for stage, wanted in value.items():
            bad = sorted(name for name, amount in wanted.items() if not amount > 0)
            if bad:
                raise ValueError(f"stage {stage}: resource amounts must be above 0 ({', '.join(bad)})")
            builtin = sorted({"CPU", "GPU", "memory", "object_store_memory"} & set(wanted))
            if builtin:
                raise ValueError(
                    f"stage {stage}: {', '.join(builtin)} are set by actor_num_cpus and the engine; name custom "
                    "resources here"
                )
        return value


class ReuseSpec(SpecModel):
    """Reuse of earlier tasks' results, off unless turned on: items stored for the same model name and set
    name with the same fingerprints (model and its weights' content, output settings, item content; metric
    configuration for scores) are taken instead of evaluated again. `rayeval restart` resuming a task's own
    committed items is not reuse: it happens either way."""

    enabled: bool = Field(
        False,
        description="Reuse earlier results (default false: evaluate every item). Naming `tasks` turns it on.",
    )
    tasks: list[str] | None = Field(
        None,
        description="Reuse only from these earlier tasks (ids or names); default every earlier task this task's "
        "tags may see, newest first.",
    )

    @model_validator(mode="before")
    @classmethod
    def _tasks_turn_it_on(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("tasks") and "enabled" not in value:
            return {**value, "enabled": True}
        return value

    @model_validator(mode="after")
    def _sources_need_reuse(self) -> ReuseSpec:
        if self.tasks and not self.enabled:
            raise ValueError("`tasks` names where to reuse from, but `enabled` is false: drop one of them")
        return self


class TaskSpec(SpecModel):
    """An evaluation task: sets x models x metrics, with parameters and an output location."""

    name: str = Field(pattern=NAME_PATTERN, description="Task name; the task id is derived from it.")
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
        description="Reuse of earlier tasks' results, off by default: `true` takes from any earlier task the "
        "task's tags may see, `{tasks: [...]}` from the named ones.",
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
    max_error_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="The task fails (state failed, exit status 1; its results stay stored) when more than this "
        "fraction of its items failed (errors of inference, scripts, metrics or judges). Unset: it fails only "
        "when every item failed.",
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
    def _reference_is_a_model(self) -> TaskSpec:
        if self.reference_model is not None and self.reference_model not in {m.name for m in self.models}:
            raise ValueError(
                f"reference_model '{self.reference_model}' is not one of the task's models "
                f"({', '.join(m.name for m in self.models)})"
            )
        return self

    @model_validator(mode="after")
    def _custom_configurations(self) -> TaskSpec:
        if not self.is_custom:
            if self.custom:
                raise ValueError("`custom` configurations belong to mode custom")
            return self
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

    @model_validator(mode="after")
    def _set_sources(self) -> TaskSpec:
        """Mode inference_and_evaluation reads queries; evaluation_only reads every model's predictions."""
        model_names = {m.name for m in self.models}
        for i, s in enumerate(self.evaluation_sets):
            unknown = sorted((set(s.predictions) | set(s.prediction_files)) - model_names)
            if unknown:
                raise ValueError(
                    f"evaluation_sets.{i} ({s.name}) names predictions of unknown models: {', '.join(unknown)}"
                )
            if self.runs_inference:
                if s.path is None and s.builtin is None:
                    raise ValueError(f"evaluation_sets.{i} ({s.name}) needs `path` (the queries to run)")
                if s.predictions or s.prediction_files:
                    raise ValueError(
                        f"evaluation_sets.{i} ({s.name}): predictions/prediction_files belong to mode evaluation_only"
                    )
                continue
            for m in self.models:
                if m.name not in s.predictions and m.name not in s.prediction_files:
                    raise ValueError(
                        f"evaluation_sets.{i} ({s.name}) has no predictions for model '{m.name}': add "
                        f"`predictions: {{{m.name}: <column>}}` or `prediction_files: {{{m.name}: <file>}}`"
                    )
                if m.name in s.predictions and s.path is None:
                    raise ValueError(f"evaluation_sets.{i} ({s.name}) needs `path` for its prediction columns")
        return self

    @model_validator(mode="after")
    def _services_have_urls(self) -> TaskSpec:
        if self.is_custom:
            return self
        if self.runs_inference:
            for i, m in enumerate(self.models):
                if m.kind == "service" and not m.url:
                    raise ValueError(
                        f"models.{i} ({m.name}) needs `url` in mode inference_and_evaluation "
                        "(or `path`/`builtin` for rayeval to host it)"
                    )
        for i, j in enumerate(self.judges):
            if j.kind == "service" and not j.url:
                raise ValueError(f"judges.{i} ({j.name}) needs `url` (or `path`/`builtin` for rayeval to host it)")
        return self

    @model_validator(mode="after")
    def _judges_declared(self) -> TaskSpec:
        """Every pairwise entry and judge metric names a judge of the task (pairwise: and a reference model)."""
        judge_names = {j.name for j in self.judges}
        declared = ", ".join(sorted(judge_names)) or "none declared"
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
                        f"task's judges ({declared})"
                    )
                if p.name in {ref.name for ref in s.metrics}:
                    raise ValueError(f"evaluation_sets.{i}.pairwise.{k}: '{p.name}' is already a metric of the set")
        for i, s in enumerate(self.evaluation_sets):
            for k, ref in enumerate(s.metrics):
                if ref.judge is not None and ref.judge.model not in judge_names:
                    raise ValueError(
                        f"evaluation_sets.{i}.metrics.{k} ({ref.name}) uses judge '{ref.judge.model}', which is not "
                        f"among the task's judges ({declared})"
                    )
        return self

    @model_validator(mode="after")
    def _samples_per_item(self) -> TaskSpec:
        """Several responses per query need sampling, and pass@k needs at least k of them."""
        if not self.runs_inference:
            return self
        for m in self.models:
            for i, s in enumerate(self.evaluation_sets):
                p = self.set_parameters(m, s)
                where = f"model '{m.name}'" + (f" on set '{s.name}'" if s.parameters is not None else "")
                if p.inference_count > 1 and (not p.do_sample or p.temperature == 0):
                    raise ValueError(
                        f"{where}: INFERENCE_COUNT {p.inference_count} with greedy decoding gives the same response "
                        "every time; set DO_SAMPLE true and a TEMPERATURE above 0, or INFERENCE_COUNT 1"
                    )
                for k, ref in enumerate(s.metrics):
                    too_big = [x for x in ref.pass_at if x > p.inference_count]
                    if too_big:
                        raise ValueError(
                            f"evaluation_sets.{i}.metrics.{k} ({ref.name}): pass@{too_big[0]} needs at least "
                            f"{too_big[0]} samples per item, but {where} has INFERENCE_COUNT "
                            f"{p.inference_count}; raise INFERENCE_COUNT or lower pass_at"
                        )
        return self

    @model_validator(mode="after")
    def _loglikelihood_sets(self) -> TaskSpec:
        """Sets scored by log-likelihood ask the models themselves, with their tokenizers at hand."""
        scored = [(i, s) for i, s in enumerate(self.evaluation_sets) if s.loglikelihood]
        if not scored or self.is_custom:
            return self
        i, s = scored[0]
        if not self.runs_inference:
            raise ValueError(
                f"evaluation_sets.{i} ({s.name}) is scored by log-likelihood, which asks the models: it needs "
                "mode inference_and_evaluation (Evaluation Only has written answers only)"
            )
        for k, m in enumerate(self.models):
            if not m.hosted and not m.tokenizer:
                raise ValueError(
                    f"models.{k} ({m.name}): set '{s.name}' is scored by log-likelihood, which splits context and "
                    "choice into the model's tokens: give the model `tokenizer` (a local folder with its "
                    "tokenizer files)"
                )
        return self

    @model_validator(mode="after")
    def _models_and_judges_apart(self) -> TaskSpec:
        clash = sorted({m.name for m in self.models} & {j.name for j in self.judges})
        if clash and not self.is_custom:
            raise ValueError(f"judges and models share names ({', '.join(clash)}): name each once")
        return self

    @property
    def is_custom(self) -> bool:
        """Mode custom: the user's programs evaluate the models."""
        return self.mode == "custom"

    @property
    def runs_inference(self) -> bool:
        """Mode inference_and_evaluation: rayeval asks the models."""
        return self.mode == "inference_and_evaluation"

    @property
    def predictions_given(self) -> bool:
        """Mode evaluation_only: the sets hold the models' predictions."""
        return self.mode == "evaluation_only"

    def hosted_models(self) -> list[ModelSpec]:
        """The models and judges rayeval deploys for this task (in inference mode; judges always)."""
        models = self.models if self.mode != "evaluation_only" else []
        return [m for m in [*models, *self.judges] if m.hosted]

    @property
    def source(self) -> str | None:
        """The file this spec was loaded from, if any."""
        return self._source

    def model_parameters(self, model: ModelSpec) -> Parameters:
        """The task parameters with the model's own overrides applied (a set's do not count here)."""
        return self.parameters.merged(model.parameters)

    def set_parameters(self, model: ModelSpec, eval_set: str | EvaluationSetSpec) -> Parameters:
        """The parameters `model` runs `eval_set` with: the task's, then the set's, then the model's own
        (each overriding what it sets)."""
        s = eval_set if isinstance(eval_set, EvaluationSetSpec) else self.evaluation_set(eval_set)
        return self.parameters.merged(s.parameters).merged(model.parameters)

    def effective_parameters(self) -> dict[str, dict[str, dict[str, Any]]]:
        """model -> set -> the parameters it runs with (`set_parameters`; unset ones left out), as shown by
        `rayeval status` and stored in spec.json."""
        return {
            m.name: {
                s.name: self.set_parameters(m, s).model_dump(mode="json", exclude_none=True)
                for s in self.evaluation_sets
            }
            for m in self.models
        }

    def evaluation_set(self, name: str) -> EvaluationSetSpec:
        """The set named `name`."""
        found = next((s for s in self.evaluation_sets if s.name == name), None)
        if found is None:
            raise KeyError(f"no evaluation set '{name}' in task '{self.name}'")
        return found

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
        # Overrides stay what was set: a default dumped with them would override the task's on reading back.
        owners = [*self.models, *self.judges, *self.evaluation_sets]
        for raw, dumped in zip(owners, [*data["models"], *data.get("judges", []), *data["evaluation_sets"]]):
            if raw.parameters is not None:
                dumped["parameters"] = raw.parameters.model_dump(mode="json", exclude_unset=True)
        for raw, dumped in zip([*self.models, *self.judges], [*data["models"], *data.get("judges", [])]):
            if raw.auth_header_value is not None:
                value = raw.auth_header_value.get_secret_value()
                dumped["auth_header_value"] = value if keep_secrets else redact_secret(value)
        return data
