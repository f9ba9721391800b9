"""Putting `rayeval server` on a cluster and taking it down, as `rayeval ui` does (rayeval.serve_apps.ui).

`start_server` starts Serve if needed (its proxy on 127.0.0.1 unless RAYEVAL_SERVE_HOST says otherwise:
rayeval.serve_apps.hosting.ensure_serve) and deploys the application under its route prefix; it stays up
after the caller leaves (Serve's applications are the cluster's). From a machine that reaches only the
dashboard, `deploy_remotely` does the same through a small Ray job running this module:
`python -m rayeval.server.deploy start|stop [--config JSON] [--route-prefix P]`, which prints one line
`RAYEVAL-RESULT <json>` (rayeval.cluster.remote's convention).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from typing import Any

from rayeval.server.config import APP_NAME, ROUTE_PREFIX, ServerConfig

__all__ = ["deploy_remotely", "main", "server_url", "start_server", "stop_server"]


def server_url(port: int, route_prefix: str = ROUTE_PREFIX) -> str:
    """The server's base URL on this node's Serve proxy."""
    from rayeval.serve_apps.hosting import DEFAULT_HOST

    host = os.environ.get("RAYEVAL_SERVE_HOST", DEFAULT_HOST)
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}{route_prefix.rstrip('/')}"


def start_server(config: ServerConfig, route_prefix: str = ROUTE_PREFIX, *, timeout_s: float = 120.0) -> str:
    """Deploy the server on the connected cluster (starting Serve if needed), wait until it runs; its URL.

    Raises:
        RuntimeError: it did not come up within `timeout_s` (Serve's message says why).
    """
    from ray import serve

    from rayeval.serve_apps.hosting import ensure_serve
    from rayeval.server.app import build_app

    port = ensure_serve()
    serve.run(build_app(config), name=APP_NAME, route_prefix=route_prefix, blocking=False)
    deadline = time.monotonic() + timeout_s
    while True:
        app = serve.status().applications.get(APP_NAME)
        state = str(getattr(app.status, "value", app.status)) if app is not None else "NOT_STARTED"
        if state == "RUNNING":
            return server_url(port, route_prefix)
        if state == "DEPLOY_FAILED" or time.monotonic() > deadline:
            raise RuntimeError(f"rayeval server did not start ({state}): {getattr(app, 'message', '')[:1000]}")
        time.sleep(0.5)


def stop_server() -> bool:
    """Take the server down; False when it was not running."""
    from ray import serve

    if APP_NAME not in serve.status().applications:
        return False
    serve.delete(APP_NAME)
    return True


def deploy_remotely(
    dashboard: str, op: str, config: ServerConfig | None = None, route_prefix: str = ROUTE_PREFIX
) -> Any:
    """`start` or `stop` the server on the cluster behind a dashboard, through a Ray job; the job's answer
    (the URL, or whether it was running).

    Raises:
        ServiceError: the cluster cannot be reached, refuses the caller, or the job failed.
    """
    from rayeval.cluster.remote import RESULT_MARK, cluster_errors, jobs_client
    from rayeval.errors import ServiceError

    client = jobs_client(dashboard)
    args = [op, "--route-prefix", route_prefix]
    if config is not None:
        args += ["--config", config.model_dump_json(exclude_none=True)]
    with cluster_errors(dashboard):
        job = client.submit_job(
            entrypoint="python -m rayeval.server.deploy " + shlex.join(args), metadata={"rayeval": f"server {op}"}
        )
        deadline = time.monotonic() + 180
        while str(client.get_job_status(job).value) not in ("SUCCEEDED", "FAILED", "STOPPED"):
            if time.monotonic() > deadline:
                client.stop_job(job)
                raise ServiceError(f"the cluster at {dashboard} did not answer within 180 s (job {job})")
            time.sleep(0.3)
        logs = client.get_job_logs(job)
    for line in reversed(logs.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    tail = " | ".join(logs.strip().splitlines()[-3:])[-500:]
    raise ServiceError(f"the cluster at {dashboard} could not {op} the server (job {job}): {tail or 'no output'}")


def main(argv: list[str] | None = None) -> int:
    """The job's entry point (see the module's docstring)."""
    from rayeval.cluster.remote import RESULT_MARK

    parser = argparse.ArgumentParser(prog="python -m rayeval.server.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("op", choices=["start", "stop"])
    parser.add_argument("--config", help="The ServerConfig, as JSON")
    parser.add_argument("--route-prefix", default=ROUTE_PREFIX)
    args = parser.parse_args(argv)
    import ray

    ray.init(logging_level="error", log_to_driver=False)
    if args.op == "start":
        config = ServerConfig.model_validate_json(args.config) if args.config else ServerConfig()
        result: Any = start_server(config, args.route_prefix)
    else:
        result = stop_server()
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
