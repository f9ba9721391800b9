"""What rayeval's work asks of the cluster: the options of its actor pools, stage by stage."""

from __future__ import annotations

from typing import Any

from rayeval.spec import ResourceSpec, Stage

__all__ = ["BATCHES_PER_REQUEST_ACTOR", "request_actor_options", "scoring_actor_options", "stage_options"]


def stage_options(res: ResourceSpec, stage: Stage) -> dict[str, Any]:
    """Ray remote options of one stage's actors: the custom resources the task names for it, if any."""
    wanted = res.stage_resources.get(stage)
    return {"resources": dict(wanted)} if wanted else {}


#: Batches a request actor (inference, judging) works on at once.
BATCHES_PER_REQUEST_ACTOR = 16


def request_actor_options(res: ResourceSpec, stage: Stage) -> dict[str, Any]:
    """map_batches options of the stages whose actors send requests (inference, judging): pyarrow
    batches, an actor pool of `inference_actors`, each running several batches at once (async)."""
    import ray.data

    return {
        "batch_format": "pyarrow",
        "batch_size": res.batch_size,
        # Each batch waits for its requests in a thread of its own (rayeval.inference.loop): enough of
        # them that batches whose last items wait out a retry's backoff leave others to use the permits.
        "compute": ray.data.ActorPoolStrategy(
            size=res.inference_actors,
            max_concurrent_calls_per_actor=BATCHES_PER_REQUEST_ACTOR,
            enable_true_multi_threading=True,
        ),
        "num_cpus": res.actor_num_cpus,
        **stage_options(res, stage),
    }


def scoring_actor_options(res: ResourceSpec) -> dict[str, Any]:
    """map_batches options of the scoring stage: bigger batches, a pool of `scoring_actors`."""
    import ray.data

    return {
        "batch_format": "pyarrow",
        "batch_size": res.batch_size * 4,
        "compute": ray.data.ActorPoolStrategy(size=res.scoring_actors),
        "num_cpus": res.actor_num_cpus,
        **stage_options(res, "scoring"),
    }
