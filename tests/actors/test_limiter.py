"""The concurrency limiter: leases never exceed the limit, and move to where the work is."""

from __future__ import annotations

import asyncio
import time

import ray

from rayeval.actors.limiter import LeasedPermits, create_limiter


def test_leases_never_exceed_the_limit_and_are_taken_back(ray_cluster):
    limiter = create_limiter("limiter-test", "m", 5)
    assert ray.get(limiter.acquire.remote("a", 3)) == 3
    assert ray.get(limiter.acquire.remote("b", 4)) == 2  # only 2 left
    waiting = limiter.acquire.remote("c", 2)  # nothing left: waits
    assert not ray.wait([waiting], timeout=0.5)[0]
    ray.get(limiter.release.remote("b", 1))
    assert ray.get(waiting, timeout=10) == 1
    ray.get(limiter.reset.remote("a"))  # a restarted holder gives back what its predecessor held
    assert ray.get(limiter.leases.remote()) == {"b": 1, "c": 1}
    ray.kill(limiter)


def test_a_restarted_holders_old_requests_get_nothing(ray_cluster):
    """A lost node's actor is restarted under the same id while a request of its dead incarnation still
    waits in the limiter: once permits free up, they must not go to that request (its reply goes
    nowhere, and the permits would be held by nobody for the rest of the run)."""
    limiter = create_limiter("limiter-restart", "m", 2)
    first = ray.get(limiter.reset.remote("a"))
    assert ray.get(limiter.acquire.remote("a", 2, None, first)) == 2
    orphan = limiter.acquire.remote("a", 2, None, first)  # the dead incarnation's refill, waiting
    assert not ray.wait([orphan], timeout=0.3)[0]
    second = ray.get(limiter.reset.remote("a"))  # the restarted actor: takes back the 2, new number
    assert second == first + 1
    assert ray.get(orphan, timeout=10) == 0  # refused, not granted
    assert ray.get(limiter.leases.remote()) == {}
    ray.get(limiter.release.remote("a", 2, first))  # a late release of the old incarnation changes nothing
    assert ray.get(limiter.acquire.remote("b", 2)) == 2  # every permit is still there for the living
    ray.get(limiter.release.remote("b", 2))
    assert ray.get(limiter.acquire.remote("a", 1, None, second), timeout=10) == 1  # the new incarnation's
    ray.kill(limiter)


@ray.remote(num_cpus=0)
class _Holder:
    """Stands in for an inference actor: runs `n` fake requests of `seconds` each under leased permits."""

    def __init__(self, limiter, name: str, limit: int):
        self.permits = LeasedPermits(limiter, name, limit, handle=ray.get_runtime_context().current_actor)

    async def grab(self, n: int) -> int:
        """Take `n` permits and keep them (as an actor killed mid-request would)."""
        for _ in range(n):
            await self.permits.acquire()
        return self.permits.held

    async def run(self, n: int, seconds: float) -> list[tuple[float, float]]:
        """(start, end) wall-clock times of each fake request, to check overlap across actors."""

        async def one():
            await self.permits.acquire()
            start = time.time()
            await asyncio.sleep(seconds)
            end = time.time()
            self.permits.release()
            return start, end

        return await asyncio.gather(*(one() for _ in range(n)))

    async def held(self) -> int:
        return self.permits.held

    async def ordered(self, priorities: list[int], seconds: float) -> list[int]:
        """Requests of the given priorities, all waiting at once: the priorities in the order served."""
        served: list[int] = []

        async def one(priority: int):
            await self.permits.acquire(priority)
            served.append(priority)
            await asyncio.sleep(seconds)
            self.permits.release()

        await asyncio.gather(*(one(p) for p in priorities))
        return served


def test_permits_move_from_an_idle_actor_to_a_busy_one(ray_cluster):
    limiter = create_limiter("limiter-move", "m", 6)
    a, b = _Holder.remote(limiter, "a", 6), _Holder.remote(limiter, "b", 6)
    assert _peak(ray.get(a.run.remote(12, 0.2))) == 6  # a alone gets every permit
    assert _peak(ray.get(b.run.remote(12, 0.2))) == 6  # a went idle and gave them back: b gets them all
    a_times, b_times = ray.get([a.run.remote(60, 0.05), b.run.remote(60, 0.05)])
    assert _peak(a_times + b_times) == 6  # together never more than the limit, and the limit is used
    assert sum(ray.get(limiter.leases.remote()).values()) <= 6
    ray.kill(limiter)


def _peak(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at once (an end at the same instant as a start does not overlap it)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def test_leases_of_a_killed_actor_are_taken_back(ray_cluster):
    limiter = create_limiter("limiter-dead", "m", 4)
    doomed, survivor = _Holder.remote(limiter, "doomed", 4), _Holder.remote(limiter, "survivor", 4)
    assert ray.get(doomed.grab.remote(4)) == 4
    ray.kill(doomed)  # dies holding every permit, as a scaled-down or crashed actor would
    started = time.monotonic()
    assert _peak(ray.get(survivor.run.remote(8, 0.05), timeout=60)) == 4
    assert time.monotonic() - started < 30
    assert _eventually(lambda: ray.get(limiter.leases.remote()) == {})  # the survivor's idle return is one-way
    ray.kill(limiter)


def _eventually(check, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_waiting_requests_are_served_oldest_batch_first(ray_cluster):
    limiter = create_limiter("limiter-order", "m", 2)
    holder = _Holder.remote(limiter, "a", 2)
    # a late batch's requests (3) arrive first; an earlier batch's (1, its retries among them) and a
    # middle one's (2) after, all while no permit is held yet: the earlier batches' requests are served first
    served = ray.get(holder.ordered.remote([3, 3, 3, 1, 2, 1, 1, 2], 0.05))
    assert served == [1, 1, 1, 2, 2, 3, 3, 3]
    ray.kill(limiter)
