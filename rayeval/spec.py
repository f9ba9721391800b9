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
    field_validator,
    model_validator,
)

from rayeval.errors import SpecError

__all__ = [
    "ColumnMapping",
    "EvaluationSetSpec",
    "MetricRef",
    "ModelSpec",
    "Parameters",
    "ResourceSpec",
    "TaskSpec",
    "load_task",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME_HINT = "use letters, digits, '.', '_' and '-' only (at most 128 characters)"
Mode = Literal["evaluation_only", "inference_and_evaluation"]


class _Spec(BaseModel):
    """Base of every spec model: unknown keys are errors, aliases and field names both accepted."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)


class ColumnMapping(_Spec):
    """Which columns of the evaluation set's files hold what."""

    id: str | None = Field(None, description="Column with a stable item id; without it the id is a hash of the row.")
    query: str = Field("query", description="Column with the query (prompt) sent to the model.")
    reference: str | None = Field("reference", description="Column with the reference answer used by metrics.")
    prediction: str = Field(
        "prediction",
        description="Column with the model's answer in per-model prediction files (Evaluation Only).",
    )


class MetricRef(_Spec):
    """One metric applied to an evaluation set: a registered name plus its options."""

    name: str = Field(description="Registered metric name, e.g. exact_match, f1, rouge, bleu, numeric_match.")
    options: dict[str, Any] = Field(default_factory=dict, description="Options passed to the metric.")


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
    metrics: list[MetricRef] = Field(min_length=1, description="Metrics computed on this set.")
    limit: int | None = Field(None, gt=0, description="Evaluate only the first N items (for quick trials).")

    @field_validator("metrics", mode="before")
    @classmethod
    def _names_as_refs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

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

    def merged(self, override: Parameters | None) -> Parameters:
        """These parameters with the fields explicitly set in `override` replacing them."""
        if override is None:
            return self
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


class ModelSpec(_Spec):
    """A model to evaluate, reached as an OpenAI-compatible service.

    Secrets may be written as `${env:NAME}`; they are resolved where the task runs and never stored.
    """

    name: str = Field(pattern=_NAME, description="Name of the model in results and reuse.")
    kind: Literal["service"] = Field("service", description="How the model is reached: 'service' (a URL).")
    url: str | None = Field(
        None,
        description="OpenAI-compatible base URL (http://host:port/v1) or full chat/completions endpoint URL.",
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

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")
        return value

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


class TaskSpec(_Spec):
    """An evaluation task: sets x models x metrics, with parameters and an output location."""

    name: str = Field(pattern=_NAME, description="Task name; the task id is derived from it.")
    remarks: str = Field("", description="Free text shown in task lists.")
    tags: list[str] = Field(default_factory=list, description="Labels to filter tasks by.")
    mode: Mode = Field(description="'evaluation_only' (sets hold predictions) or 'inference_and_evaluation'.")
    evaluation_sets: list[EvaluationSetSpec] = Field(min_length=1, description="The evaluation sets.")
    models: list[ModelSpec] = Field(min_length=1, description="The models to evaluate.")
    parameters: Parameters = Field(default_factory=Parameters, description="Inference and performance settings.")
    resources: ResourceSpec = Field(default_factory=ResourceSpec, description="Actor pool sizes and CPUs.")
    output: str = Field(
        "rayeval-results",
        description="Results location: a local folder (relative to the task file) or a pyarrow filesystem URI.",
    )

    _source: str | None = PrivateAttr(None)

    @field_validator("evaluation_sets", "models")
    @classmethod
    def _unique_names(cls, value: list[Any]) -> list[Any]:
        names = [v.name for v in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"names must be unique; repeated: {', '.join(dupes)}")
        return value

    @model_validator(mode="after")
    def _mode_requirements(self) -> TaskSpec:
        model_names = {m.name for m in self.models}
        for i, s in enumerate(self.evaluation_sets):
            unknown = sorted((set(s.predictions) | set(s.prediction_files)) - model_names)
            if unknown:
                raise ValueError(
                    f"evaluation_sets.{i} ({s.name}) names predictions of unknown models: {', '.join(unknown)}"
                )
            if self.mode == "inference_and_evaluation":
                if s.path is None:
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
                if not m.url:
                    raise ValueError(f"models.{i} ({m.name}) needs `url` in mode inference_and_evaluation")
        return self

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
        for raw, dumped in zip(self.models, data["models"]):
            if raw.auth_header_value is not None:
                value = raw.auth_header_value.get_secret_value()
                dumped["auth_header_value"] = value if keep_secrets else _redact_secret(value)
        return data


_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


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
    if isinstance(data.get("output"), str):
        data["output"] = _resolve_path(base, data["output"])
    for s in data.get("evaluation_sets") or []:
        if not isinstance(s, dict):
            continue
        if isinstance(s.get("path"), str):
            s["path"] = _resolve_path(base, s["path"])
        elif isinstance(s.get("path"), list):
            s["path"] = [_resolve_path(base, p) if isinstance(p, str) else p for p in s["path"]]
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
    data = _resolve_paths(json.loads(json.dumps(data)), Path(base_dir or Path.cwd()))
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
