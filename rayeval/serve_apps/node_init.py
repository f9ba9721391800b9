"""Ray Serve LLM's node initialisation, skipped where it has nothing to fetch.

Before a replica starts its engine, Ray Serve LLM runs one Ray task on each node of the replica's
placement group to download the weights from a bucket. For a local folder (a checkpoint, a built-in
model) or a hub id, that task downloads nothing, but it is a new Ray worker that imports vLLM and
torch: about 20 s of every engine start on a CPU node. rayeval names this callback in the
`LLMConfig` of such models (see `rayeval.serve_apps.llm.llm_config`); bucket sources keep the task.
"""

from __future__ import annotations

import os

from ray.llm._internal.common.callbacks.base import CallbackBase

__all__ = ["LocalWeights"]


class LocalWeights(CallbackBase):
    """Skips the per-node download tasks: the weights are already where the engine reads them."""

    async def on_before_node_init(self) -> None:
        self.ctx.run_init_node = False
        # What the skipped task also did, on this node: torch cannot create its kernels folder itself.
        import torch

        os.makedirs(os.path.join(torch.hub._get_torch_home(), "kernels"), exist_ok=True)
