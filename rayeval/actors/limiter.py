"""A cluster-wide bound on requests in flight to one model.

MAX_CONCURRENCY permits live in one named limiter actor per task and model. Inference actors
lease permits in blocks and keep them while they have requests waiting, so under load a permit
passes from one request to the next inside the actor with no round trip. An actor that runs out
asks the limiter for more (waiting until some are free); an actor whose permits stay idle for a
moment gives them back, so at ramp-up and at the tail the permits move to where the work is. The
leases never add up to more than MAX_CONCURRENCY, so the bound holds across actors and nodes.

Inside an actor, waiting requests get permits oldest batch first (`acquire(priority)`): a batch
whose item waits out a retry's backoff is finished before newer batches are started, so the
batches in the actor do not all end at once, each waiting on its last retries while the permits
sit idle; newer batches use the permits in the meantime.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import defaultdict

import ray

from rayeval.cluster.placement import node_id, pinned

__all__ = ["ConcurrencyLimiter", "LeasedPermits", "LimiterGone", "create_limiter", "limiter_name"]

NAMESPACE = "rayeval"


@ray.remote(num_cpus=0, max_concurrency=1000)
class ConcurrencyLimiter:
    """An async actor holding `limit` permits and the leases taken from them.

    A holder that dies (an actor Ray Data scaled down, or one that crashed) cannot give its
    permits back, so while a request waits the limiter checks its holders every
    `check_every_s` and takes back the leases of the dead ones. A holder that Ray restarts (a lost
    node's actors come back elsewhere under the same actor id) calls `reset` first, which takes back
    its previous incarnation's leases and numbers the new one; a request of the dead incarnation still
    waiting here is then granted nothing (else the permits would go to a caller that no longer exists,
    and every request of the run would wait for them forever).
    """

    def __init__(self, limit: int, check_every_s: float = 1.0):
        self._available = limit
        self._held: dict[str, int] = defaultdict(int)
        self._handles: dict[str, ray.actor.ActorHandle] = {}
        self._changed = asyncio.Condition()
        self._check_every_s = check_every_s
        self._calls = {"acquire": 0, "release": 0}
        self._reclaiming: asyncio.Task | None = None
        self._incarnations: dict[str, int] = defaultdict(int)

    async def acquire(
        self, holder: str, want: int, handle: ray.actor.ActorHandle | None = None, incarnation: int | None = None
    ) -> int:
        """Lease up to `want` permits to `holder`, waiting until at least one is free; nothing to an
        `incarnation` of the holder that a restart (`reset`) has replaced."""
        self._calls["acquire"] += 1
        if handle is not None:
            self._handles[holder] = handle
        async with self._changed:
            while self._available <= 0 and not self._stale(holder, incarnation):
                try:
                    await asyncio.wait_for(self._changed.wait(), self._check_every_s)
                except asyncio.TimeoutError:
                    self._look_for_dead_holders()
            if self._stale(holder, incarnation):
                return 0
            granted = min(want, self._available)
            self._available -= granted
            self._held[holder] += granted
            return granted

    def _look_for_dead_holders(self) -> None:
        """Start `_reclaim_dead` unless it is running: it runs beside the waiting requests, never holding
        the lock while it waits for holders to answer (a busy holder may take seconds to)."""
        if self._reclaiming is None or self._reclaiming.done():
            self._reclaiming = asyncio.get_running_loop().create_task(self._reclaim_dead())

    async def _reclaim_dead(self) -> None:
        """Take back the leases of holders whose actor is gone."""
        holders = [h for h, count in self._held.items() if count and h in self._handles]
        gone = await asyncio.gather(*(_is_gone(self._handles[h]) for h in holders))
        dead = [h for h, g in zip(holders, gone) if g]
        if not dead:
            return
        async with self._changed:
            for holder in dead:
                self._available += self._held[holder]
                self._held[holder] = 0
            self._changed.notify_all()

    def _stale(self, holder: str, incarnation: int | None) -> bool:
        return incarnation is not None and incarnation != self._incarnations[holder]

    async def release(self, holder: str, count: int, incarnation: int | None = None) -> None:
        """Take `count` of a holder's permits back (a replaced incarnation's were taken back by `reset`)."""
        self._calls["release"] += 1
        async with self._changed:
            if self._stale(holder, incarnation):
                return
            count = min(count, self._held[holder])
            self._held[holder] -= count
            self._available += count
            self._changed.notify_all()

    async def reset(self, holder: str) -> int:
        """A holder (re)starts: take back everything it leased (its previous incarnation died with them),
        wake that incarnation's waiting requests to be refused, and return the new incarnation's number."""
        async with self._changed:
            self._incarnations[holder] += 1
            self._available += self._held[holder]
            self._held[holder] = 0
            self._changed.notify_all()
            return self._incarnations[holder]

    async def calls(self) -> dict[str, int]:
        """How many leases were asked for and given back (each one call to this actor)."""
        return dict(self._calls)

    async def leases(self) -> dict[str, int]:
        """Permits currently leased, by holder."""
        return {h: n for h, n in self._held.items() if n}


async def _is_gone(handle: ray.actor.ActorHandle, wait_s: float = 10.0) -> bool:
    """Whether a holder's actor is dead: a call to it fails so; one that takes past `wait_s` is a busy
    actor's (all its threads taken by batches), which keeps its lease."""
    try:
        await asyncio.wait_for(handle.__ray_ready__.remote(), wait_s)
    except ray.exceptions.RayActorError:
        return True
    except asyncio.TimeoutError:
        pass
    return False


