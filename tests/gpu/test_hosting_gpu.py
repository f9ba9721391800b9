"""The hosted-model tests again on a GPU node: replicas take a GPU, vLLM's CUDA build serves them.

The tests are the ones of tests/serve_apps/test_hosting.py (imported, so they run here with the
same assertions); on a node with GPUs the engine spec's default `gpus_per_replica` becomes
`tensor_parallel_size`, so the same task files deploy onto the GPU. Skipped without a GPU.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest


def _has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=30).returncode == 0


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _has_gpu(), reason="needs a GPU (nvidia-smi -L)")]

if _has_gpu():
    from tests.serve_apps.test_hosting import (  # noqa: F401  (collected here, on the GPU)
        hosted,
        test_a_failed_deployment_fails_the_task_and_leaves_no_replicas,
        test_a_task_deploys_its_own_model_and_takes_it_down,
        test_greedy_repeats_and_top_k_and_repetition_penalty_reach_the_engine,
        test_max_model_len_is_enforced_per_item_and_max_tokens_clipped,
        test_the_official_openai_client_gets_chat_completions_and_models,
    )


def test_replicas_are_placed_on_the_gpu(ray_cluster):
    import ray

    from rayeval.serve_apps.llm import llm_config
    from rayeval.spec import ModelSpec

    assert ray.cluster_resources().get("GPU", 0) >= 1
    model = ModelSpec.model_validate({"name": "g", "builtin": "tiny-random-llama", "engine": {"max_model_len": 256}})
    bundles = llm_config(model).model_dump()["placement_group_config"]["bundles"]
    assert bundles == [{"GPU": 1.0, "CPU": 1}]
