"""From a hosted model spec to Ray Serve LLM's config: placement, engine settings, names, and errors."""

from __future__ import annotations

import json

import pytest

from rayeval.errors import ServiceError, SpecError
from rayeval.serve_apps.builtins import BUILTIN_MODELS, ModelSource, resolve_source
from rayeval.serve_apps.llm import app_name, build_app, check_engine, effective_engine, llm_config
from rayeval.serve_apps.tiny_model import build_tiny_model
from rayeval.spec import ModelSpec


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("ckpt") / "tiny", max_position_embeddings=512)


def _model(checkpoint, **engine):
    return ModelSpec.model_validate({"name": "m", "path": str(checkpoint), "engine": engine})


def test_kind_is_inferred_and_checked():
    assert ModelSpec.model_validate({"name": "a", "path": "/x"}).kind == "checkpoint"
    assert ModelSpec.model_validate({"name": "a", "builtin": "tiny-random-llama"}).hosted
    assert not ModelSpec.model_validate({"name": "a", "url": "http://127.0.0.1:1/v1"}).hosted
    with pytest.raises(ValueError, match="drop `url`"):
        ModelSpec.model_validate({"name": "a", "path": "/x", "url": "http://127.0.0.1:1/v1"})
    with pytest.raises(ValueError, match="needs `builtin`"):
        ModelSpec.model_validate({"name": "a", "kind": "builtin"})
    with pytest.raises(ValueError, match="set both min_replicas and max_replicas"):
        ModelSpec.model_validate({"name": "a", "path": "/x", "engine": {"min_replicas": 1}})
    with pytest.raises(ValueError, match="use the engine fields"):
        ModelSpec.model_validate({"name": "a", "path": "/x", "engine": {"engine_kwargs": {"max_model_len": 9}}})
    assert (
        ModelSpec.model_validate({"name": "a", "path": "/x", "engine": {"MAX_MODEL_LEN": 512}}).engine.max_model_len
        == 512
    )
    assert ModelSpec.model_validate({"name": "a", "path": "/x"}).engine.max_model_len == 8192


