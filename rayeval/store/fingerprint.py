"""Fingerprints of what changes a result, so that earlier results are reused only when still valid.

Names alone are unsafe for reuse (a changed prompt or temperature would silently reuse stale
answers), so every stored item carries:

* `item_fp`: the model (service URL and served id, or the checkpoint's weights and the engine
  settings that change outputs), the inference hyperparameters, and the item: its id, query,
  reference and other columns (in Evaluation Only mode, the given prediction too). Equal
  `item_fp` means the stored responses answer this very request about this very item.
* one fingerprint per metric (the `metric_fps` column, JSON): the metric's whole configuration
  (options, scripts' source, the judge's prompt, parser, sampling and model). With equal
  `item_fp`, an equal metric fingerprint means the stored score still holds.

Concurrency, retries, timeouts, actor counts and other performance settings are not part of
any fingerprint: they change how fast results come, not what they are.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection
from typing import Any

from rayeval.spec import MetricRef, ModelSpec, Parameters

__all__ = [
    "GIVEN_PREDICTIONS",
    "OUTPUT_PARAMETERS",
    "fp64_array",
    "item_fp_column",
    "inference_fingerprint",
    "metric_fingerprint",
    "model_identity",
]

#: Parameters that change what a model answers (the rest are performance settings).
OUTPUT_PARAMETERS = (
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "do_sample",
    "system_prompt",
    "inference_count",
)

#: Engine settings that change outputs (placement, replicas and cache sizes do not).
_OUTPUT_ENGINE = ("max_model_len", "dtype", "engine_kwargs")


def _digest(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:24]


def _weights_digest(source: str | None) -> str | None:
    """A local checkpoint's identity: config.json's content and every weight file's name and content
    (rayeval.store.content_digest: hashed once per file version, then read from a cache)."""
    from rayeval.store.content_digest import file_digest

    if not source or "://" in source or not os.path.isdir(source):
        return None
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(source)):
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, source)
            if name == "config.json":
                with open(path, "rb") as f:
                    h.update(rel.encode() + f.read())
            elif name.endswith((".safetensors", ".bin", ".pt", ".gguf")):
                h.update(f"{rel}:{file_digest(path)}".encode())
    return h.hexdigest()[:24]


def model_identity(model: ModelSpec, source: str | None = None) -> dict[str, Any]:
    """What identifies a model's answers: the service and served id, or the weights and engine settings.

    Args:
        model: The model (or judge).
        source: For hosted models, where the weights were resolved (ModelSource.source).
    """
    if model.kind == "service":
        return {"kind": "service", "url": (model.url or "").rstrip("/"), "model": model.served_model, "api": model.api}
    engine = model.engine.model_dump(mode="json", include=set(_OUTPUT_ENGINE))
    return {
        "kind": model.kind,
        "weights": model.path if model.kind == "checkpoint" else model.builtin,
        "content": _weights_digest(source),
        "model": model.served_model,
        "engine": engine,
    }


def inference_fingerprint(model: ModelSpec, params: Parameters, source: str | None = None) -> str:
    """The fingerprint of a model's requests, before the item's query is added."""
    return _digest(
        {"model": model_identity(model, source), "params": params.model_dump(include=set(OUTPUT_PARAMETERS))}
    )


#: The model fingerprint of Evaluation Only mode: the predictions are the set's, part of each item_fp.
GIVEN_PREDICTIONS = _digest({"kind": "given predictions"})

_ITEM_COLUMNS = ("item_id", "query", "reference", "fields")


def item_fp_column(batch: Any, model_fp: str, *, given: bool, likelihood_sets: Collection[str] = ()) -> list[str]:
    """`item_fp` of every row of a pyarrow table (the item columns of rayeval.schema.ITEM_SCHEMA).

    Args:
        model_fp: `inference_fingerprint` of the model, or GIVEN_PREDICTIONS in Evaluation Only mode.
        given: The predictions are the set's (Evaluation Only): they are part of the item.
        likelihood_sets: Sets scored by log-likelihood: their items' answers are the choices' log-likelihoods,
            not a written answer to the same query (so a set changing mode reuses nothing).
    """
    columns = [batch.column(c).to_pylist() for c in _ITEM_COLUMNS]
    if given:
        columns += [batch.column("prediction").to_pylist(), batch.column("samples").to_pylist()]
    if not likelihood_sets:
        return [_digest([model_fp, *values]) for values in zip(*columns)]
    sets = batch.column("eval_set").to_pylist()
    return [
        _digest([model_fp, "loglikelihood", *values] if s in likelihood_sets else [model_fp, *values])
        for s, values in zip(sets, zip(*columns))
    ]


def fp64_array(fps: list[str | None]) -> Any:
    """The first 64 bits of fingerprints, as a numpy uint64 array (0 for a missing one)."""
    import numpy as np

    return np.array([int(fp[:16], 16) if fp else 0 for fp in fps], dtype=np.uint64)


def metric_fingerprint(ref: MetricRef, judge_identity: dict[str, Any] | None = None) -> str:
    """A metric's configuration (a checked metric reference, with its scripts' source) and its judge."""
    data = ref.checked_data()
    keep = {k: v for k, v in data.items() if k not in ("preprocess", "postprocess", "prompt_file")}
    judge = keep.get("judge")
    if isinstance(judge, dict):
        keep["judge"] = {k: v for k, v in judge.items() if k != "prompt_file"}
    return _digest({"metric": keep, "judge": judge_identity})
