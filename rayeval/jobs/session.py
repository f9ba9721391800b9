"""A task's run on the cluster, around its pipeline: the driver's heartbeat, the progress monitor, the
event log, and the hosted models deployed for the run and released after it."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import ray

from rayeval.cluster.events import ClusterEvents
from rayeval.errors import RayevalError, RunSuperseded, TaskFailedError
from rayeval.inference.client import HostedEndpoint
from rayeval.jobs.prepare import PreparedTask
from rayeval.records import HEARTBEAT_S, TaskRecord
from rayeval.serve_apps.hosting import deploy, release
from rayeval.spec import ModelSpec

__all__ = ["EventLog", "Heartbeat", "ProgressMonitor", "deploy_model", "deployment_user", "task_session"]

log = logging.getLogger("rayeval")


def deploy_model(task: PreparedTask, model: ModelSpec, coordinator: Any) -> HostedEndpoint:
    """Deploy one hosted model, recording each step in the task record (visible in `rayeval status`)."""

    def on_event(event: dict[str, Any]) -> None:
        log.info("model %s: %s (%s)", model.name, event["state"], event.get("message", ""))
        ray.get(coordinator.set_deployment.remote(task.task_id, model.name, task.epoch, **event))

    return deploy(
        model,
        user=deployment_user(task),
        coordinator=coordinator,
        on_event=on_event,
        source=task.sources[model.name],
        wait_timeout_s=task.spec.resources.wait_timeout_s,
    )


def deployment_user(task: PreparedTask) -> str:
    """Who uses a hosted model's deployment: this run of the task (a superseded run releasing what it
    used must not take the deployment from under the run that took over)."""
    return task.task_id if task.epoch is None else f"{task.task_id}@{task.epoch}"


class EventLog(logging.Handler):
    """Forwards rayeval's log records of a running task to its event log (`rayeval logs`), secrets scrubbed."""

    def __init__(self, coordinator: Any, task_id: str, scrub: Callable[[str], str], epoch: int | None = None):
        super().__init__(level=logging.INFO)
        self.coordinator, self.task_id, self.scrub, self.epoch = coordinator, task_id, scrub, epoch

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.coordinator.log_event.remote(
                self.task_id, record.levelname.lower(), self.scrub(record.getMessage()), self.epoch
            )
        except Exception:  # the event log must never break a run
            pass


class Heartbeat(threading.Thread):
    """Tells the coordinator every HEARTBEAT_S that this driver is alive (a silent one died: restartable),
    and writes to the task's event log what happened to the cluster meanwhile (`events`: nodes lost and
    joined, replicas of its hosted models replaced)."""

    def __init__(self, coordinator: Any, task_id: str, epoch: int | None = None):
        super().__init__(daemon=True, name="rayeval-heartbeat")
        self.coordinator, self.task_id, self.epoch = coordinator, task_id, epoch
        self.stopped = threading.Event()
        levels = {"info": logging.INFO, "warning": logging.WARNING}
        self.events = ClusterEvents(lambda level, line: log.log(levels[level], "task %s: %s", task_id, line))

    def run(self) -> None:
        self.events.poll()
        while not self.stopped.wait(HEARTBEAT_S):
            self.coordinator.heartbeat.remote(self.task_id, self.epoch)
            self.events.poll()

    def finish(self) -> None:
        """Stop beating, then look at the cluster a last time: what happened since the last beat still
        reaches the event log before the task's final state does."""
        self.stopped.set()
        self.join(timeout=HEARTBEAT_S + 10)
        self.events.poll()


class ProgressMonitor(threading.Thread):
    """Polls the coordinator and hands the task record to a callback until stopped."""

    def __init__(self, coordinator: Any, task_id: str, callback: Callable[[TaskRecord], None], every: float):
        super().__init__(daemon=True, name="rayeval-progress")
        self.coordinator, self.task_id, self.callback, self.every = coordinator, task_id, callback, every
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                record = ray.get(self.coordinator.get.remote(self.task_id), timeout=10)
            except Exception:  # coordinator restarting: try again next tick
                continue
            if record:
                self.callback(record)


@contextlib.contextmanager
def task_session(
    task: PreparedTask,
    coordinator: Any,
    on_progress: Callable[[TaskRecord], None] | None,
    progress_every: float,
    limiters: list[Any],
) -> Iterator[dict[str, HostedEndpoint]]:
    """A task's run on the cluster: heartbeat and progress monitor going, hosted models deployed
    (yields their endpoints); a failure marks the task failed; everything is released at the end."""
    heartbeat = Heartbeat(coordinator, task.task_id, task.epoch)
    heartbeat.start()
    monitor = None
    if on_progress is not None:
        monitor = ProgressMonitor(coordinator, task.task_id, on_progress, progress_every)
        monitor.start()
    deployed: list[tuple[str, str, bool]] = []  # (model, Serve app, keep) to release at the end
    try:
        hosted = {}
        for m in task.spec.hosted_models():
            endpoint = deploy_model(task, m, coordinator)
            deployed.append((m.name, endpoint.app, m.engine.keep))
            hosted[m.name] = endpoint
            heartbeat.events.watch_app(endpoint.app, m.name)
        yield hosted
    except BaseException as e:
        error = task.scrub(str(e) if isinstance(e, RayevalError) else f"{type(e).__name__}: {e}")[:4000]
        if isinstance(e, RunSuperseded):  # the run that took over owns the task's state now
            log.warning("task %s: %s", task.task_id, error)
            raise
        log.error("task %s failed: %s", task.task_id, error)
        ray.get(coordinator.set_state.remote(task.task_id, "failed", task.epoch, error=error))
        if isinstance(e, Exception):
            raise TaskFailedError(f"task {task.task_id} failed: {error}") from e
        raise
    finally:
        heartbeat.finish()
        if monitor is not None:
            monitor.stopped.set()
        for lim in limiters:
            ray.kill(lim)
        for name, app, keep in deployed:
            deleted = release(app, user=deployment_user(task), coordinator=coordinator, keep=keep)
            state = "deleted" if deleted else ("kept" if keep else "released (still used by another task)")
            ray.get(
                coordinator.set_deployment.remote(
                    task.task_id, name, task.epoch, state=state, message=f"{state} at task end"
                )
            )
