"""Models and judges: OpenAI-compatible services, or checkpoints and built-in models rayeval hosts on
Ray Serve with vLLM (their engine settings)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from rayeval.spec.base import NAME_PATTERN, SpecModel
from rayeval.spec.parameters import Parameters

__all__ = ["EngineSpec", "ModelSpec"]


class EngineSpec(SpecModel):
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
    cpus_per_replica: float = Field(
        1.0,
        gt=0,
        description="CPUs reserved by each replica's engine; on CPU replicas also its threads "
        "(OMP_NUM_THREADS, unpinned).",
    )
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
    start_attempts: int = Field(
        1,
        ge=1,
        description="Replica starts Serve tries before it declares the deployment failed (each loads the engine "
        "anew); 1 fails a broken engine at once. Raise it where a start can fail transiently.",
    )

    def describe(self) -> str:
        """'2 replicas, each 2 GPU (H100) and 1 CPU, tensor parallel 2' (what `rayeval list` shows)."""
        if self.min_replicas is not None:
            count = f"{self.min_replicas} to {self.max_replicas} replicas"
        else:
            count = f"{self.replicas} replica{'s' if self.replicas != 1 else ''}"
        if self.gpus_per_replica is None:
            gpus = f"{self.tensor_parallel_size:g} GPU where the cluster has GPUs (else none)"
        else:
            gpus = f"{self.gpus_per_replica:g} GPU"
        gpus += f" ({self.accelerator_type})" if self.accelerator_type else ""
        parallel = f", tensor parallel {self.tensor_parallel_size}" if self.tensor_parallel_size > 1 else ""
        return f"{count}, each {gpus} and {self.cpus_per_replica:g} CPU{parallel}"

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


class ModelSpec(SpecModel):
    """A model: an OpenAI-compatible service, or a checkpoint/built-in model that rayeval hosts.

    `kind` may be left out: `url` means service, `path` checkpoint, `builtin` built-in.
    Secrets may be written as `${env:NAME}`; they are resolved where the task runs and never stored.
    """

    name: str = Field(pattern=NAME_PATTERN, description="Name of the model in results and reuse.")
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
    tokenizer: str | None = Field(
        None,
        description="Kind service, for sets scored by log-likelihood: a local folder with the model's tokenizer "
        "files, which splits context and continuation into tokens (a hosted model uses its own).",
    )

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
        if self.hosted and self.tokenizer:
            raise ValueError(f"kind {self.kind} brings its own tokenizer: drop `tokenizer`")
        return self

    @property
    def window(self) -> int:
        """Tokens a log-likelihood request may hold (plus the one generated): MAX_MODEL_LEN of a hosted model;
        for a service `engine.max_model_len` when given, else 2048 (lm-evaluation-harness's default)."""
        if self.hosted or "max_model_len" in self.engine.model_fields_set:
            return self.engine.max_model_len
        return 2048

    @property
    def hosted(self) -> bool:
        """True when rayeval deploys this model itself (checkpoint or builtin)."""
        return self.kind != "service"

    @property
    def served_model(self) -> str:
        """The model id sent in requests."""
        return self.model or self.name
