"""Talking to a cluster through its dashboard (the Jobs API), from where only the dashboard is reachable,
with one-line errors for what goes wrong there: no cluster at the address, a missing or wrong token.

An address that starts with `http://` or `https://` is a dashboard; the task commands then ask the
cluster's coordinator through a small job (`python -m rayeval.jobs.query`). Ray's token
authentication (on by default since Ray 2.52) is used as Ray documents it: `RAY_AUTH_MODE=token` and
the token in `RAY_AUTH_TOKEN`, the file `RAY_AUTH_TOKEN_PATH` names, or `~/.ray/auth_token`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rayeval import errors
from rayeval.errors import RayevalError, ServiceError

__all__ = ["ERROR_MARK", "RESULT_MARK", "TOKEN_HINT", "cluster_errors", "is_dashboard", "jobs_client", "query"]

#: How the query job (rayeval.jobs.query) marks its answer, and an error rayeval raised on purpose.
RESULT_MARK = "RAYEVAL-RESULT "
ERROR_MARK = "RAYEVAL-ERROR "

#: What to set for a cluster with token authentication, said in every error about it.
TOKEN_HINT = (
    "set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, or "
    "~/.ray/auth_token)"
)
#: Seconds a question to the coordinator may take (the job starts a Python process on the head).
QUERY_TIMEOUT_S = 120.0


def is_dashboard(address: str | None) -> bool:
    """Whether an address is a dashboard URL (http:// or https://) rather than a cluster (GCS) address."""
    return bool(address) and address.startswith(("http://", "https://"))


@contextlib.contextmanager
def cluster_errors(address: str) -> Iterator[None]:
    """Turn what Ray raises when a cluster cannot be reached or refuses the caller into one-line errors."""
    from ray.exceptions import AuthenticationError

    unreachable: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    with contextlib.suppress(ImportError):  # the Jobs API's HTTP client
        import requests

        unreachable += (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    try:
        yield
    except AuthenticationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "authentication failed"
        raise ServiceError(f"the Ray cluster at {address} refused the request ({first}); {TOKEN_HINT}") from None
    except unreachable as e:
        raise ServiceError(
            f"cannot reach the Ray cluster at {address} ({type(e).__name__}); start it (`ray start --head`) or give "
            "its dashboard address: --address http://HEAD:8265 (or RAY_ADDRESS)"
        ) from None
    except RuntimeError as e:  # the Jobs API's own refusals (a dashboard that is not Ray's, a wrong version)
        if "401" in str(e) or "Unauthorized" in str(e):
            raise ServiceError(f"the Ray cluster at {address} refused the request; {TOKEN_HINT}") from None
        raise ServiceError(f"the Ray dashboard at {address} answered: {str(e).splitlines()[0][:300]}") from None


def jobs_client(address: str) -> Any:
    """A JobSubmissionClient for a dashboard address, with one-line errors (and without its INFO lines)."""
    from ray.job_submission import JobSubmissionClient

    logging.getLogger("ray.dashboard.modules.dashboard_sdk").setLevel(logging.WARNING)  # it sets INFO itself

    with cluster_errors(address):
        return JobSubmissionClient(address)


def query(address: str, op: str, task: str | None = None, *, tags: list[str] | None = None, **options: Any) -> Any:
    """Ask the coordinator of the cluster behind a dashboard (`list`, `get TASK`, `stop TASK`, `ui`) through
    a small job; returns its answer.

    Raises:
        ServiceError: the cluster cannot be reached, refuses the caller, or the job failed.
        TaskNotFoundError (and the other errors rayeval raises on purpose): raised again here.
    """
    client = jobs_client(address)
    args = [op, *([task] if task else []), *(["--tags", ",".join(tags)] if tags else [])]
    for key, value in options.items():
        if value is not None:
            args += [f"--{key}", str(value)]
    package = str(Path(__file__).resolve().parents[1])
    with cluster_errors(address):
        job = client.submit_job(
            entrypoint="python -m rayeval.jobs.query " + shlex.join(args),
            runtime_env={"py_modules": [package]},
            metadata={"rayeval": f"query {op}"},
        )
        deadline = time.monotonic() + QUERY_TIMEOUT_S
        while str(client.get_job_status(job).value) not in ("SUCCEEDED", "FAILED", "STOPPED"):
            if time.monotonic() > deadline:
                client.stop_job(job)
                raise ServiceError(
                    f"the cluster at {address} did not answer within {QUERY_TIMEOUT_S:.0f} s (job {job})"
                )
            time.sleep(0.3)
        logs = client.get_job_logs(job)
    for line in reversed(logs.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
        if line.startswith(ERROR_MARK):
            error = json.loads(line[len(ERROR_MARK) :])
            kind = getattr(errors, error["type"], RayevalError)
            raise kind(error["message"])
    tail = " | ".join(logs.strip().splitlines()[-3:])[-500:]
    raise ServiceError(f"the cluster at {address} could not answer (job {job}): {tail or 'no output'}")
