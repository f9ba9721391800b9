"""A cluster-wide bound on requests in flight to one model.

MAX_CONCURRENCY permits live in one named limiter actor per task and model. Each inference
actor leases a share of them once, when it starts (ceil(C / actors), fewer when fewer are left),
and then bounds its own requests with a local semaphore of that size. The shares never add up to
more than C, so the bound holds across actors and nodes, and no request pays a round trip to
the limiter. Leases are keyed by actor id, which survives a Ray actor restart, so a restarted
actor gets its own share back.
"""

from __future__ import annotations

import asyncio
import math

import ray

__all__ = ["ConcurrencyLimiter", "create_limiter", "limiter_name", "share_size"]

NAMESPACE = "rayeval"


def share_size(limit: int, actors: int) -> int:
    """Permits one of `actors` actors asks for."""
    return math.ceil(limit / max(1, actors))


@ray.remote(num_cpus=0, max_concurrency=1000)
class ConcurrencyLimiter:
    """An async actor handing out `limit` permits as per-actor leases."""

    def __init__(self, limit: int):
        self._limit = limit
        self._leases: dict[str, int] = {}
        self._freed = asyncio.Condition()

    def _available(self) -> int:
        return self._limit - sum(self._leases.values())

    async def lease(self, holder: str, want: int) -> int:
        """Lease up to `want` permits for `holder` (waits until at least one is free)."""
        if holder in self._leases:
            return self._leases[holder]
        async with self._freed:
            await self._freed.wait_for(lambda: self._available() > 0)
            self._leases[holder] = min(want, self._available())
        return self._leases[holder]

    async def release(self, holder: str) -> None:
        """Give a holder's permits back."""
        async with self._freed:
            self._leases.pop(holder, None)
            self._freed.notify_all()

    async def leases(self) -> dict[str, int]:
        """Current leases by holder."""
        return dict(self._leases)


def limiter_name(task_id: str, model: str) -> str:
    """The registered name of the limiter for one task's model."""
    return f"limiter:{task_id}:{model}"


def create_limiter(task_id: str, model: str, limit: int) -> ray.actor.ActorHandle:
    """Create (or get) the named limiter; it lives as long as the driver that created it."""
    return ConcurrencyLimiter.options(
        name=limiter_name(task_id, model), namespace=NAMESPACE, get_if_exists=True
    ).remote(limit)
