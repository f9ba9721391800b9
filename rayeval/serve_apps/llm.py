"""Turn a hosted model spec into an OpenAI-compatible Ray Serve application backed by vLLM.

The application is Ray's own `ray.serve.llm` OpenAI app (`/v1/chat/completions`,
`/v1/completions`, `/v1/models`) around vLLM's async engine. On nodes without GPUs the replica
asks for CPU-only placement bundles, so vLLM's CPU build serves it.

Usable outside rayeval too, from `serve run` or a Serve config file::

    serve run rayeval.serve_apps.llm:build_app name=my-model path=/models/my-model max_model_len=4096

    applications:
      - name: my-model
        route_prefix: /my-model
        import_path: rayeval.serve_apps.llm:build_app
        args: {name: my-model, path: /models/my-model, engine: {max_model_len: 4096}}
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from rayeval.serve_apps.builtins import ModelSource, get_builtin, resolve_source
from rayeval.spec import EngineSpec, ModelSpec

if TYPE_CHECKING:
    from ray.serve.deployment import Application
    from ray.serve.llm import LLMConfig

__all__ = ["app_name", "build_app", "check_engine", "effective_engine", "llm_config", "openai_app", "route_prefix"]


def effective_engine(model: ModelSpec) -> EngineSpec:
    """The model's engine settings, with a built-in model's defaults under what the task set."""
    if model.kind != "builtin":
        return model.engine
    defaults = get_builtin(model.builtin).engine
    explicit = model.engine.model_dump(include=model.engine.model_fields_set)
    merged = {**defaults, **explicit}
    if "engine_kwargs" in defaults and "engine_kwargs" in explicit:
        merged["engine_kwargs"] = {**defaults["engine_kwargs"], **explicit["engine_kwargs"]}
    return EngineSpec.model_validate(merged)


def check_engine(model: ModelSpec, source: ModelSource, *, field: str | None = None) -> None:
    """Catch what vLLM would only refuse after minutes of start-up: MAX_MODEL_LEN over the model's context.

    Raises:
        SpecError: MAX_MODEL_LEN exceeds the context length in the checkpoint's config.json.
    """
    from pathlib import Path

    from rayeval.errors import SpecError

    config_path = Path(source.source) / "config.json"
    if "://" in source.source or not config_path.is_file():
        return
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    config = config.get("text_config", config)
    limit = config.get("max_position_embeddings")
    engine = effective_engine(model)
    allowed = engine.engine_kwargs.get("hf_overrides") or "rope_scaling" in config
    if isinstance(limit, int) and engine.max_model_len > limit and not allowed:
        raise SpecError(
            f"MAX_MODEL_LEN {engine.max_model_len} exceeds the model's context length ({limit}, "
            f"max_position_embeddings in {config_path}); set engine.max_model_len to at most {limit}",
            field=field,
        )


def _fingerprint(model: ModelSpec, source: ModelSource) -> str:
    """What makes two deployments interchangeable: the weights, the served id and the engine settings."""
    engine = effective_engine(model).model_dump(mode="json", exclude={"keep", "deploy_timeout_s", "start_attempts"})
    key = json.dumps({"source": source.source, "served": model.served_model, "engine": engine}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def app_name(model: ModelSpec, source: ModelSource) -> str:
    """The Serve application name: the same for every task naming this model with this engine config."""
    return f"rayeval-{model.served_model}-{_fingerprint(model, source)}"


def route_prefix(name: str) -> str:
    """Where the application's HTTP routes live under the Serve proxy."""
    return f"/{name}"


def _gpus(engine: EngineSpec) -> float:
    if engine.gpus_per_replica is not None:
        return engine.gpus_per_replica
    import ray

    has_gpus = ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0
    return float(engine.tensor_parallel_size) if has_gpus else 0.0


