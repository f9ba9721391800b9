"""Connect to the current Ray cluster, or start a local one in-process."""

from __future__ import annotations

import logging
import os

__all__ = ["connect"]

log = logging.getLogger("rayeval")


def connect(address: str | None = None, *, num_cpus: int | None = None, log_to_driver: bool = True) -> None:
    """Make sure this process is a Ray driver.

    Args:
        address: A cluster address (`auto`, `host:port`, `ray://...`). Without it, RAY_ADDRESS or a
            running local cluster is used, and failing those a local cluster is started here.
        num_cpus: CPUs a newly started local cluster declares (default: max(4, 2 x cores), since
            rayeval's actors take fractions of a CPU and mostly wait on the network).
        log_to_driver: Echo the workers' logs (Serve replicas, vLLM engines) here; off, they are
            only in Ray's log files and the dashboard.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = {"log_to_driver": log_to_driver, "configure_logging": True, "logging_level": logging.WARNING}
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, **quiet)
        return
    try:
        ray.init(address="auto", **quiet)
        return
    except (ConnectionError, RuntimeError):
        pass
    cpus = num_cpus or max(4, 2 * (os.cpu_count() or 1))
    log.info("no Ray cluster found: starting a local one with %d CPUs", cpus)
    ray.init(address="local", num_cpus=cpus, **quiet)
