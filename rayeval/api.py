"""The Python API: run or submit a task, follow it, read its results."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rayeval.errors import RayevalError, SpecError
from rayeval.records import TERMINAL, TaskRecord, progress_fraction
from rayeval.spec import ReuseSpec, TaskSpec, load_task, parse_task
from rayeval.store.results import ResultsStore

__all__ = [
    "TaskHandle",
    "checkpoint_task",
    "copy_spec",
    "delete",
    "eval_task",
    "eval_task_data",
    "list_tasks",
    "restart",
    "run",
    "stop",
    "submit",
    "with_reuse",
]

log = logging.getLogger("rayeval")
SpecLike = TaskSpec | dict[str, Any] | str | Path


def _as_spec(spec: SpecLike) -> TaskSpec:
    if isinstance(spec, TaskSpec):
        return spec
    if isinstance(spec, dict):
        return parse_task(spec, source="<dict>")
    return load_task(spec)


def with_reuse(spec: SpecLike, *, reuse: bool = False, sources: list[str] | tuple[str, ...] = ()) -> TaskSpec:
    """The task with reuse of earlier results turned on (`rayeval run --reuse`, `--reuse-from TASK`):
    `sources` names the earlier tasks to take from (ids or names), else any its tags may see. Neither
    given: the task as it is."""
    task = _as_spec(spec)
    if not reuse and not sources:
        return task
    chosen = list(sources) or None
    return task.model_copy(update={"reuse": ReuseSpec(enabled=True, tasks=chosen)})


class TaskHandle:
    """A running or finished task: progress, wait and results.

    The record comes from the task's folder in the results store, which the coordinator keeps
    current, so a handle works from any process that can read the output location.
    """

    #: For a submitted task: its Ray job's id and the cluster's dashboard address (else None).
    job_id: str | None
    dashboard: str | None

    def __init__(self, task_id: str, output: str, *, job_id: str | None = None, dashboard: str | None = None):
        self.task_id = task_id
        self.output = output
        self.job_id = job_id
        self.dashboard = dashboard
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"TaskHandle(task_id={self.task_id!r}, output={self.output!r})"

    @property
    def store(self) -> ResultsStore:
        """The task's results store."""
        return ResultsStore(self.output)

    def status(self) -> TaskRecord:
        """The task record: state, progress per model and set, summary once finished."""
        record = self.store.read_json(self.task_id, "task.json")
        if record is None:
            record = {"task_id": self.task_id, "state": "pending", "progress": {}}
        if record["state"] not in TERMINAL and self.job_id and self.dashboard:
            job_state = self._job_status()
            if job_state in ("FAILED", "STOPPED"):
                record = {**record, "state": "failed", "error": f"Ray job {self.job_id} {job_state.lower()}"}
            elif job_state == "SUCCEEDED":  # its driver ended well: the record here is missing or behind
                again = self.store.read_json(self.task_id, "task.json")  # (or was written just now)
                if again is not None and again["state"] in TERMINAL:
                    record = again
                else:
                    record = {
                        **record,
                        "state": "succeeded",
                        "unreadable": f"the Ray job {self.job_id} succeeded; its record and results are under "
                        f"{self.output} on the cluster, which this machine cannot read or sees behind (rayeval "
                        f"status {self.task_id} --address {self.dashboard} asks the cluster)",
                    }
        if self._error is not None:
            record = {**record, "state": "failed", "error": f"{type(self._error).__name__}: {self._error}"}
        return record

    def _job_status(self) -> str:
        from ray.job_submission import JobSubmissionClient

        return str(JobSubmissionClient(self.dashboard).get_job_status(self.job_id).value)

    def progress(self) -> float:
        """Evaluated entries / (models x entries), 0..1."""
        return progress_fraction(self.status())

    def done(self) -> bool:
        """True once the task succeeded, failed or stopped."""
        return self.status()["state"] in TERMINAL

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> TaskRecord:
        """Block until the task ends; returns its final record.

        Raises:
            TimeoutError: the task did not end within `timeout` seconds.
            RayevalError: the task failed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(timeout)
        while True:
            record = self.status()
            if record["state"] in TERMINAL:
                if record["state"] == "failed":
                    raise RayevalError(f"task {self.task_id} failed: {record.get('error')}")
                return record
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"task {self.task_id} still {record['state']} after {timeout}s")
            time.sleep(poll)

    def results(self) -> list[dict[str, Any]]:
        """The summary rows (model, eval_set, metric, value, items, scored, errors)."""
        rows = self.store.read_json(self.task_id, "summary.json")
        if rows is None:
            raise RayevalError(f"task {self.task_id} has no summary yet (state: {self.status()['state']})")
        return rows

    def items(self):
        """The per-item results as a pyarrow dataset (read lazily)."""
        return self.store.results_dataset(self.task_id)

    def frame(self, columns: list[str] | None = None, *, expand: bool = True):
        """The per-item results as a pandas DataFrame; with `expand`, the JSON columns `fields` and
        `details` become a column per key (`fields.topic`, `details.exact_match.prediction`...:
        rayeval.analysis.frame)."""
        from rayeval.analysis.frame import expand_json

        table = self.items().to_table(columns=columns)
        return expand_json(table) if expand else table.to_pandas()

    def stop(self, *, wait: float | None = 60.0) -> TaskRecord:
        """Stop the task (see `rayeval.stop`); returns its record."""
        return stop(self.task_id, wait=wait)


def run(
    spec: SpecLike,
    *,
    address: str | None = None,
    wait: bool = True,
    on_progress: Callable[[TaskRecord], None] | None = None,
    task_id: str | None = None,
    log_to_driver: bool = True,
    tags: list[str] | None = None,
    on_cluster: Callable[[str], None] | None = None,
) -> TaskHandle:
    """Validate and run a task on the Ray cluster this process is connected to, the one `address` (or
    RAY_ADDRESS) names, or else a local one started here (never one that merely runs on this machine).

    Args:
        spec: A TaskSpec, a dict, or the path of a task file.
        address: Ray cluster address; default: RAY_ADDRESS, else a new local cluster started here.
        wait: Block until the task ends (else it runs in a background thread of this process).
        on_progress: Called with the task record about once a second.
        task_id: Use this id instead of a generated one.
        log_to_driver: When this call connects to Ray, echo the workers' logs here.
        tags: The tags you present (default $RAYEVAL_TAGS): results are reused only from tasks you may see.
        on_cluster: Called with which cluster the task runs on, in words, once connected.

    Raises:
        SpecError / ServiceError: before anything is written.
    """
    from rayeval.cluster import connect
    from rayeval.jobs.prepare import prepare
    from rayeval.jobs.runner import run_prepared

    task_spec = _as_spec(spec)
    prepared = prepare(task_spec, task_id)
    where = connect(address, log_to_driver=log_to_driver, join_running=False)
    log.info("task %s runs on %s", prepared.task_id, where)
    if on_cluster is not None:
        on_cluster(where)
    handle = TaskHandle(prepared.task_id, task_spec.output)
    if wait:
        run_prepared(prepared, on_progress=on_progress, tags=tags)
        return handle

    def target() -> None:
        try:
            run_prepared(prepared, on_progress=on_progress, tags=tags)
        except BaseException as e:  # surfaced through handle.status()/wait()
            handle._error = e
        finally:
            _background.discard(handle)

    handle._thread = threading.Thread(target=target, name=f"rayeval-{prepared.task_id}", daemon=True)
    _background.add(handle)
    handle._thread.start()
    return handle


#: The tasks this process runs in background threads (`run(wait=False)`), while they run. Whoever shuts Ray
#: down in this process stops them first (tests/support/clusters.py): Ray shut down under a running
#: pipeline can end the whole process, with exit status 1 and nothing printed.
_background: set[TaskHandle] = set()


def stop(
    task: str, *, address: str | None = None, wait: float | None = 60.0, tags: list[str] | None = None
) -> TaskRecord:
    """Stop a running task: no new items go to inference or scoring, what was evaluated is committed
    to the results store and summarised, its hosted models are released, and its state becomes 'stopped'.

    Args:
        task: Task id, or name (the newest task with it).
        address: Ray cluster address (default: RAY_ADDRESS or a running local cluster).
        wait: Seconds to wait for the task to reach its final state (None: return at once).
        tags: The tags you present (default $RAYEVAL_TAGS): a task carrying none of them is not found.

    Raises:
        TaskNotFoundError: the cluster's coordinator knows no such task (visible to your tags).
    """
    from rayeval.actors.coordinator import stop_task
    from rayeval.cluster import connect
    from rayeval.errors import TaskNotFoundError
    from rayeval.records import caller_tags

    tags = caller_tags(tags)
    connect(address, log_to_driver=False)
    record = stop_task(task, tags=tags, wait=wait)
    if record is None:
        raise TaskNotFoundError(f"the coordinator knows no task '{task}'{_visible_to(tags)}; `rayeval list` lists them")
    return record


def _visible_to(tags: list[str] | None) -> str:
    return f" visible to the tags you present ({', '.join(tags)})" if tags else ""


def list_tasks(*, tags: list[str] | None = None, output: str | None = None) -> list[dict[str, Any]]:
    """Every task record you may see (through the local index, and `output` if given), newest first.

    Args:
        tags: The tags you present (default $RAYEVAL_TAGS): only tasks carrying one of them are listed.
        output: Also list the tasks in this output location.
    """
    from rayeval.actors.index import list_tasks as listed

    return listed(tags=tags, output=output)


def delete(task: str, *, tags: list[str] | None = None, output: str | None = None) -> TaskRecord:
    """Delete a task: its record (in the coordinator too, when this process is connected to Ray), its
    index entry and its whole results folder; returns the record it had.

    Raises:
        TaskNotFoundError: no such task visible to your tags.
        RayevalError: the task is still running (stop it first).
    """
    import ray

    from rayeval.actors.index import delete_task
    from rayeval.records import caller_tags

    tags = caller_tags(tags)
    record = delete_task(task, output=output, tags=tags)
    if ray.is_initialized():
        from rayeval.actors.coordinator import get_coordinator

        coordinator = get_coordinator(create=False)
        if coordinator is not None:
            ray.get(coordinator.forget.remote(record["task_id"], tags))
    return record


def copy_spec(
    task: str,
    *,
    name: str | None = None,
    overrides: dict[str, Any] | None = None,
    output: str | None = None,
    tags: list[str] | None = None,
) -> TaskSpec:
    """A new task's spec from an earlier task's, with overrides; nothing is run or written.

    Args:
        task: The earlier task's id or name.
        name: The new task's name (default: the old name with '-copy').
        overrides: Dotted keys to values, e.g. {"parameters.temperature": 0.2, "models.0.url": "http://..."}
            (list entries by index, or by name: "models.m.url").
        output: Also look for the earlier task in this output location.
        tags: The tags you present (default $RAYEVAL_TAGS): a task carrying none of them is not found.

    Raises:
        TaskNotFoundError / SpecError: no such task, a stored spec that cannot be reused, a bad override.
    """
    from rayeval.actors.index import find_task
    from rayeval.jobs.prepare import runnable_spec_data
    from rayeval.spec.load import set_dotted

    data = runnable_spec_data(find_task(task, output=output, tags=tags))
    data["name"] = name or f"{data['name']}-copy"
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    return parse_task(data, source=f"copy of {task}")


def restart(
    task: str,
    *,
    failed: bool = False,
    spec: SpecLike | None = None,
    address: str | None = None,
    on_progress: Callable[[TaskRecord], None] | None = None,
    log_to_driver: bool = True,
    tags: list[str] | None = None,
    if_running: str = "refuse",
) -> TaskRecord:
    """Run a stopped, interrupted or finished task again under its id, here; returns its final record.

    Only what is not in its results yet runs: items committed before (by any earlier run) are not
    sent to the models again and are stored once. With `failed`, the items that failed are taken
    out of the results and run again too.

    Args:
        task: Task id, or name (the newest task with it).
        failed: Also run the failed items again.
        spec: The task's spec, when the stored one cannot be used (it held a literal credential).
        address: Ray cluster address (default: RAY_ADDRESS, a running local cluster, or a new one).
        on_progress: Called with the task record about once a second.
        tags: The tags you present (default $RAYEVAL_TAGS): a task carrying none of them is not found.
        if_running: When a run of the task is alive (another restart, or its first run): 'refuse', or
            'wait' for it to end and then run what is left. Two restarts at once never both run: the
            coordinator gives the task's lease to one run at a time (rayeval.store.fence).

    Raises:
        TaskNotFoundError: no such task (visible to your tags).
        RunRefused: a run of the task is alive (its driver reported within the heartbeat gap).
        SpecError: the stored spec cannot be used as it is.
    """
    import ray

    from rayeval.actors.coordinator import get_coordinator
    from rayeval.actors.index import find_task
    from rayeval.cluster import connect
    from rayeval.jobs.lease import IF_RUNNING
    from rayeval.jobs.prepare import prepare, runnable_spec_data
    from rayeval.jobs.runner import run_prepared
    from rayeval.records import caller_tags

    tags = caller_tags(tags)
    if if_running not in IF_RUNNING:
        raise RayevalError(f"if_running must be one of {', '.join(IF_RUNNING)}, not {if_running!r}")
    connect(address, log_to_driver=log_to_driver)
    record = ray.get(get_coordinator().get.remote(task, tags)) or find_task(task, tags=tags)
    task_id = record["task_id"]
    task_spec = (
        _as_spec(spec) if spec is not None else parse_task(runnable_spec_data(record), source=f"{task_id}/spec.json")
    )
    if task_spec.name != record.get("name", task_spec.name):
        raise SpecError(f"the spec is task '{task_spec.name}', not '{record['name']}'", field="spec")
    prepared = prepare(task_spec, task_id)
    return run_prepared(
        prepared,
        resume="failed" if failed else "unfinished",
        on_progress=on_progress,
        tags=tags,
        if_running=if_running,
    )


def eval_task(model: str, sets: list[str], **options: Any) -> TaskSpec:
    """The task of a one-line evaluation (`rayeval eval`), checked: see `eval_task_data`."""
    return parse_task(eval_task_data(model, sets, **options), source=f"rayeval eval {model}")


def eval_task_data(
    model: str,
    sets: list[str],
    *,
    name: str | None = None,
    served_model: str | None = None,
    auth_env: str | None = None,
    data: dict[str, str] | None = None,
    limit: int | None = None,
    max_model_len: int | None = None,
    max_tokens: int | None = None,
    output: str | None = None,
    engine: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The task file of a one-line evaluation (`rayeval eval`), as data: one model, greedy decoding, the
    named built-in sets with their default metrics.

    Args:
        model: An OpenAI-compatible URL (`http://host:8000/v1`), a built-in model's name (`rayeval models`),
            or a checkpoint folder (Hugging Face layout, or a URI vLLM can load) hosted on Ray Serve + vLLM.
        sets: Built-in set names (`rayeval datasets list`).
        name: Task name (default: `eval-<model>`).
        served_model: A URL's model id (default: the one model its /models lists).
        auth_env: For a URL: the environment variable holding the Authorization header's value
            ('Bearer sk-...'); it stays a `${env:NAME}` reference in the task.
        data: Set name -> its folder in the OpenCompass layout (else the package or the hub).
        limit: Evaluate only the first N items of each set.
        max_model_len: A hosted model's MAX_MODEL_LEN (default 8192).
        max_tokens: Most tokens per answer (default: the task default).
        output: Results location (default: the task default).
        engine: A hosted model's other engine fields (`gpus_per_replica`, `tensor_parallel_size`,
            `accelerator_type`, `replicas`, ...: EngineSpec).

    Raises:
        SpecError: data given for a set that is not named, options that do not fit the kind of model, or
            a URL that lists no model or several (give served_model). (Unknown sets and bad names: when
            the data is checked, `eval_task`.)
    """
    import re

    from rayeval.serve_apps.builtins import BUILTIN_MODELS

    data = data or {}
    unknown = sorted(set(data) - set(sets))
    if unknown:
        raise SpecError(f"data is given for sets that are not evaluated: {', '.join(unknown)}", field="data")
    url = model.startswith(("http://", "https://"))
    if not url and (served_model or auth_env):
        raise SpecError("served_model and auth_env are for a model behind a URL", field="model")
    engine = {k: v for k, v in (engine or {}).items() if v is not None}
    if max_model_len is not None:
        engine["max_model_len"] = max_model_len
    if url and engine:
        raise SpecError(
            f"{', '.join(sorted(engine))}: for a model rayeval hosts (a built-in model or a checkpoint)", field="model"
        )
    if url:
        stem = served_model or _served_model(model.rstrip("/"), auth_env)
        entry: dict[str, Any] = {"url": model, "model": stem}
        if auth_env:
            entry["auth_header_value"] = f"${{env:{auth_env}}}"
    elif model in BUILTIN_MODELS:
        stem, entry = model, {"builtin": model}
    else:
        stem, entry = Path(model.rstrip("/")).name or "checkpoint", {"path": model}
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "model"
    entry = {"name": stem[:100], **entry}
    if engine:
        entry["engine"] = engine
    parameters: dict[str, Any] = {"do_sample": False}
    if max_tokens is not None:
        parameters["max_tokens"] = max_tokens
    task: dict[str, Any] = {
        "name": name or f"eval-{stem}"[:100],
        "remarks": f"one-line evaluation of {model}",
        "tags": ["checkpoint"] if "path" in entry else [],
        "mode": "inference_and_evaluation",
        "models": [entry],
        "parameters": parameters,
        "evaluation_sets": [
            {"name": s, "builtin": s, **({"path": data[s]} if s in data else {}), **({"limit": limit} if limit else {})}
            for s in sets
        ],
    }
    if output is not None:
        task["output"] = output
    return task


