"""A run's lease on its task: at most one live run per task (fencing; rayeval.store.fence).

`take_lease` asks the coordinator for the lease (refused while another run's driver is alive, or
waited for), and the run that took over deletes the files an earlier, superseded run committed
after it had lost the lease.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray

from rayeval.errors import RunRefused
from rayeval.records import TaskRecord
from rayeval.store.results import ResultsStore

__all__ = ["IF_RUNNING", "drop_fenced_files", "take_lease"]

log = logging.getLogger("rayeval")
#: What a run does when another run of its task is alive.
IF_RUNNING = ("refuse", "wait")
#: Seconds between tries while waiting for another run, and between the lines saying so.
_RETRY_S = 1.0
_SAY_EVERY_S = 15.0


def take_lease(coordinator: Any, record: TaskRecord, *, wait: bool = False) -> dict[str, int]:
    """Register the run's record with the coordinator, which gives it the task's lease; returns
    {"epoch", "runs"}.

    Raises:
        RunRefused: another run of the task is alive and `wait` is False.
    """
    said = 0.0
    while True:
        answer = ray.get(coordinator.register.remote(dict(record)))
        if "refused" not in answer:
            return answer
        if not wait:
            raise RunRefused(answer["refused"])
        now = time.monotonic()
        if now - said >= _SAY_EVERY_S:
            held = answer["held_by"]
            log.warning(
                "task %s: waiting for run %d (%s) to end before this one starts",
                record["task_id"],
                held.get("runs", 1),
                held.get("state"),
            )
            said = now
        time.sleep(_RETRY_S)


def drop_fenced_files(store: ResultsStore, task_id: str) -> int:
    """Delete the result files that superseded runs committed after they lost the lease; returns how many."""
    files = store.fenced_files(task_id)
    for path in files:
        try:
            store.fs.delete_file(path)
        except FileNotFoundError:  # its writer deleted it when it was refused
            pass
    return len(files)
