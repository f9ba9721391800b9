"""Saying what a task waits for when the cluster cannot place its actors, and giving up in time.

An actor pool, the results writer or a hosted model's replicas may ask for more than the cluster has:
more CPUs than are free, a GPU no node has, a custom resource no node declares. Ray then keeps them
pending, silently. `ResourceWatch` looks at this job's actors in Ray's actor table (no dashboard
needed), says which stage waits, how many actors, for how long and for what, and after the task's
`resources.wait_timeout_s` gives the error to fail with, naming the resource and what the cluster has.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ResourceWatch", "StageWait", "describe_cluster", "missing"]

#: Actor classes -> the stage they serve (Ray Data names a pool's actors after the callable class).
_STAGES = {
    "InferenceActor": "inference",
    "JudgeActor": "judging",
    "PairwiseActor": "judging",
    "ScoringActor": "scoring",
    "ResultWriter": "writer",
}
#: Actor states that mean "not placed yet".
_PENDING = {"PENDING_CREATION", "DEPENDENCIES_UNREADY"}
#: Seconds an actor may be pending before it counts as waiting (starting a worker takes a moment).
SETTLE_S = 3.0


@dataclass
class StageWait:
    """A stage whose actors the cluster cannot place (yet)."""

    stage: str
    actors: int
    since: float
    needs: dict[str, float] = field(default_factory=dict)

    def describe(self, now: float | None = None) -> str:
        """'2 inference actors (each CPU 0.25, io 0.01) for 35 s'."""
        waited = (time.time() if now is None else now) - self.since
        each = ", ".join(f"{k} {v:g}" for k, v in sorted(self.needs.items()))
        plural = "s" if self.actors != 1 else ""
        needs = f" (each {each})" if each else ""
        return f"{self.actors} {self.stage} actor{plural}{needs} for {waited:.0f} s"

    def as_record(self) -> dict[str, Any]:
        """The wait as the task record keeps it."""
        return {"stage": self.stage, "actors": self.actors, "since": self.since, "needs": self.needs}


def _free_by_node() -> dict[str, dict[str, float]]:
    """node id -> what it has free now (Ray's developer API for it)."""
    from ray._private.state import available_resources_per_node

    return available_resources_per_node()


def _fits(needs: dict[str, float], free: list[dict[str, float]]) -> bool:
    """Whether some node has `needs` free now."""
    return any(all(node.get(k, 0) >= v for k, v in needs.items()) for node in free)


def _nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def missing(needs: dict[str, float], nodes: list[dict[str, Any]] | None = None) -> list[str]:
    """The resources of `needs` that no live node has enough of in total (not just free now)."""
    nodes = _nodes() if nodes is None else nodes
    return sorted(k for k, v in needs.items() if not any(n.get("Resources", {}).get(k, 0) >= v for n in nodes))


def describe_cluster(nodes: list[dict[str, Any]] | None = None) -> str:
    """'2 nodes: 192.0.2.2 (head) CPU 4/1.5 free, GPU 0; 192.0.2.3 CPU 2/2 free, io 1/1 free'."""

    nodes = _nodes() if nodes is None else nodes
    try:
        free = _free_by_node()
    except Exception:  # a developer API: without it, totals only
        free = {}
    parts = []
    for n in nodes:
        total = {k: v for k, v in n.get("Resources", {}).items() if not k.startswith("node:") and "memory" not in k}
        avail = free.get(n["NodeID"], {})
        shown = ", ".join(
            f"{k} {v:g}" + (f" ({avail.get(k, 0):g} free)" if free else "") for k, v in sorted(total.items())
        )
        head = " (head)" if "node:__internal_head__" in n.get("Resources", {}) else ""
        parts.append(f"{n.get('NodeManagerAddress', '?')}{head}: {shown or 'nothing'}")
    return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}: " + "; ".join(parts)


class ResourceWatch:
    """Watches this job's pending actors; `poll()` reports waits and returns the error past the timeout.

    Args:
        needs: stage -> the resources each of its actors asks for.
        timeout_s: How long a stage may wait before the task fails.
        report: Called with the current waits (as records) whenever they change.
        log: Called with a line when a stage starts or stops waiting.
        every_s: Seconds between looks at the actor table.
    """

    def __init__(
        self,
        needs: dict[str, dict[str, float]],
        timeout_s: float,
        report: Callable[[list[dict[str, Any]]], None],
        log: Callable[[str], None],
        every_s: float = 2.0,
    ):
        import ray

        self.job = ray.get_runtime_context().get_job_id()
        self.needs, self.timeout_s, self.report, self.log, self.every_s = needs, timeout_s, report, log, every_s
        self.waits: dict[str, StageWait] = {}
        self._first_seen: dict[str, float] = {}
        self._last = 0.0

    def pending(self) -> dict[str, int]:
        """stage -> actors of this job not placed yet."""
        from ray._private.state import state

        counts: dict[str, int] = {}
        for info in state.actor_table(None).values():
            if info.get("JobID") != self.job or info.get("State") not in _PENDING:
                continue
            name = info.get("ActorClassName", "")
            stage = next((s for cls, s in _STAGES.items() if cls in name), None)
            if stage is not None:
                counts[stage] = counts.get(stage, 0) + 1
        return counts

    def poll(self, *, force: bool = False) -> str | None:
        """Look again (at most every `every_s`); the error to fail with once a stage waited past the timeout."""
        now = time.time()
        if not force and now - self._last < self.every_s:
            return self._overdue(now)
        self._last = now
        try:
            counts = self.pending()
            if counts:  # an actor whose resources are free somewhere is only starting (a worker process)
                free = list(_free_by_node().values())
                counts = {s: n for s, n in counts.items() if not _fits(self.needs.get(s, {}), free)}
        except Exception:  # the GCS is briefly unreachable: look again next time
            return self._overdue(now)
        for stage in list(self._first_seen):
            if stage not in counts:
                del self._first_seen[stage]
        changed = False
        for stage, n in counts.items():
            first = self._first_seen.setdefault(stage, now)
            if now - first < SETTLE_S:
                continue
            wait = self.waits.get(stage)
            if wait is None:
                self.waits[stage] = StageWait(stage, n, first, dict(self.needs.get(stage, {})))
                self.log(f"waiting for resources: {self.waits[stage].describe(now)}; {describe_cluster()}")
                changed = True
            elif wait.actors != n:
                wait.actors, changed = n, True
        for stage in [s for s in self.waits if s not in counts]:
            self.log(f"resources found: the {stage} actors are placed after {now - self.waits[stage].since:.0f} s")
            del self.waits[stage]
            changed = True
        if changed:
            self.report([w.as_record() for w in self.waits.values()])
        return self._overdue(now)

    def _overdue(self, now: float) -> str | None:
        for wait in self.waits.values():
            if now - wait.since >= self.timeout_s:
                lacking = missing(wait.needs)
                why = (
                    f"no node has {', '.join(lacking)}"
                    if lacking
                    else "the nodes that have these resources are busy or too small for them"
                )
                return (
                    f"waited {now - wait.since:.0f} s (resources.wait_timeout_s) for {wait.describe(now)}: {why}; "
                    f"the cluster has {describe_cluster()}. Add nodes that have them (or let the autoscaler), ask "
                    "for less (resources.actor_num_cpus, resources.stage_resources), or raise resources.wait_timeout_s"
                )
        return None
