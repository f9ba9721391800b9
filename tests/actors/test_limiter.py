"""The concurrency limiter: per-actor leases that never add up to more than the limit."""

from __future__ import annotations

import ray

from rayeval.actors.limiter import create_limiter, share_size


def test_leases_split_the_limit_and_survive_a_second_ask(ray_cluster):
    limiter = create_limiter("limiter-test", "m", 5)
    want = share_size(5, 2)
    assert want == 3
    assert ray.get(limiter.lease.remote("actor-a", want)) == 3
    assert ray.get(limiter.lease.remote("actor-b", want)) == 2  # only 2 left: the total stays 5
    assert ray.get(limiter.lease.remote("actor-a", want)) == 3  # a restarted actor keeps its share
    assert sum(ray.get(limiter.leases.remote()).values()) == 5

    waiting = limiter.lease.remote("actor-c", want)  # nothing left: waits
    ready, _ = ray.wait([waiting], timeout=0.5)
    assert not ready
    ray.get(limiter.release.remote("actor-b"))
    assert ray.get(waiting, timeout=10) == 2
    assert sum(ray.get(limiter.leases.remote()).values()) == 5
    ray.kill(limiter)
