"""Drive a task's scored stream into the results writer, report progress, and stop when asked.

The driver iterates the stream's blocks as object refs (the rows stay in the object store and
go straight to the writer actor), keeps a bounded number of writes in flight (backpressure on
Ray Data), reports the items received to the coordinator, and stops pulling when the
coordinator says the task is stopping. Whatever the writer holds is committed at the end.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray

if TYPE_CHECKING:
    import ray.data

__all__ = ["SinkOutcome", "write_stream"]

#: Writes in flight to the writer actor (each one block).
MAX_PENDING_WRITES = 8
REPORT_EVERY_S = 0.5


@dataclass
class SinkOutcome:
    """What reached the results store.

    Attributes:
        committed: (model, eval_set) -> [rows, errors] in committed files.
        stopped: The stream was left early because the task was asked to stop.
    """

    committed: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    stopped: bool = False

    def add(self, entries: list[tuple[str, str, int, int]]) -> None:
        for model, eval_set, rows, errors in entries:
            c = self.committed.setdefault((model, eval_set), [0, 0])
            c[0] += rows
            c[1] += errors


class _Progress:
    """Received items, sent to the coordinator at most every REPORT_EVERY_S; learns the task's state back."""

    def __init__(self, coordinator: Any, task_id: str):
        self.coordinator, self.task_id = coordinator, task_id
        self.pending: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[tuple[str, str]] = Counter()
        self.last = 0.0
        self.state = "running"

    def add(self, received: list[tuple[str, str, int, int]]) -> None:
        for model, eval_set, rows, errors in received:
            self.pending[(model, eval_set)] += rows
            self.errors[(model, eval_set)] += errors

    def send(self, *, force: bool = False) -> str:
        now = time.monotonic()
        if force or now - self.last >= REPORT_EVERY_S:
            report = [(m, s, n, self.errors[(m, s)]) for (m, s), n in self.pending.items()]
            self.state = ray.get(self.coordinator.report.remote(self.task_id, report)) or self.state
            self.pending.clear()
            self.errors.clear()
            self.last = now
        return self.state


def _bundles(ds: ray.data.Dataset) -> tuple[Any, Any]:
    """The stream's RefBundles, and a function that shuts its execution down.

    `Dataset.iter_internal_ref_bundles()` leaves the executor running when the consumer stops
    early (it is not captured), so the executor is taken from the same (private) call it makes,
    to be shut down when the task is stopped; without it, the public iterator is used.
    """
    execute = getattr(ds, "_execute_to_iterator", None)
    if execute is not None:
        try:
            stream, _, executor = execute(capture_executor=True)
        except TypeError:  # another Ray version
            pass
        else:
            return stream, (lambda: executor.shutdown(force=True)) if executor is not None else (lambda: None)
    return ds.iter_internal_ref_bundles(), lambda: None


def write_stream(ds: ray.data.Dataset, writer: Any, coordinator: Any, task_id: str) -> SinkOutcome:
    """Send every block of `ds` to `writer` (a ResultWriter actor) and commit them all.

    Returns when the stream ends, or as soon as the coordinator marks the task 'stopping' (Ray
    Data then stops the pipeline); in both cases the writer's buffer is committed before returning.
    """
    outcome = SinkOutcome()
    progress = _Progress(coordinator, task_id)
    pending: list[Any] = []

    def settle(refs: list[Any]) -> None:
        for received, committed in ray.get(refs):
            progress.add(received)
            outcome.add(committed)

    stream, shutdown = _bundles(ds)
    try:
        for bundle in stream:
            for entry, piece in zip(bundle.blocks, bundle.slices):
                rows = None if piece is None else (piece.start_offset, piece.end_offset)
                pending.append(writer.write.remote(entry.ref, rows))
            while len(pending) > MAX_PENDING_WRITES:
                done, pending = ray.wait(pending, num_returns=1)
                settle(done)
            if pending:  # the writes done by now: their items count as evaluated
                done, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
                settle(done)
            if progress.send() == "stopping":
                outcome.stopped = True
                break
        settle(pending)
    finally:
        shutdown()  # left early (stop, error): Ray Data stops its tasks and actors now
        outcome.add(ray.get(writer.close.remote()))
    progress.send(force=True)
    return outcome
