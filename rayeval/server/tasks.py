"""What `rayeval server` does for a caller, HTTP aside: find, list, submit, stop, restart, copy and delete
tasks, and read their results, items, report and log, always with the caller's tags.

Every lookup goes to the cluster's coordinator with the caller's tags (`get`, `list_tasks`, `request_stop`,
`forget` take them), and the results readers get them too; a task the tags do not reach is missing, with
the same error as a task that does not exist (`no task 'KEY'`). Runs go through the Jobs API
(rayeval.server.jobs). Each state-changing call is written to the audit log with its outcome, whatever it is.

The functions are the ones the command line calls (rayeval.jobs.submit, rayeval.actors.coordinator,
rayeval.analysis), not rayeval.api: that is a front end, and this is one too.

A task submitted here is known to the coordinator only once its job's driver has started and checked it
(seconds later, or never when that check fails: a data file missing on the cluster). Until then the service
answers for it from what it submitted, as `pending`, and as `failed` with the job's error line when the job
ended before the task began; so a task never vanishes between its submission and its start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import yaml

from rayeval.analysis.html import finite
from rayeval.errors import RayevalError, RunRefused, SpecError, TaskNotFoundError
from rayeval.records import ACTIVE, TERMINAL, TaskRecord, driver_gone, match_task, shown_state, visible
from rayeval.server.audit import Action, AuditLog
from rayeval.server.config import ServerConfig
from rayeval.server.jobs import submit_restart, submit_task
from rayeval.server.policy import PolicyError, check_spec, prepare_data
from rayeval.server.schemas import ActionResult, CopyRequest, RestartRequest, TaskEvent
from rayeval.server.store import ServerStore
from rayeval.server.tokens import Caller
from rayeval.spec import TaskSpec, parse_task

__all__ = ["Conflict", "ItemNotFound", "TaskService", "missing", "parse_spec_text"]

log = logging.getLogger("rayeval.server")
#: Longest a stop may wait for the task to end.
MAX_STOP_WAIT_S = 120.0
#: How long a submitted task that never reached the coordinator (its job failed first) is still shown.
PENDING_KEPT_S = 24 * 3600.0


class Conflict(RayevalError):
    """The task's state does not allow the call now (delete a running task, restart a running one)."""


class ItemNotFound(RayevalError):
    """No such item (or model) in a visible task's results."""


def missing(key: str) -> str:
    """The one message for a task that does not exist or that the caller may not see."""
    return f"no task '{key}'"


def parse_spec_text(text: str, *, json_body: bool = False) -> Any:
    """A task file's text (YAML, or JSON) as data; errors name the line and the problem, never the text
    around it (which may hold a credential).

    Raises:
        SpecError: not valid YAML or JSON, or a key given twice.
    """
    from rayeval.spec.unique_keys import load_json, load_yaml

    source = "the request body"
    if not text.strip():
        raise SpecError("no task file in the request body (send its YAML or JSON text)", source=source)
    try:
        return load_json(text) if json_body else load_yaml(text)
    except json.JSONDecodeError as e:
        raise SpecError(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}", source=source) from None
    except ValueError as e:  # a key twice in a JSON object
        raise SpecError(f"invalid JSON: {str(e)[:200]}", source=source) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "cannot be read"
        raise SpecError(f"invalid YAML{where}: {problem}", source=source) from None


def credentials(data: Any) -> list[str]:
    """Every credential written in a task's data (values of `auth_header_value`, at any depth)."""
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "auth_header_value" and isinstance(value, str):
                found.append(value)
            else:
                found += credentials(value)
    elif isinstance(data, list):
        for value in data:
            found += credentials(value)
    return found


def _weights(text: str | None) -> dict[str, Any] | None:
    """Weights given to the API: a JSON object, or `set=W,...,metric:NAME=W` (never a file on the server)."""
    if text is None or not text.strip():
        return None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"weights: invalid JSON ({e.msg})", field="weights") from None
        return data if isinstance(data, dict) else {"invalid": data}
    data: dict[str, dict[str, float]] = {"sets": {}, "metrics": {}}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = None
        if not sep or not key.strip() or weight is None:
            raise SpecError(f"weights: '{part}' is not NAME=WEIGHT (metrics as metric:NAME=WEIGHT)", field="weights")
        kind, name = ("metrics", key[len("metric:") :]) if key.startswith("metric:") else ("sets", key)
        data[kind][name.strip()] = weight
    return data


