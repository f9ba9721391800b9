"""What rayeval's work asks of the cluster: the options of its actor pools."""

from __future__ import annotations

from typing import Any

from rayeval.spec import ResourceSpec

__all__ = ["request_actor_options"]


def request_actor_options(res: ResourceSpec) -> dict[str, Any]:
    """map_batches options of the stages whose actors send requests (inference, judging): pyarrow
    batches, an actor pool of `inference_actors`, each running several batches at once (async)."""
    import ray.data

    return {
        "batch_format": "pyarrow",
        "batch_size": res.batch_size,
        "compute": ray.data.ActorPoolStrategy(size=res.inference_actors, max_concurrent_calls_per_actor=4),
        "num_cpus": res.actor_num_cpus,
    }
