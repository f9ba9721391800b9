"""A cluster-wide bound on requests in flight to one model.

Every inference actor of a task asks the same named limiter for a permit before each request,
so MAX_CONCURRENCY holds across actors and nodes, not per actor.
"""

from __future__ import annotations

import asyncio

import ray

__all__ = ["ConcurrencyLimiter", "create_limiter", "limiter_name"]

NAMESPACE = "rayeval"


@ray.remote(num_cpus=0, max_concurrency=100_000)
class ConcurrencyLimiter:
    """An async actor holding `limit` permits."""

    def __init__(self, limit: int):
        self._limit = limit
        self._sem = asyncio.Semaphore(limit)

    async def acquire(self) -> None:
        """Wait for a permit."""
        await self._sem.acquire()

    async def release(self) -> None:
        """Give a permit back."""
        self._sem.release()

    async def in_use(self) -> int:
        """Permits currently held."""
        return self._limit - self._sem._value


def limiter_name(task_id: str, model: str) -> str:
    """The registered name of the limiter for one task's model."""
    return f"limiter:{task_id}:{model}"


def create_limiter(task_id: str, model: str, limit: int) -> ray.actor.ActorHandle:
    """Create (or get) the named limiter; it lives as long as the driver that created it."""
    return ConcurrencyLimiter.options(
        name=limiter_name(task_id, model), namespace=NAMESPACE, get_if_exists=True
    ).remote(limit)