def _stored_spec(record: TaskRecord, overrides: dict[str, Any]) -> dict[str, Any]:
    """The spec a task ran with, as stored beside its results (`rayeval.jobs.prepare.runnable_spec_data`), with
    the API's words for a credential that was never stored.

    Raises:
        SpecError: no stored spec, or a literal credential that `overrides` does not give again.
    """
    from rayeval.jobs.prepare import runnable_spec_data
    from rayeval.store.results import ResultsStore, spec_part

    try:
        return runnable_spec_data(record)
    except SpecError:
        data = ResultsStore(record["output"]).read_json(record["task_id"], "spec.json")
        if data is None:
            raise SpecError(f"task {record['task_id']} has no stored spec; send its task file", field="spec") from None
    data = spec_part(data)
    hidden = [
        (kind, m["name"])
        for kind in ("models", "judges")
        for m in data.get(kind, [])
        if m.get("auth_header_value") == "***"
    ]
    given = set()
    for key in overrides:
        parts = key.split(".")
        if len(parts) == 3 and parts[0] in ("models", "judges") and parts[2] == "auth_header_value":
            entries = data.get(parts[0], [])
            ident = parts[1]
            name = entries[int(ident)]["name"] if ident.isdigit() and int(ident) < len(entries) else ident
            given.add((parts[0], name))
    missing_ones = [name for kind, name in hidden if (kind, name) not in given]
    if missing_ones:
        raise SpecError(
            f"task {record['task_id']}'s models {', '.join(missing_ones)} had a literal credential, which is never "
            "stored: send the task file again (`spec` in a restart's body), or give the credential again (a copy's "
            "override models.NAME.auth_header_value)",
            field="spec",
        )
    return data


