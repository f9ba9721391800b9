"""Connect to the current Ray cluster, or start a local one in-process."""

from __future__ import annotations

import logging
import os
import time

from rayeval.errors import RayevalError

__all__ = ["connect"]

log = logging.getLogger("rayeval")


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    log_to_driver: bool = True,
    join_running: bool = True,
) -> str:
    """Make sure this process is a Ray driver; returns which cluster it uses, in words.

    Args:
        address: A cluster address (`auto`, `host:port`, `ray://...`). Without it, RAY_ADDRESS is used;
            failing that, a cluster already running on this machine (with `join_running`), and failing
            that a local cluster started here.
        num_cpus: CPUs a newly started local cluster declares (default: max(4, 2 x cores), since
            rayeval's actors take fractions of a CPU and mostly wait on the network).
        log_to_driver: Echo the workers' logs (Serve replicas, vLLM engines) here; off, they are
            only in Ray's log files and the dashboard.
        join_running: Without an address, join a cluster already running on this machine (`stop`, `ui`
            look at the cluster the tasks run on); off, a new task never lands on a cluster that happens
            to run here (`rayeval run` starts its own unless told where to run).
    """
    import ray

    if ray.is_initialized():
        return f"the Ray cluster at {ray.get_runtime_context().gcs_address}"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = {"log_to_driver": log_to_driver, "configure_logging": True, "logging_level": logging.WARNING}
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, **quiet)
        return f"the Ray cluster at {ray.get_runtime_context().gcs_address}"
    if join_running:
        try:
            ray.init(address="auto", **quiet)
            return f"the Ray cluster running on this machine ({ray.get_runtime_context().gcs_address})"
        except (ConnectionError, RuntimeError):
            pass
    cpus = num_cpus or max(4, 2 * (os.cpu_count() or 1))
    _start_local(cpus, quiet)
    return f"a local Ray cluster started for this run ({cpus} CPUs; give --address or RAY_ADDRESS to use another)"


#: What Ray raises when a new local node's raylet has not registered with its GCS within Ray's fixed 30 s
#: (ray._private.node): on a machine busy with other work, a start that would have succeeded a little later.
#: (The raylet itself also gives up when its dashboard agent, a Python process, has not written its ports
#: within a fixed 20 s: seen on 2 cores while another cluster worked, the agent took 31 s to start.)
_START_TIMEOUT = "timed out during startup"

#: Starts of a local cluster before its start-up time-out is the caller's error.
START_ATTEMPTS = 3


def _start_local(cpus: int, quiet: dict) -> None:
    """Start a local cluster in this process; a start that missed Ray's fixed start-up windows is cleaned up
    (the GCS, raylet and agents it started, which Ray leaves running) and made again, up to START_ATTEMPTS."""
    import ray

    for attempt in range(1, START_ATTEMPTS + 1):
        began = time.time() - 1.0  # process start times are rounded to clock ticks
        try:
            ray.init(address="local", num_cpus=cpus, **quiet)
            return
        except Exception as e:
            if _START_TIMEOUT not in str(e):
                raise
            _kill_children_since(began)
            ray.shutdown()
            if attempt == START_ATTEMPTS:
                raise RayevalError(
                    f"the local Ray cluster missed Ray's start-up window {START_ATTEMPTS} times (a busy machine?): "
                    "run again when the machine is less busy, or start a cluster first (`ray start --head`) and "
                    "give its address (--address or RAY_ADDRESS)"
                ) from e
            log.warning(
                "the local Ray cluster missed Ray's 30 s start-up window (a busy machine?); starting again "
                f"(attempt {attempt + 1} of {START_ATTEMPTS})"
            )


def _kill_children_since(began: float) -> None:
    """Kill what a failed Ray start left running: this process's descendants started at `began` or later
    from Ray's package (GCS, raylet, agents, workers), none of the caller's own."""
    import psutil

    def ray_started(p: psutil.Process) -> bool:
        try:
            return p.create_time() >= began and any("/ray/" in part for part in p.cmdline())
        except psutil.Error:
            return False

    started = [p for p in psutil.Process().children(recursive=True) if ray_started(p)]
    for p in started:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(started, timeout=10)