class LimiterGone(RuntimeError):
    """The run's limiter died while a request waited for a permit (the run ended, or failed)."""


class LeasedPermits:
    """An actor's local semaphore over permits leased from a ConcurrencyLimiter.

    Args:
        limiter: The limiter actor.
        holder: This actor's id (stable across restarts).
        limit: MAX_CONCURRENCY: never lease more than this.
        idle_return_s: How long permits may stay idle before they go back to the limiter.
        handle: This actor's handle (the limiter asks it whether it is alive).
        incarnation: What `reset` returned when this actor started (None: no restart check).
    """

    def __init__(
        self,
        limiter: ray.actor.ActorHandle,
        holder: str,
        limit: int,
        idle_return_s: float = 0.05,
        handle: ray.actor.ActorHandle | None = None,
        incarnation: int | None = None,
    ):
        self.limiter, self.holder, self.limit, self.idle_return_s = limiter, holder, limit, idle_return_s
        self.handle, self.incarnation = handle, incarnation
        self.held = 0
        self.in_use = 0
        #: (priority, arrival, future): the lowest priority is served first, then the earliest.
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._refilling = False
        self._return_timer: asyncio.TimerHandle | None = None

    async def acquire(self, priority: int = 0) -> None:
        """Wait for a permit; waiting requests are served lowest `priority` first, then in arrival order."""
        if self.in_use < self.held and not self._waiters:
            self.in_use += 1
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._arrivals), future))
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
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                self.in_use += 1
                future.set_result(None)
                given += 1
        return given

    async def _refill(self) -> None:
        try:
            while self._waiters and self.held < self.limit:
                want = min(len(self._waiters), self.limit - self.held)
                granted = await self.limiter.acquire.remote(self.holder, want, self.handle, self.incarnation)
                if not granted:  # this incarnation was replaced: its requests go nowhere
                    raise LimiterGone("this actor was restarted")
                self.held += granted
                if self._hand_over(granted) < granted:
                    self._schedule_return()
        except Exception as e:  # the limiter is gone (its run ended or failed): nobody waits forever
            while self._waiters:
                _, _, future = heapq.heappop(self._waiters)
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
            self.limiter.release.remote(self.holder, idle, self.incarnation)


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