class TaskService:
    """The server's operations for callers (see the module's docstring).

    Args:
        config: The server's settings.
        audit: Where state changes are written (default: the audit log in the config's store).
    """

    def __init__(self, config: ServerConfig, audit: AuditLog | None = None):
        self.config = config
        self.audit = audit or AuditLog(ServerStore(config.store_location()))
        #: task id -> the record of a task submitted here that the coordinator does not know yet
        self._submitted: dict[str, TaskRecord] = {}

    def _note_submitted(self, spec: TaskSpec, task_id: str, caller: Caller) -> None:
        now = time.time()
        self._submitted = {k: r for k, r in self._submitted.items() if now - r["created_at"] < PENDING_KEPT_S}
        self._submitted[task_id] = {
            "task_id": task_id, "name": spec.name, "remarks": spec.remarks, "tags": list(spec.tags),
            "mode": spec.mode, "models": [m.name for m in spec.models],
            "eval_sets": [s.name for s in spec.evaluation_sets],
            "output": spec.output, "creator": caller.name, "job_id": task_id, "submitted": True, "state": "pending",
            "created_at": now, "heartbeat_at": now + PENDING_KEPT_S, "progress": {},
        }  # fmt: skip

    def _unregistered(self, records: list[TaskRecord], tags: list[str] | None) -> list[TaskRecord]:
        """The tasks submitted here, visible to `tags`, that the coordinator does not know (yet): `pending` while
        their job runs, `failed` with its error when it ended first."""
        known = {r["task_id"] for r in records}
        for task_id in [t for t in self._submitted if t in known]:
            self._submitted.pop(task_id, None)
        out = []
        for task_id, record in list(self._submitted.items()):
            if not visible(record, tags):
                continue
            if record["state"] == "pending":
                record = self._submitted[task_id] = self._job_outcome(record)
            out.append(record)
        return out

    def _job_outcome(self, record: TaskRecord) -> TaskRecord:
        """A submitted task's record, `failed` with the job's error line once its job ended without it."""
        from rayeval.cluster.remote import jobs_client

        try:
            client = jobs_client(self.config.dashboard_address())
            status = str(client.get_job_status(record["job_id"]).value)
            if status not in ("FAILED", "STOPPED", "SUCCEEDED"):
                return record
            lines = client.get_job_logs(record["job_id"]).splitlines()
        except Exception:  # noqa: BLE001 (the dashboard busy or restarting: ask again next time)
            return record
        error = next((ln for ln in reversed(lines) if ln.startswith("rayeval: error: ")), "")
        why = error.removeprefix("rayeval: error: ")[:1000] or f"its Ray job {record['job_id']} ended: {status}"
        return {**record, "state": "failed", "error": why, "finished_at": time.time(), "heartbeat_at": time.time()}

    # -- lookups ----------------------------------------------------------------------------
    @staticmethod
    def _coordinator() -> Any:
        from rayeval.actors.coordinator import get_coordinator

        return get_coordinator(create=False)

    def find(self, caller: Caller, key: str) -> TaskRecord:
        """The task `key` (id, or the newest with that name) among those the caller may see.

        Raises:
            TaskNotFoundError: none (the same message whether it does not exist or is not the caller's).
        """
        import ray

        coordinator = self._coordinator()
        record = ray.get(coordinator.get.remote(key, caller.visible_tags)) if coordinator is not None else None
        if record is None and self._submitted:
            record = match_task(self._unregistered([], caller.visible_tags), key)
            if record is not None and coordinator is not None:  # registered meanwhile
                record = ray.get(coordinator.get.remote(record["task_id"], caller.visible_tags)) or record
        if record is not None and record.get("epoch") is not None:  # the coordinator's own record: it started
            self._submitted.pop(record["task_id"], None)
        if record is None:
            raise TaskNotFoundError(missing(key))
        return record

    def list(self, caller: Caller, *, state: str | None = None, tag: str | None = None) -> list[TaskRecord]:
        """The tasks the caller may see, newest first (in `state`, with `tag`, if given)."""
        import ray

        coordinator = self._coordinator()
        records = ray.get(coordinator.list_tasks.remote(caller.visible_tags)) if coordinator is not None else []
        records = sorted(
            [*records, *self._unregistered(records, caller.visible_tags)], key=lambda r: r["created_at"], reverse=True
        )
        shown = (shown_state(r) for r in records)
        return [
            r for r in shown if (state is None or r["state"] == state) and (tag is None or tag in r.get("tags", []))
        ]

    def events(self, caller: Caller, key: str) -> list[TaskEvent]:
        """The task's event log."""
        return [TaskEvent.of(e) for e in self.find(caller, key).get("events", [])]

    # -- state changes --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _audited(self, caller: Caller, action: Action, task: str | None, secrets: list[str]) -> Iterator[dict]:
        """Write the call to the audit log with its outcome; `note` takes the task id and detail found on the way."""
        note: dict[str, Any] = {"task": task, "detail": ""}
        try:
            yield note
        except TaskNotFoundError:
            self.audit.record(caller.name, action, note["task"], "not-found", "no such task visible to the token")
            raise
        except (PolicyError, SpecError) as e:
            self.audit.record(caller.name, action, note["task"], "invalid", str(e), secrets=secrets)
            raise
        except (Conflict, RunRefused) as e:
            self.audit.record(caller.name, action, note["task"], "refused", str(e), secrets=secrets)
            raise
        except Exception as e:
            self.audit.record(caller.name, action, note["task"], "error", f"{type(e).__name__}: {e}", secrets=secrets)
            raise
        self.audit.record(caller.name, action, note["task"], "ok", note["detail"], secrets=secrets)

    def _spec(self, data: Any, caller: Caller, source: str) -> TaskSpec:
        """Raw task data made into a task this caller may run (rayeval.server.policy)."""
        data = prepare_data(data, caller, self.config)
        spec = parse_task(data, source=source, base_dir=self.config.workdir or os.getcwd())
        return check_spec(spec, caller, self.config)

    def submit(self, caller: Caller, text: str, *, json_body: bool = False) -> ActionResult:
        """Run a new task from a task file's text as a Ray job."""
        try:
            data = parse_spec_text(text, json_body=json_body)
        except SpecError as e:
            self.audit.record(caller.name, "submit", None, "invalid", str(e))
            raise
        secrets = credentials(data)
        with self._audited(caller, "submit", data.get("name") if isinstance(data, dict) else None, secrets) as note:
            spec = self._spec(data, caller, "the request body")
            task_id = submit_task(spec, caller, self.config.dashboard_address())
            self._note_submitted(spec, task_id, caller)
            note.update(task=task_id, detail=f"task {spec.name} submitted as Ray job {task_id}")
        return ActionResult(task_id=task_id, action="submit", state="pending", job_id=task_id, message=note["detail"])

    def stop(self, caller: Caller, key: str, *, wait: float = 0.0) -> ActionResult:
        """Ask a task to stop; wait up to `wait` seconds (at most MAX_STOP_WAIT_S) for it to end."""
        from rayeval.actors.coordinator import stop_task

        with self._audited(caller, "stop", key, []) as note:
            record = self.find(caller, key)
            note["task"] = record["task_id"]
            if record["task_id"] in self._submitted:  # its job has not started the task: stop the job
                record = self._stop_job(record)
            else:
                wait = min(max(wait, 0.0), MAX_STOP_WAIT_S)
                record = stop_task(record["task_id"], tags=caller.visible_tags, wait=wait)
            if record is None:
                raise TaskNotFoundError(missing(key))
            state = shown_state(record)["state"]
            note["detail"] = f"state {state}"
        return ActionResult(task_id=record["task_id"], action="stop", state=state, message=f"task {state}")

    def _stop_job(self, record: TaskRecord) -> TaskRecord:
        """Stop the job of a task that has not started (its driver, if it starts, stops at its SIGTERM)."""
        from rayeval.cluster.remote import cluster_errors, jobs_client

        dashboard = self.config.dashboard_address()
        if record["state"] == "pending":
            with cluster_errors(dashboard):
                jobs_client(dashboard).stop_job(record["job_id"])
            record = {**record, "state": "stopped", "finished_at": time.time(), "heartbeat_at": time.time()}
            self._submitted[record["task_id"]] = record
        return record

    def restart(self, caller: Caller, key: str, request: RestartRequest) -> ActionResult:
        """Run a task again under its id (what is not stored yet; with `failed`, the failed items too)."""
        data = parse_spec_text(request.spec) if request.spec is not None else None
        secrets = credentials(data)
        with self._audited(caller, "restart", key, secrets) as note:
            record = self.find(caller, key)
            task_id = note["task"] = record["task_id"]
            if record.get("state") in ACTIVE and not driver_gone(record):
                raise Conflict(f"task {task_id} is {record['state']}; stop it first")
            if data is not None:
                spec = self._spec(data, caller, "the request's spec")
                if spec.name != record.get("name"):
                    raise SpecError(f"the spec is task '{spec.name}', not '{record.get('name')}'", field="spec")
            else:
                _stored_spec(record, {})  # refused here, not in the job, when it held a literal credential
                spec = None
            job_id = submit_restart(task_id, caller, self.config.dashboard_address(), failed=request.failed, spec=spec)
            note["detail"] = f"run again as Ray job {job_id}" + (" (failed items too)" if request.failed else "")
        return ActionResult(task_id=task_id, action="restart", job_id=job_id, message=note["detail"])

    def copy(self, caller: Caller, key: str, request: CopyRequest) -> ActionResult:
        """A new task from a task's stored spec with overrides, run as a Ray job (`rayeval copy`); overrides
        may give the credentials a stored spec could not keep (`models.NAME.auth_header_value`)."""
        from rayeval.spec.load import set_dotted

        secrets = credentials(request.overrides) + [
            v for k, v in request.overrides.items() if k.endswith("auth_header_value") and isinstance(v, str)
        ]
        with self._audited(caller, "copy", key, secrets) as note:
            record = self.find(caller, key)
            note["task"] = record["task_id"]
            data = _stored_spec(record, request.overrides)
            data["name"] = request.name or f"{data['name']}-copy"
            if not caller.admin:  # a copy of an admin's task made for the team: the team's results location
                data.pop("output", None)
            for dotted, value in request.overrides.items():
                set_dotted(data, dotted, value)
            spec = self._spec(data, caller, f"copy of {record['task_id']}")
            task_id = submit_task(spec, caller, self.config.dashboard_address())
            self._note_submitted(spec, task_id, caller)
            note.update(task=task_id, detail=f"copy of {record['task_id']} submitted as Ray job {task_id}")
        return ActionResult(task_id=task_id, action="copy", state="pending", job_id=task_id, message=note["detail"])

    def delete(self, caller: Caller, key: str) -> ActionResult:
        """Remove a task that is not running: its record, its index entry and its results folder."""
        import pyarrow.fs as pafs
        import ray

        from rayeval.store.results import ResultsStore

        with self._audited(caller, "delete", key, []) as note:
            record = self.find(caller, key)
            task_id = note["task"] = record["task_id"]
            if record.get("state") in ACTIVE and not driver_gone(record):
                raise Conflict(f"task {task_id} is {record['state']}; stop it first")
            store = ResultsStore(record["output"])
            if store.fs.get_file_info(store.path(task_id)).type != pafs.FileType.NotFound:
                store.delete_task(task_id)
            coordinator = self._coordinator()
            forgotten = coordinator is not None and ray.get(coordinator.forget.remote(task_id, caller.visible_tags))
            if not forgotten and self._submitted.pop(task_id, None) is None:
                raise TaskNotFoundError(missing(key))
            note["detail"] = f"record and results in {record['output']} deleted"
        return ActionResult(task_id=task_id, action="delete", state="deleted", message=note["detail"])

    # -- results ------------------------------------------------------------------------------------
    def results(
        self,
        caller: Caller,
        key: str,
        *,
        weights: str | None = None,
        reference: str | None = None,
        seed: int = 0,
        resamples: int = 1000,
    ) -> dict[str, Any]:
        """`rayeval results --format json`: leaderboard, scores with intervals, usage, comparison."""
        from rayeval.analysis import compute_results

        record = self.find(caller, key)
        with self._readable(key):
            res = compute_results(
                record["task_id"], weights=_weights(weights), reference=reference, seed=seed, resamples=resamples,
                output=record["output"], tags=caller.visible_tags,
            )  # fmt: skip
        return finite(res.to_dict())

    def item(
        self,
        caller: Caller,
        key: str,
        item_id: str,
        *,
        model: str | None = None,
        eval_set: str | None = None,
        reference: str | None = None,
    ) -> list[dict[str, Any]]:
        """`rayeval item --json`: every step of one item, per model, the reference model's beside."""
        from rayeval.analysis import item_view

        record = self.find(caller, key)
        with self._readable(key):
            try:
                views = item_view(
                    record["task_id"], item_id, model=model, eval_set=eval_set, reference=reference,
                    output=record["output"], tags=caller.visible_tags,
                )  # fmt: skip
            except (TaskNotFoundError, SpecError):
                raise
            except RayevalError as e:
                raise ItemNotFound(str(e)) from None
        return [finite(json.loads(json.dumps(v.to_dict(), default=str))) for v in views]

    def report(
        self,
        caller: Caller,
        key: str,
        *,
        weights: str | None = None,
        reference: str | None = None,
        items: int = 200,
        seed: int = 0,
        resamples: int = 1000,
    ) -> str:
        """`rayeval report`: the task's report, one self-contained HTML page."""
        from rayeval.analysis import render_report

        record = self.find(caller, key)
        with self._readable(key):
            return render_report(
                record["task_id"], weights=_weights(weights), reference=reference, seed=seed, resamples=resamples,
                items=items, output=record["output"], tags=caller.visible_tags,
            )  # fmt: skip

    @staticmethod
    @contextlib.contextmanager
    def _readable(key: str) -> Iterator[None]:
        """A task the coordinator showed, but its results store does not (yet): missing, in the same words."""
        try:
            yield
        except TaskNotFoundError:
            raise TaskNotFoundError(missing(key)) from None

    def ended(self, record: TaskRecord) -> bool:
        """Whether a task will write no more events (it ended, or its driver is gone)."""
        return record.get("state") in TERMINAL or driver_gone(record)