def test_cpu_config_asks_for_cpu_bundles_and_passes_engine_settings(ray_cluster, checkpoint, monkeypatch):
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    model = _model(checkpoint, max_model_len=256, dtype="bfloat16", engine_kwargs={"seed": 3}, cpu_kv_cache_gb=2)
    cfg = llm_config(model).model_dump()
    assert cfg["placement_group_config"] == {"bundles": [{"CPU": 1.0}]}
    # its bundle's CPUs as threads, unpinned: vLLM's own binding put every engine of a node on one core
    assert cfg["runtime_env"]["env_vars"] == {
        "VLLM_CPU_KVCACHE_SPACE": "2",
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
        "OMP_NUM_THREADS": "1",
    }
    wide = llm_config(_model(checkpoint, cpus_per_replica=3)).model_dump()
    assert wide["placement_group_config"] == {"bundles": [{"CPU": 3.0}]}
    assert wide["runtime_env"]["env_vars"]["OMP_NUM_THREADS"] == "3"
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0-1|2-3")  # a binding of the user's own is theirs
    assert llm_config(model).model_dump()["runtime_env"]["env_vars"]["VLLM_CPU_OMP_THREADS_BIND"] == "0-1|2-3"
    assert cfg["engine_kwargs"]["max_model_len"] == 256 and cfg["engine_kwargs"]["seed"] == 3
    assert cfg["engine_kwargs"]["dtype"] == "bfloat16" and cfg["engine_kwargs"]["enforce_eager"] is True
    # PyTorch's rotary embedding, not vLLM's CPU kernel (whose bf16 answers part from transformers')
    assert cfg["engine_kwargs"]["compilation_config"] == {"custom_ops": ["all", "-rotary_embedding"]}
    assert cfg["model_loading_config"]["model_id"] == "m"
    assert cfg["deployment_config"] == {
        "num_replicas": 1,
        "max_constructor_retry_count": 1,  # a broken engine fails in one start, not three
        "ray_actor_options": {"num_cpus": 0},
    }
    scaled = llm_config(_model(checkpoint, min_replicas=1, max_replicas=3, start_attempts=4)).model_dump()
    assert scaled["deployment_config"]["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 3}
    assert scaled["deployment_config"]["max_constructor_retry_count"] == 4
    # local weights: Serve LLM's per-node download task (a worker importing vLLM) is skipped
    assert cfg["callback_config"]["callback_class"] == "rayeval.serve_apps.node_init:LocalWeights"
    bucket = llm_config(model, ModelSource("s3://bucket/m", str(checkpoint))).model_dump()  # downloads: kept
    assert bucket["model_loading_config"]["model_source"]["bucket_uri"] == "s3://bucket/m"
    assert bucket["callback_config"]["callback_class"] != "rayeval.serve_apps.node_init:LocalWeights"


def test_gpu_config_spreads_tensor_parallel_workers(ray_cluster, checkpoint):
    cfg = llm_config(_model(checkpoint, gpus_per_replica=2, tensor_parallel_size=2, accelerator_type="H100"))
    dumped = cfg.model_dump()
    assert dumped["placement_group_config"] == {"bundles": [{"GPU": 1.0, "CPU": 1}, {"GPU": 1.0, "CPU": 1}]}
    assert dumped["accelerator_type"] == "H100" and dumped["engine_kwargs"]["tensor_parallel_size"] == 2
    assert "enforce_eager" not in dumped["engine_kwargs"] and "compilation_config" not in dumped["engine_kwargs"]


def test_same_model_and_engine_share_an_app_name(checkpoint):
    source = resolve_source(_model(checkpoint))
    a = app_name(_model(checkpoint, max_model_len=256, keep=True), source)
    b = app_name(_model(checkpoint, max_model_len=256, deploy_timeout_s=5, start_attempts=3), source)
    c = app_name(_model(checkpoint, max_model_len=128), source)
    assert a == b != c and a.startswith("rayeval-m-")


def test_builtin_defaults_sit_under_what_the_task_sets():
    model = ModelSpec.model_validate(
        {"name": "t", "builtin": "tiny-random-llama", "engine": {"max_model_len": 64, "engine_kwargs": {"seed": 1}}}
    )
    engine = effective_engine(model)
    assert engine.dtype == BUILTIN_MODELS["tiny-random-llama"].engine["dtype"]
    assert engine.max_model_len == 64 and engine.engine_kwargs == {"enforce_eager": True, "seed": 1}


def test_bad_sources_say_what_to_fix(tmp_path, checkpoint, monkeypatch):
    with pytest.raises(SpecError, match="does not exist"):
        resolve_source(_model(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match="no config.json"):
        resolve_source(_model(tmp_path / "empty"))
    with pytest.raises(SpecError, match="local folder or s3://"):
        resolve_source(ModelSpec.model_validate({"name": "m", "path": "hdfs://nn/models/m"}))
    with pytest.raises(SpecError, match="built-in models: .*tiny-random-llama"):
        resolve_source(ModelSpec.model_validate({"name": "m", "builtin": "no-such-model"}))
    with pytest.raises(SpecError, match="exceeds the model's context length \\(512"):
        check_engine(_model(checkpoint, max_model_len=1024), resolve_source(_model(checkpoint)))
    assert resolve_source(_model(checkpoint)).tokenizer == str(checkpoint)


def test_a_hub_model_without_the_hub_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # loopback port with nothing behind it
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model = ModelSpec.model_validate({"name": "q", "builtin": "qwen2.5-0.5b-instruct"})
    with pytest.raises(ServiceError, match="cannot be reached.*kind: checkpoint"):
        resolve_source(model)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ServiceError, match="HF_HUB_OFFLINE"):
        resolve_source(model)


def test_serve_builder_takes_flat_string_args(ray_cluster, checkpoint):
    app = build_app({"name": "cli-model", "path": str(checkpoint), "max_model_len": "128"})
    assert type(app).__name__ == "Application"
    with pytest.raises(ValueError, match="needs `path`"):
        build_app({"name": "x", "url": "http://127.0.0.1:1/v1"})


def test_tiny_model_is_deterministic_and_has_a_chat_template(tmp_path):
    a = build_tiny_model(tmp_path / "a", seed=1)
    b = build_tiny_model(tmp_path / "b", seed=1)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    config = json.loads((a / "config.json").read_text())
    assert config["hidden_size"] // config["num_attention_heads"] >= 32  # vLLM's CPU attention needs it
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(a)
    text = tok.apply_chat_template([{"role": "user", "content": "2 + 2?"}], add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|assistant|>\n") and "2 + 2?" in text


def test_the_builder_reads_the_address_of_a_serve_run_command_line():
    from rayeval.serve_apps.llm import _serve_run_address

    assert _serve_run_address(["/venv/bin/serve", "run", "--address", "head:6379", "m:app"]) == "head:6379"
    assert _serve_run_address(["/venv/bin/serve", "run", "-a", "head:6379", "m:app"]) == "head:6379"
    assert _serve_run_address(["/venv/bin/serve", "run", "--address=head:6379", "m:app"]) == "head:6379"
    assert _serve_run_address(["/venv/bin/serve", "run", "m:app", "name=x"]) is None  # RAY_ADDRESS, or local
    assert _serve_run_address(["/venv/bin/python", "-m", "pytest", "--address", "x"]) is None  # not serve run
