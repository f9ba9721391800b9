"""Drive a task's scored stream into the results writer, report progress, and stop when asked.

The driver iterates the stream's blocks as object refs (the rows stay in the object store and
go straight to the writer actor), keeps a bounded number of writes in flight (backpressure on
Ray Data), reports the items received to the coordinator, and stops pulling when the
coordinator says the task is stopping. Whatever the writer holds is committed at the end.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray

from rayeval.errors import RayevalError, RunSuperseded

if TYPE_CHECKING:
    import ray.data

__all__ = ["SinkOutcome", "StreamAborted", "WriterLost", "write_stream"]

#: Writes in flight to the writer actor (each one block).
MAX_PENDING_WRITES = 8
REPORT_EVERY_S = 0.5
#: The end of the stream, in the queue between the puller thread and the driver's loop.
_END = object()


class StreamAborted(RayevalError):
    """The stream was given up for a reason its check found (the message says what)."""


class WriterLost(StreamAborted):
    """The results writer died: what it had not committed is evaluated again by a restart."""


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
    """This run's received items, totals per (model, set) sent to the coordinator at most every
    REPORT_EVERY_S (totals: a report lost by a restarting coordinator is made good by the next);
    learns the task's state back."""

    def __init__(self, coordinator: Any, task_id: str, epoch: int | None):
        self.coordinator, self.task_id, self.epoch = coordinator, task_id, epoch
        self.done: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[tuple[str, str]] = Counter()
        self.last = 0.0
        self.state = "running"

    def add(self, received: list[tuple[str, str, int, int]]) -> None:
        for model, eval_set, rows, errors in received:
            self.done[(model, eval_set)] += rows
            self.errors[(model, eval_set)] += errors

    def send(self, *, force: bool = False) -> str:
        now = time.monotonic()
        if force or now - self.last >= REPORT_EVERY_S:
            report = [(m, s, n, self.errors[(m, s)]) for (m, s), n in self.done.items()]
            self.state = ray.get(self.coordinator.report.remote(self.task_id, report, self.epoch)) or self.state
            self.last = now
        return self.state


def _bundles(ds: ray.data.Dataset) -> tuple[Any, Any]:
    """The stream's RefBundles, and a function that shuts its execution down (at any time, even before
    its first output: a stage that waits for resources yields nothing for a while).

    `Dataset.iter_internal_ref_bundles()` leaves the executor running when the consumer stops early
    (it is not captured), so the executor is made here with the same (private) calls it makes; on a
    Ray version without them, the executor comes from `_execute_to_iterator` (once the first output
    exists), and failing that the public iterator is used.
    """
    create, build = getattr(ds, "_create_executor", None), getattr(ds, "_build_bundle_iterator", None)
    if create is not None and build is not None:
        try:
            executor = create()
            return build(executor), lambda: executor.shutdown(force=True)
        except TypeError:  # another Ray version
            pass
    execute = getattr(ds, "_execute_to_iterator", None)
    if execute is not None:
        try:
            stream, _, executor = execute(capture_executor=True)
        except TypeError:  # another Ray version
            pass
        else:
            return stream, (lambda: executor.shutdown(force=True)) if executor is not None else (lambda: None)
    return ds.iter_internal_ref_bundles(), lambda: None


def _pull(ds: ray.data.Dataset, out: queue.Queue, quit: threading.Event, shutdowns: list[Any]) -> None:
    """Start the stream and move its bundles into `out` (then _END, or the exception that ended it);
    the function that shuts its execution down goes into `shutdowns`. Waiting for the next block (or,
    on other Ray versions, for the first one before the executor is known) happens here, in a thread of
    its own, so that the driver's loop reports, sees a stop and runs its checks meanwhile."""
    try:
        stream, shutdown = _bundles(ds)
        shutdowns.append(shutdown)
        if quit.is_set():
            shutdown()
            return
        for bundle in stream:
            while not quit.is_set():
                try:
                    out.put(bundle, timeout=0.5)
                    break
                except queue.Full:
                    continue
            if quit.is_set():
                return
        out.put(_END)
    except BaseException as e:  # handed to the driver's loop, which raises it
        out.put(e)


