"""A cluster-wide bound on requests in flight to one model.

MAX_CONCURRENCY permits live in one named limiter actor per task and model. Inference actors
lease permits in blocks and keep them while they have requests waiting, so under load a permit
passes from one request to the next inside the actor with no round trip. An actor that runs out
asks the limiter for more (waiting until some are free); an actor whose permits stay idle for a
moment gives them back, so at ramp-up and at the tail the permits move to where the work is. The
leases never add up to more than MAX_CONCURRENCY, so the bound holds across actors and nodes.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque

import ray

from rayeval.cluster.placement import node_id, pinned

__all__ = ["ConcurrencyLimiter", "LeasedPermits", "LimiterGone", "create_limiter", "limiter_name"]

NAMESPACE = "rayeval"


@ray.remote(num_cpus=0, max_concurrency=1000)
class ConcurrencyLimiter:
    """An async actor holding `limit` permits and the leases taken from them.

    A holder that dies (an actor Ray Data scaled down, or one that crashed) cannot give its
    permits back, so while a request waits the limiter checks its holders every
    `check_every_s` and takes back the leases of the dead ones.
    """

    def __init__(self, limit: int, check_every_s: float = 1.0):
        self._available = limit
        self._held: dict[str, int] = defaultdict(int)
        self._handles: dict[str, ray.actor.ActorHandle] = {}
        self._changed = asyncio.Condition()
        self._check_every_s = check_every_s
        self._calls = {"acquire": 0, "release": 0}

    async def acquire(self, holder: str, want: int, handle: ray.actor.ActorHandle | None = None) -> int:
        """Lease up to `want` permits to `holder`, waiting until at least one is free."""
        self._calls["acquire"] += 1
        if handle is not None:
            self._handles[holder] = handle
        async with self._changed:
            while self._available <= 0:
                try:
                    await asyncio.wait_for(self._changed.wait(), self._check_every_s)
                except asyncio.TimeoutError:
                    await self._reclaim_dead()
            granted = min(want, self._available)
            self._available -= granted
            self._held[holder] += granted
            return granted

    async def _reclaim_dead(self) -> None:
        """Take back the leases of holders whose actor is gone (called with the lock held)."""
        for holder, count in list(self._held.items()):
            handle = self._handles.get(holder)
            if not count or handle is None:
                continue
            try:
                await asyncio.wait_for(handle.__ray_ready__.remote(), 10)
            except ray.exceptions.RayActorError:
                self._held[holder] = 0
                self._available += count
            except asyncio.TimeoutError:  # alive but busy: keep its lease
                pass

    async def release(self, holder: str, count: int) -> None:
        """Take `count` of a holder's permits back."""
        self._calls["release"] += 1
        async with self._changed:
            count = min(count, self._held[holder])
            self._held[holder] -= count
            self._available += count
            self._changed.notify_all()

    async def reset(self, holder: str) -> None:
        """Take back everything a holder leased (its previous incarnation died with them)."""
        await self.release(holder, self._held[holder])

    async def calls(self) -> dict[str, int]:
        """How many leases were asked for and given back (each one call to this actor)."""
        return dict(self._calls)

    async def leases(self) -> dict[str, int]:
        """Permits currently leased, by holder."""
        return {h: n for h, n in self._held.items() if n}


class LimiterGone(RuntimeError):
    """The run's limiter died while a request waited for a permit (the run ended, or failed)."""


class LeasedPermits:
    """An actor's local semaphore over permits leased from a ConcurrencyLimiter.

    Args:
        limiter: The limiter actor.
        holder: This actor's id (stable across restarts).
        limit: MAX_CONCURRENCY: never lease more than this.
        idle_return_s: How long permits may stay idle before they go back to the limiter.
    """

    def __init__(
        self,
        limiter: ray.actor.ActorHandle,
        holder: str,
        limit: int,
        idle_return_s: float = 0.05,
        handle: ray.actor.ActorHandle | None = None,
    ):
        self.limiter, self.holder, self.limit, self.idle_return_s = limiter, holder, limit, idle_return_s
        self.handle = handle
        self.held = 0
        self.in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._refilling = False
        self._return_timer: asyncio.TimerHandle | None = None

    async def acquire(self) -> None:
        """Wait for a permit."""
        if self.in_use < self.held and not self._waiters:
            self.in_use += 1
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        if not self._refilling:
            self._refilling = True
            asyncio.get_running_loop().create_task(self._refill())
        await future

    def release(self) -> None:
        """Hand a permit to the next waiting request, or let it go idle."""
        self.in_use -= 1
        if self._hand_over(1):
            return
        if self.in_use == 0:
            self._return_idle()  # nothing left to do here: give everything back now
        else:
            self._schedule_return()

    def _hand_over(self, count: int) -> int:
        given = 0
        while given < count and self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                self.in_use += 1
                future.set_result(None)
                given += 1
        return given

    async def _refill(self) -> None:
        try:
            while self._waiters and self.held < self.limit:
                want = min(len(self._waiters), self.limit - self.held)
                granted = await self.limiter.acquire.remote(self.holder, want, self.handle)
                self.held += granted
                if self._hand_over(granted) < granted:
                    self._schedule_return()
        except Exception as e:  # the limiter is gone (its run ended or failed): nobody waits forever
            while self._waiters:
                future = self._waiters.popleft()
                if not future.done():
                    future.set_exception(
                        LimiterGone(f"the concurrency limiter is gone ({type(e).__name__}): the run has ended")
                    )
        finally:
            self._refilling = False

    def _schedule_return(self) -> None:
        if self._return_timer is None:
            self._return_timer = asyncio.get_running_loop().call_later(self.idle_return_s, self._return_idle)

    def _return_idle(self) -> None:
        if self._return_timer is not None:
            self._return_timer.cancel()
            self._return_timer = None
        idle = self.held - self.in_use
        if idle > 0 and not self._waiters:
            self.held -= idle
            self.limiter.release.remote(self.holder, idle)


def limiter_name(task_id: str, model: str, epoch: int | None = None) -> str:
    """The registered name of the limiter for one task's model, in one run (`epoch`): runs never share
    one, so a superseded run that ends (and kills its limiters) cannot take the permits of the next."""
    run = "" if epoch is None else f"@{epoch}"
    return f"limiter:{task_id}{run}:{model}"


def create_limiter(task_id: str, model: str, limit: int, epoch: int | None = None) -> ray.actor.ActorHandle:
    """Create (or get) the named limiter; it lives as long as the driver that created it, on the driver's
    node (a worker node lost mid-run must not take the permits' bookkeeping with it)."""
    return ConcurrencyLimiter.options(
        name=limiter_name(task_id, model, epoch), namespace=NAMESPACE, get_if_exists=True, **pinned(node_id())
    ).remote(limit)
