"""Where a task's processes run on a cluster of several nodes, and where its results go.

An `output` given as a URI (s3://, gs://, hdfs://, or file:///path on a filesystem every node mounts)
is shared storage: every process reaches the same files from any node. An `output` given as a plain
folder is on one disk: the disk of the node where the driver runs. Every process that touches it must
then run on that node: the coordinator (which keeps task records there; it lives on the head node),
the results writer, and the Ray Data tasks that read stored results back (reuse, pairwise judging).
rayeval pins those to the driver's node, and refuses a local folder when the driver is not on the
coordinator's node, since their disks differ.
"""

from __future__ import annotations

from typing import Any

from rayeval.errors import SpecError

__all__ = ["alive_nodes", "is_shared", "node_id", "output_node", "pinned"]


def is_shared(output: str) -> bool:
    """Whether an output location is shared storage (a URI) rather than a folder on one node's disk."""
    return "://" in output


def node_id() -> str:
    """The node this process runs on (connected to Ray)."""
    import ray

    return ray.get_runtime_context().get_node_id()


def alive_nodes() -> list[dict[str, Any]]:
    """The cluster's live nodes: {"id", "ip", "head", "resources"} each."""
    import ray

    return [
        {
            "id": n["NodeID"],
            "ip": n.get("NodeManagerAddress", ""),
            "head": "node:__internal_head__" in n.get("Resources", {}),
            "resources": {k: v for k, v in n.get("Resources", {}).items() if not k.startswith("node:")},
        }
        for n in ray.nodes()
        if n.get("Alive")
    ]


def output_node(output: str, coordinator_node: str | None) -> str | None:
    """The node every process that touches `output` must run on: this driver's node for a local folder
    (None for shared storage, which any node reaches).

    Raises:
        SpecError: `output` is a local folder, but the coordinator (which keeps the task's records in it)
            runs on another node than this driver, so their disks differ.
    """
    if is_shared(output):
        return None
    here = node_id()
    if coordinator_node is not None and coordinator_node != here:
        raise SpecError(
            f"output '{output}' is a local folder, but this driver runs on node {here[:12]} and the cluster's "
            f"coordinator, which keeps task records in the output, on node {coordinator_node[:12]}: their disks "
            "differ. Give shared storage every node reaches: a URI such as s3://bucket/path, gs://bucket/path, "
            "or file:///path on a filesystem every node mounts (or run the driver on the head node)",
            field="output",
        )
    return here


def pinned(node: str | None) -> dict[str, Any]:
    """Ray remote options that keep an actor or task on `node` (none when `node` is None)."""
    if node is None:
        return {}
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=False)}