def write_stream(
    ds: ray.data.Dataset,
    writer: Any,
    coordinator: Any,
    task_id: str,
    *,
    epoch: int | None = None,
    check: Callable[[], str | None] = lambda: None,
) -> SinkOutcome:
    """Send every block of `ds` to `writer` (a ResultWriter actor) and commit them all.

    Returns when the stream ends, or as soon as the coordinator marks the task 'stopping' (Ray
    Data then stops the pipeline); in both cases the writer's buffer is committed before returning.
    A run that lost its lease (the coordinator answers 'fenced', or the writer refuses a commit) stops
    pulling at once and commits nothing more.
    The stream is pulled by a thread of its own, so this loop keeps reporting, sees a stop and runs
    `check` (which returns an error to fail with, e.g. resources waited for too long) while no block
    comes.

    Raises:
        StreamAborted: `check` gave an error; what was written is committed first.
        RunSuperseded: the run lost the task's lease.
    """
    outcome = SinkOutcome()
    progress = _Progress(coordinator, task_id, epoch)
    pending: list[Any] = []

    def settle(refs: list[Any]) -> None:
        try:
            results = ray.get(refs)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, RunSuperseded):  # the writer was refused a commit
                raise RunSuperseded(str(e.cause)) from None
            raise
        except ray.exceptions.RayActorError as e:
            raise WriterLost(
                f"the results writer was lost ({e.__class__.__name__}: its node left the cluster, or it was "
                f"killed); {sum(c[0] for c in outcome.committed.values())} rows were committed before. "
                "`rayeval restart TASK` evaluates what it had not committed, and nothing is stored twice"
            ) from None
        for received, committed in results:
            progress.add(received)
            outcome.add(committed)

    bundles: queue.Queue = queue.Queue(maxsize=MAX_PENDING_WRITES)
    quit = threading.Event()
    shutdowns: list[Any] = []

    def shutdown() -> None:
        quit.set()
        for stop in shutdowns:  # none yet: the puller shuts the stream down as soon as it has started it
            stop()

    puller = threading.Thread(target=_pull, args=(ds, bundles, quit, shutdowns), daemon=True, name="rayeval-stream")
    puller.start()
    try:
        while True:
            try:
                bundle = bundles.get(timeout=REPORT_EVERY_S)
            except queue.Empty:
                bundle = None
            if bundle is _END:
                break
            if isinstance(bundle, BaseException):
                raise bundle
            if bundle is not None:
                for entry, piece in zip(bundle.blocks, bundle.slices):
                    rows = None if piece is None else (piece.start_offset, piece.end_offset)
                    pending.append(writer.write.remote(entry.ref, rows))
            while len(pending) > MAX_PENDING_WRITES:  # the writer is behind (or not placed yet)
                done, pending = ray.wait(pending, num_returns=1, timeout=REPORT_EVERY_S)
                settle(done)
                error = None if done else check()
                if error is not None:
                    raise StreamAborted(error)
            if pending:  # the writes done by now: their items count as evaluated
                done, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
                settle(done)
            state = progress.send()
            if state == "fenced":
                raise RunSuperseded.of(task_id, epoch)
            if state == "stopping":
                outcome.stopped = True
                break
            error = check()
            if error is not None:
                raise StreamAborted(error)
        settle(pending)
    except (WriterLost, RunSuperseded):
        shutdown()  # nothing more can (or may) be committed: Ray Data stops its tasks and actors now
        raise
    finally:
        if not quit.is_set():
            shutdown()  # left early (stop, error): Ray Data stops its tasks and actors now
            outcome.add(ray.get(writer.close.remote()))
    if progress.send(force=True) == "fenced":
        raise RunSuperseded.of(task_id, epoch)
    return outcome
