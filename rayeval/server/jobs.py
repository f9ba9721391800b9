"""How `rayeval server` runs tasks: every run is a Ray job submitted through the cluster's Jobs API.

A Serve replica is the wrong place to run a task: a run is a Ray Data pipeline that lasts minutes to
hours, needs a driver of its own, and would die with the replica (or block it). `rayeval submit` already
runs a task as a job (`rayeval.jobs.submit.submit_job`, entry point `rayeval.jobs.run_task`); the server
submits new tasks and copies that way. `rayeval restart` runs in the caller's process
(`rayeval.api.restart`); the server runs the same steps as a job instead, with this module as its entry
point: `python -m rayeval.server.jobs restart TASK [--failed] [--spec FILE]`.

Every job is submitted with the rayeval installed on the cluster (no package upload), and with
`RAYEVAL_TAGS` set to a team token's tags (results are then reused only from tasks that token may see)
and `LOGNAME` set to the token's name (the task's creator).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from rayeval.records import TAGS_ENV
from rayeval.server.tokens import Caller
from rayeval.spec import TaskSpec

__all__ = ["job_env", "main", "submit_restart", "submit_task"]


def job_env(caller: Caller) -> dict[str, Any]:
    """The runtime_env entries of a job run for `caller` (no secret in them: the dashboard shows them)."""
    env = {"LOGNAME": caller.name}
    if not caller.admin:
        env[TAGS_ENV] = ",".join(caller.tags)
    return {"env_vars": env}


def submit_task(spec: TaskSpec, caller: Caller, dashboard: str) -> str:
    """Run a new task as a Ray job (as `rayeval submit --no-ship` does); returns its task id (= job id)."""
    from rayeval.jobs.submit import submit_job

    task_id, _ = submit_job(spec, address=dashboard, ship_package=False, runtime_env=job_env(caller))
    return task_id


def submit_restart(task_id: str, caller: Caller, dashboard: str, *, failed: bool, spec: TaskSpec | None) -> str:
    """Run a task again under its id as a Ray job (this module's `restart`); returns the job's id. A spec
    given travels in the job's own package, credentials included (not in its runtime_env)."""
    from rayeval.cluster.remote import cluster_errors, jobs_client

    job_id = f"{task_id}-restart-{uuid.uuid4().hex[:6]}"
    entrypoint = f"python -m rayeval.server.jobs restart {task_id}" + (" --failed" if failed else "")
    workdir = tempfile.mkdtemp(prefix="rayeval-restart-")
    try:
        if spec is not None:
            Path(workdir, "task.json").write_text(json.dumps(spec.as_data(keep_secrets=True)), encoding="utf-8")
            entrypoint += " --spec task.json"
        client = jobs_client(dashboard)
        with cluster_errors(dashboard):
            client.submit_job(
                entrypoint=entrypoint,
                submission_id=job_id,
                runtime_env={"working_dir": workdir, **job_env(caller)},
                metadata={"rayeval_task": task_id, "rayeval": "restart"},
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return job_id


def _restart(task: str, *, failed: bool, spec_file: str | None) -> dict[str, Any]:
    """`rayeval.api.restart`'s steps, in this job's driver: the task found with the caller's tags
    ($RAYEVAL_TAGS), its stored spec (or the one given), the items not stored yet (and the failed ones)."""
    import ray
    import ray.data

    from rayeval.actors.coordinator import get_coordinator
    from rayeval.cluster import connect
    from rayeval.errors import SpecError, TaskNotFoundError
    from rayeval.jobs.prepare import prepare, runnable_spec_data
    from rayeval.jobs.runner import run_prepared
    from rayeval.records import caller_tags
    from rayeval.spec import load_task, parse_task

    tags = caller_tags()
    connect("auto", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    record = ray.get(get_coordinator().get.remote(task, tags))
    if record is None:
        raise TaskNotFoundError(f"no task '{task}'")
    task_id = record["task_id"]
    if spec_file:
        spec = load_task(spec_file)
        Path(spec_file).unlink(missing_ok=True)  # it held credentials: not left in the job's folder
    else:
        spec = parse_task(runnable_spec_data(record), source=f"{task_id}/spec.json")
    if spec.name != record.get("name", spec.name):
        raise SpecError(f"the spec is task '{spec.name}', not '{record['name']}'", field="spec")
    print(f"[rayeval] restarting task {task_id}" + (" (failed items too)" if failed else ""), flush=True)
    return run_prepared(prepare(spec, task_id), resume="failed" if failed else "unfinished", tags=tags)


def main(argv: list[str] | None = None) -> int:
    """The job's entry point (see the module's docstring)."""
    import logging

    parser = argparse.ArgumentParser(prog="python -m rayeval.server.jobs", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    restart = commands.add_parser("restart", help="Run a task again under its id.")
    restart.add_argument("task", help="Task id or name")
    restart.add_argument("--failed", action="store_true", help="Also run the failed items again")
    restart.add_argument("--spec", help="The task file, when the stored spec cannot be used")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[rayeval] %(message)s")
    for noisy in ("httpx", "httpcore", "ray.serve", "ray.data"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from rayeval.analysis.text import format_summary
    from rayeval.errors import RayevalError

    try:
        record = _restart(args.task, failed=args.failed, spec_file=args.spec)
    except RayevalError as e:
        print(f"rayeval: error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    print(f"[rayeval] task {record['task_id']}: {record['state']} (run {record.get('runs', 1)})", flush=True)
    print(format_summary(record.get("summary") or []), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
