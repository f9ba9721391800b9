"""What one Custom Evaluation pair (configuration x model) gave: its metrics.json checked, its outcome
stored in the results store (`{task}/custom/{config}/{model}/outcome.json`)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rayeval.spec.base import validation_summary
from rayeval.store.results import ResultsStore, custom_name

__all__ = ["PairOutcome", "PairUsage", "no_usage", "parse_metrics", "read_outcome", "set_verdict", "write_outcome"]


class _Metric(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, description="The metric's name.")
    value: float = Field(description="Its value: a finite number.")

    @field_validator("value", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class _MetricsFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metrics: list[_Metric] = Field(min_length=1, description="The program's metrics.")


def parse_metrics(text: str) -> list[dict[str, Any]]:
    """The metrics of a metrics.json text (`{"metrics": [{"name": ..., "value": ...}, ...]}`).

    Raises:
        ValueError: not JSON, or not that shape (the message says what is wrong, and where).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"metrics.json is not valid JSON ({e})") from None
    try:
        parsed = _MetricsFile.model_validate(data)
    except ValidationError as e:
        raise ValueError(
            f'metrics.json must be {{"metrics": [{{"name": ..., "value": <number>}}, ...]}}; {validation_summary(e)}'
        ) from None
    names = [m.name for m in parsed.metrics]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"metrics.json names a metric twice: {', '.join(dupes)}")
    return [{"name": m.name, "value": m.value} for m in parsed.metrics]


class PairUsage(TypedDict):
    """What a pair's program asked of its model through the task's gateway (rayeval.custom.gateway)."""

    requests: int  # requests relayed to the model (a retried one counts once)
    failed: int  # of them, those that ended in an error after their retries
    retries: int  # requests sent again after a failure
    prompt_tokens: int  # as the model's answers give them (`usage`)
    completion_tokens: int


def no_usage() -> PairUsage:
    """A pair's usage before its program asked anything."""
    return PairUsage(requests=0, failed=0, retries=0, prompt_tokens=0, completion_tokens=0)


@dataclass
class PairOutcome:
    """What one configuration x model gave (`usage`: what its program asked through the gateway; None for a
    `direct` configuration, which calls the model itself, or when the gateway could not say)."""

    config: str
    model: str
    sets: list[str]
    fingerprint: str
    metrics: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    exit_code: int | None = None
    seconds: float | None = None
    files: list[str] = field(default_factory=list)
    reused_from: str | None = None
    stopped: bool = False
    usage: PairUsage | None = None

    @property
    def ok(self) -> bool:
        """The pair has metrics."""
        return self.error is None and bool(self.metrics)


def write_outcome(store: ResultsStore, task_id: str, outcome: PairOutcome) -> None:
    """Store a pair's outcome (replacing an earlier run's)."""
    store.write_json(task_id, custom_name(outcome.config, outcome.model, "outcome.json"), asdict(outcome))


def read_outcome(store: ResultsStore, task_id: str, cfg: str, model: str) -> PairOutcome | None:
    """A pair's stored outcome, if it ran."""
    data = store.read_json(task_id, custom_name(cfg, model, "outcome.json"))
    return PairOutcome(**data) if data else None


def set_verdict(outcome: PairOutcome, result: dict[str, Any], timeout: float | None) -> None:
    """Fill a pair's outcome from what its program did: exit code, time, files, and metrics or the error."""
    outcome.exit_code, outcome.seconds, outcome.files = result["exit_code"], result["seconds"], result["files"]
    tail = "\n".join(result["tail"][-5:])
    last = f"; its last lines:\n{tail}" if tail else ""
    if result["timed_out"]:
        outcome.error = f"the program ran past its timeout of {timeout:g} s and was killed{last}"
    elif result["exit_code"] != 0:
        outcome.error = f"the program exited with status {result['exit_code']}{last}"
    elif result["metrics_text"] is None:
        outcome.error = f"the program wrote no $EVAL_OUTPUT_DIR/metrics.json (it wrote: {result['files'] or 'nothing'})"
    else:
        try:
            outcome.metrics = parse_metrics(result["metrics_text"])
        except ValueError as e:
            outcome.error = str(e)