def _served_model(base_url: str, auth_env: str | None) -> str:
    """The one model a service lists at /models (a URL's model id when none is given)."""
    import os

    import httpx

    headers = {"Authorization": os.environ[auth_env]} if auth_env and auth_env in os.environ else {}
    url = base_url.removesuffix("/chat/completions").removesuffix("/completions")
    try:
        listed = [m["id"] for m in httpx.get(f"{url}/models", headers=headers, timeout=30).json()["data"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
        raise SpecError(f"cannot list the models at {url}/models ({type(e).__name__}); give served_model") from None
    if len(listed) != 1:
        raise SpecError(
            f"{url}/models lists {len(listed)} models ({', '.join(map(str, listed[:10])) or 'none'}): "
            "give served_model (--served-model) to say which"
        )
    return listed[0]


def checkpoint_task(path: str, sets: list[str], **options: Any) -> TaskSpec:
    """The task of a checkpoint quick evaluation: `eval_task` with a checkpoint folder (the same options)."""
    return eval_task(path, sets, **options)


def submit(
    spec: SpecLike,
    *,
    address: str | None = None,
    ship_package: bool = True,
    runtime_env: dict[str, Any] | None = None,
) -> TaskHandle:
    """Submit a task as a Ray job through the Jobs API and return at once (see `rayeval.jobs.submit`).

    Args:
        spec: A TaskSpec, a dict, or the path of a task file (relative paths become absolute:
            they must exist on the cluster's nodes, or be URIs).
        address: The dashboard address (http://head:8265); default RAY_ADDRESS or 127.0.0.1:8265.
        ship_package: Upload this rayeval package with the job (py_modules), so the cluster runs
            the same code as the client.
        runtime_env: Extra runtime_env entries (pip, env_vars, ...).

    Credentials written as `${env:NAME}` take NAME's value here, where you submit: the values
    travel in the job's working-directory package (not in its runtime_env, which the dashboard
    shows), are set in the job's driver only, and the file is removed once read. A name not set
    here is resolved on the cluster.
    """
    from rayeval.jobs.submit import submit_job

    task_spec = _as_spec(spec)
    task_id, dashboard = submit_job(task_spec, address=address, ship_package=ship_package, runtime_env=runtime_env)
    return TaskHandle(task_id, task_spec.output, job_id=task_id, dashboard=dashboard)
