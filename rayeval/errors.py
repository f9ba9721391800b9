"""One error hierarchy for rayeval; every message says what to fix."""

from __future__ import annotations

__all__ = [
    "DatasetError",
    "MetricError",
    "RayevalError",
    "RunRefused",
    "RunSuperseded",
    "ServiceError",
    "SpecError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TooManyErrors",
]


class RayevalError(Exception):
    """Base class of every error rayeval raises on purpose."""

    #: CLI exit code used when this error reaches the command line.
    exit_code = 1


class SpecError(RayevalError):
    """The task specification is invalid: nothing was run and nothing written.

    Args:
        message: What is wrong and how to fix it.
        source: The file the spec came from, if any.
        field: Dotted path of the offending field, if known.
    """

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.message = message
        self.source = source
        self.field = field
        where = []
        if source:
            where.append(str(source))
        if field:
            where.append(f"field '{field}'")
        prefix = ": ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)

    def with_source(self, source: str | None) -> SpecError:
        """The same error, naming the task file it came from (when it did not already)."""
        if self.source or not source:
            return self
        return type(self)(self.message, source=source, field=self.field)


class DatasetError(SpecError):
    """An evaluation set cannot be read as declared (missing path, bad rows, bad encoding)."""


class MetricError(SpecError):
    """A metric is unknown or misconfigured."""


class ServiceError(RayevalError):
    """A model service cannot be reached or refuses the request.

    Raised before a task starts (the connectivity check), so nothing is written.
    """

    exit_code = 2


class TaskNotFoundError(RayevalError):
    """No task with the given id or name is known to the coordinator or the results store."""


class TaskFailedError(RayevalError):
    """The task's pipeline failed as a whole (single items failing do not, unless more of them fail than
    the task's `max_error_rate` allows: TooManyErrors).

    What was written before the failure stays in the results store; the task's record holds the error.
    """


class RunRefused(RayevalError):
    """Another run of the task holds its lease (its driver is alive): stop it, or wait for it."""


class RunSuperseded(RayevalError):
    """This run lost its task's lease (its driver was silent past the heartbeat gap, and a restart took
    over): it stopped pulling and committed nothing more; the task goes on in the run that took over."""

    @classmethod
    def of(cls, task_id: str, epoch: int | None) -> RunSuperseded:
        return cls(
            f"run {epoch} of task {task_id} lost its lease (its driver was silent and a restart took over): "
            "it stopped and committed nothing more; the task goes on in the run that took over"
        )


class TooManyErrors(TaskFailedError):
    """The task ran to its end, but more of its items failed than its `max_error_rate` allows (or all of
    them did): it is marked failed, and its results stay stored (`record`: its final record)."""

    def __init__(self, message: str, record: dict | None = None):
        super().__init__(message)
        self.record = record or {}
