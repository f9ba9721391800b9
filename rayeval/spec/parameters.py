"""Inference hyperparameters and performance parameters (the platform's upper-case names are aliases)."""

from __future__ import annotations

from pydantic import Field

from rayeval.spec.base import SpecModel

__all__ = ["PER_TASK_PARAMETERS", "Parameters"]

#: Parameters a set may not change: limits on one model or judge across the whole cluster.
PER_TASK_PARAMETERS = ("max_concurrency", "max_judging_concurrency")


class Parameters(SpecModel):
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
        description="False means greedy decoding: temperature 0 is sent, and top_p, top_k and repetition_penalty "
        "are not.",
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

    def notes(self) -> list[str]:
        """What the task sets that has no effect, or goes against the platform's advice: sampling parameters
        under greedy decoding (not sent), and more than one of temperature, top_p and top_k."""
        sampling = [name for name in ("temperature", "top_p", "top_k", "repetition_penalty") if getattr(self, name)]
        if not self.do_sample:
            return [f"do_sample is false (greedy): {', '.join(sampling)} not sent"] if sampling else []
        several = [name for name in ("temperature", "top_p", "top_k") if getattr(self, name) is not None]
        if len(several) > 1:
            return [f"{' and '.join(several)} are all set: set only one of temperature, top_p and top_k"]
        return []

    def merged(self, override: Parameters | None) -> Parameters:
        """These parameters with the fields explicitly set in `override` replacing them."""
        if override is None:
            return self
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})
