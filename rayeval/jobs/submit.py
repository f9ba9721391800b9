"""Submitting a task as a Ray job: the spec and forwarded credentials travel in the job's own package,
the entry point is `python -m rayeval.jobs.run_task`."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rayeval.cluster.remote import cluster_errors, is_dashboard, jobs_client
from rayeval.errors import ServiceError
from rayeval.jobs.prepare import new_task_id
from rayeval.spec import TaskSpec, env_references

__all__ = ["follow_job_logs", "submit_job"]


def _env_references(spec: TaskSpec) -> dict[str, str]:
    """The values, in this process's environment, of the `${env:NAME}` references of the spec's credentials."""
    names = set()
    for m in [*spec.models, *spec.judges]:
        if m.auth_header_value is not None:
            names.update(env_references(m.auth_header_value.get_secret_value()))
    return {n: os.environ[n] for n in sorted(names) if n in os.environ}


def submit_job(
    task_spec: TaskSpec,
    *,
    address: str | None = None,
    ship_package: bool = True,
    runtime_env: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """Submit a task as a Ray job through the Jobs API; returns (task id, dashboard address) at once.
    The arguments and how credentials travel: `rayeval.api.submit`."""
    task_id = new_task_id(task_spec.name)
    dashboard = address or os.environ.get("RAY_ADDRESS") or "http://127.0.0.1:8265"
    if not is_dashboard(dashboard):
        raise ServiceError(
            f"submit takes the cluster's dashboard address, http://HEAD:8265 (got {dashboard}); give it with "
            "--address or RAY_ADDRESS"
        )
    client = jobs_client(dashboard)
    workdir = tempfile.mkdtemp(prefix="rayeval-submit-")
    Path(workdir, "task.json").write_text(json.dumps(task_spec.as_data(keep_secrets=True)), encoding="utf-8")
    entrypoint = f"python -m rayeval.jobs.run_task task.json --task-id {task_id} --submitted"
    forwarded = _env_references(task_spec)
    if forwarded:  # in the job's package, not its runtime_env (which the dashboard shows)
        Path(workdir, "env.json").write_text(json.dumps(forwarded), encoding="utf-8")
        entrypoint += " --env-file env.json"
    env: dict[str, Any] = {"working_dir": workdir, **(runtime_env or {})}
    if ship_package:
        env.setdefault("py_modules", [str(Path(__file__).resolve().parents[1])])
    try:
        with cluster_errors(dashboard):
            client.submit_job(
                entrypoint=entrypoint,
                submission_id=task_id,
                runtime_env=env,
                metadata={"rayeval_task": task_spec.name},
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return task_id, dashboard


def follow_job_logs(dashboard: str, job_id: str, write: Callable[[str], Any]) -> None:
    """Hand the job's driver output to `write` as it comes (Ray's log stream), until the job ends."""
    import asyncio

    client = jobs_client(dashboard)

    async def stream() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    with cluster_errors(dashboard):
        asyncio.run(stream())