def llm_config(model: ModelSpec, source: ModelSource | None = None) -> LLMConfig:
    """The `ray.serve.llm.LLMConfig` of a hosted model."""
    from ray.serve.llm import LLMConfig

    source = source or resolve_source(model)
    engine = effective_engine(model)
    gpus = _gpus(engine)
    engine_kwargs: dict[str, Any] = {
        "max_model_len": engine.max_model_len,
        "dtype": engine.dtype,
        "tensor_parallel_size": engine.tensor_parallel_size,
        **engine.engine_kwargs,
    }
    if engine.min_replicas is not None:
        deployment: dict[str, Any] = {
            "autoscaling_config": {"min_replicas": engine.min_replicas, "max_replicas": engine.max_replicas}
        }
    else:
        deployment = {"num_replicas": engine.replicas}
    # Serve retries a failing replica constructor (up to 3 per replica) before DEPLOY_FAILED: each retry
    # imports and loads vLLM again, so a wrong engine argument took a minute to report.
    deployment["max_constructor_retry_count"] = engine.start_attempts
    runtime_env: dict[str, Any] = {}
    if gpus == 0:
        # vLLM's CPU build: one CPU-only bundle per replica (LLMConfig asks for a GPU otherwise).
        placement = {"bundles": [{"CPU": engine.cpus_per_replica}]}
        runtime_env["env_vars"] = {"VLLM_CPU_KVCACHE_SPACE": _gb(engine.cpu_kv_cache_gb), **cpu_threads(engine)}
        engine_kwargs.setdefault("enforce_eager", True)
        # vLLM's CPU rotary-embedding kernel, in bf16 and eager, parts from the reference implementation
        # within a few tokens (SmolLM2: "12 + 7 = 8", where transformers and vLLM's compiled path say 9):
        # PyTorch's own rotary embedding instead, measured 7% slower, gives transformers' greedy answers.
        engine_kwargs.setdefault("compilation_config", {"custom_ops": ["all", "-rotary_embedding"]})
        # The replica actor itself only relays requests: its CPUs are the bundle's, not one more.
        deployment["ray_actor_options"] = {"num_cpus": 0}
    else:
        per_worker = gpus / engine.tensor_parallel_size
        placement = {"bundles": [{"GPU": per_worker, "CPU": 1} for _ in range(engine.tensor_parallel_size)]}
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": model.served_model, "model_source": _model_source(source)},
        "engine_kwargs": engine_kwargs,
        "placement_group_config": placement,
        "deployment_config": deployment,
        "runtime_env": runtime_env or None,
        "log_engine_metrics": False,
    }
    if engine.accelerator_type:
        config["accelerator_type"] = engine.accelerator_type
    if not source.is_bucket:
        # Nothing to download on the replica's nodes: skip Serve LLM's per-node task (a vLLM import, ~20 s).
        config["callback_config"] = {"callback_class": "rayeval.serve_apps.node_init:LocalWeights"}
    return LLMConfig(**config)


def cpu_threads(engine: EngineSpec) -> dict[str, str]:
    """The environment that gives a CPU replica's engine the CPUs its bundle reserves, and no others.

    vLLM's CPU build pins its worker's OpenMP threads by itself (VLLM_CPU_OMP_THREADS_BIND=auto): to every
    core of the first NUMA node but one, the one it keeps for its scheduler. It does not know which CPUs
    Ray gave the replica, so every engine on a node is pinned to the same cores: on 2 cores, two replicas
    (or two tasks' models) all computed on core 0 while core 1 idled. Ray does not pin CPUs either, so the
    engine runs unpinned with as many threads as its bundle has CPUs, and the kernel spreads the engines.
    A VLLM_CPU_OMP_THREADS_BIND of your own (in the environment the deployment is made from: the CLI's, the
    job's) is passed on as it is: you know your nodes' cores.
    """
    return {
        "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND") or "nobind",
        "OMP_NUM_THREADS": str(max(1, int(engine.cpus_per_replica))),
    }


def _gb(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _model_source(source: ModelSource) -> Any:
    return {"bucket_uri": source.source} if source.is_bucket else source.source


def openai_app(model: ModelSpec, source: ModelSource | None = None) -> Application:
    """The OpenAI-compatible Serve application of one hosted model."""
    from ray.serve.llm import build_openai_app

    # The ingress only routes requests: no CPU of its own (the replica's bundle does the work).
    return build_openai_app(
        {
            "llm_configs": [llm_config(model, source)],
            "ingress_deployment_config": {"ray_actor_options": {"num_cpus": 0}},
        }
    )


def _connect_before_building() -> None:
    """Connect to the cluster `serve run` will deploy on, before the application is built.

    `serve run IMPORT_PATH` builds the application first and connects afterwards; Ray's LLM builder
    then connects on its own (Ray's auto-connect), to RAY_ADDRESS or else to a new local cluster, even
    when `serve run --address` names another: the model went to a stray local cluster. Connecting
    first, where `serve run` would (its `--address`, else RAY_ADDRESS, else a local cluster), puts it
    on the right one, and lets the replica's GPU request follow the cluster's GPUs.
    """
    import ray

    if ray.is_initialized():  # `serve deploy` builds on the cluster; rayeval itself is connected
        return
    address = _serve_run_address(sys.argv) or os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, namespace="serve")


def _serve_run_address(argv: list[str]) -> str | None:
    """The `--address`/`-a` of a `serve run` command line, if this process is one."""
    if not argv or os.path.basename(argv[0]) != "serve":
        return None
    for i, arg in enumerate(argv):
        if arg in ("--address", "-a") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--address="):
            return arg.split("=", 1)[1]
    return None


def build_app(args: dict[str, Any]) -> Application:
    """Serve application builder: `args` are ModelSpec fields (engine fields may also be given flat).

    `serve run rayeval.serve_apps.llm:build_app name=m path=/models/m max_model_len=4096` passes
    strings; numbers are converted by the spec's validation.
    """
    data = dict(args)
    engine = dict(data.pop("engine", None) or {})
    for key in list(data):
        if key in EngineSpec.model_fields or key == "MAX_MODEL_LEN":
            engine[key] = data.pop(key)
    data.setdefault("name", data.get("builtin") or "model")
    model = ModelSpec.model_validate({**data, "engine": engine})
    if not model.hosted:
        raise ValueError("build_app needs `path` (a checkpoint folder) or `builtin` (a registry name)")
    _connect_before_building()
    return openai_app(model)
