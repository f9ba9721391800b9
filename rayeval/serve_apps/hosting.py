"""Deploy hosted models for a task, share them between tasks, health-check them, take them down.

A hosted model becomes one Serve application whose name is derived from the weights and the
engine settings (`llm.app_name`), so two tasks naming the same model with the same engine config
use one deployment. The coordinator counts the users of each application; the last user to
finish deletes it (unless the spec says `keep`).

Inference actors reach the application over HTTP through the Serve proxy of their own node
(bound to 127.0.0.1 by default), with rayeval's ordinary OpenAI client: the same retries,
limiter and results as for a service given by URL.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from rayeval.errors import ServiceError
from rayeval.inference.client import HostedEndpoint, check_service, resolve_endpoint
from rayeval.serve_apps.builtins import ModelSource, resolve_source
from rayeval.serve_apps.llm import app_name, effective_engine, openai_app, route_prefix
from rayeval.spec import ModelSpec

__all__ = ["HostedEndpoint", "deploy", "ensure_serve", "release", "serve_port"]

log = logging.getLogger("rayeval")
#: The Serve proxy's address when rayeval starts Serve (RAYEVAL_SERVE_HOST / RAYEVAL_SERVE_PORT override).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: Seconds a deployment may stay UNHEALTHY (a replica failed its health checks; Serve replaces it) before
#: a task that deploys or joins it gives up. DEPLOY_FAILED (a replica that cannot start) fails at once.
UNHEALTHY_GRACE_S = 180.0


def ensure_serve() -> int:
    """Start Serve on the connected cluster if it is not running; return the HTTP proxy's port."""
    from ray import serve

    host = os.environ.get("RAYEVAL_SERVE_HOST", DEFAULT_HOST)
    port = int(os.environ.get("RAYEVAL_SERVE_PORT", DEFAULT_PORT))
    serve.start(http_options={"host": host, "port": port}, logging_config={"enable_access_log": False})
    return serve_port(port)


def serve_port(default: int = DEFAULT_PORT) -> int:
    """The running Serve proxy's port (the one it was started with, which may not be rayeval's default)."""
    try:
        from ray.serve.context import _get_global_client

        return int(_get_global_client().http_config.port)
    except Exception:  # private API moved: assume what we asked for
        return default


def _status(name: str) -> tuple[str, str]:
    from ray import serve

    app = serve.status().applications.get(name)
    if app is None:
        return "NOT_STARTED", ""
    messages = [app.message] + [d.message for d in app.deployments.values() if d.message]
    return str(getattr(app.status, "value", app.status)), "; ".join(m for m in messages if m)


def deploy(
    model: ModelSpec,
    *,
    user: str,
    coordinator: Any | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    source: ModelSource | None = None,
    wait_timeout_s: float | None = None,
) -> HostedEndpoint:
    """Deploy (or join) the model's Serve application, wait until it is healthy, and return its endpoint.

    Args:
        model: A hosted ModelSpec (kind checkpoint or builtin).
        user: Who uses the deployment (a task id); counted so that the last user deletes it.
        coordinator: The coordinator actor handle, to count users (None: no sharing bookkeeping).
        on_event: Called with {"state", "app", "message"} as the deployment progresses.
        source: The resolved weights (resolved here when not given).
        wait_timeout_s: Seconds the replicas may wait to be scheduled (resources the cluster does not have)
            before the deployment is given up (None: only `deploy_timeout_s` applies).

    Raises:
        ServiceError: the deployment failed or did not become healthy in time; nothing is left running.
    """
    import ray
    from ray import serve

    emit = on_event or (lambda event: None)
    source = source or resolve_source(model)
    engine = effective_engine(model)
    name = app_name(model, source)
    port = ensure_serve()
    base_url = f"http://{os.environ.get('RAYEVAL_SERVE_HOST', DEFAULT_HOST)}:{port}{route_prefix(name)}/v1"
    if coordinator is not None:
        ray.get(coordinator.use_deployment.remote(name, user))
    state, _ = _status(name)
    shared = state in ("RUNNING", "DEPLOYING", "UNHEALTHY")  # UNHEALTHY: Serve is replacing a replica
    if not shared:
        emit({"state": "deploying", "app": name, "message": f"deploying {model.served_model} from {source.source}"})
        log.info("deploying %s as Serve app %s", model.name, name)
        try:
            serve._run(
                openai_app(model, source),
                name=name,
                route_prefix=route_prefix(name),
                _blocking=False,
            )
        except Exception as e:
            _fail(name, model, f"could not start the deployment: {type(e).__name__}: {e}", user, coordinator, emit)
    else:
        emit({"state": "deploying", "app": name, "message": f"joining the running deployment {name}"})
    started = time.monotonic()
    last_message = ""
    unscheduled_since = unhealthy_since = None
    while True:
        state, message = _status(name)
        if state == "RUNNING":
            break
        unhealthy_since = (unhealthy_since or time.monotonic()) if state == "UNHEALTHY" else None
        if "to be scheduled" in message:  # Serve's word for replicas the cluster cannot place (after 30 s)
            unscheduled_since = unscheduled_since or time.monotonic() - 30.0
            waited = time.monotonic() - unscheduled_since
            if wait_timeout_s is not None and waited > wait_timeout_s:
                _fail(
                    name, model, f"its replicas waited {waited:.0f} s (resources.wait_timeout_s) to be placed: "
                    f"{message}", user, coordinator, emit,
                )  # fmt: skip
        else:
            unscheduled_since = None
        if state in ("DEPLOY_FAILED", "NOT_STARTED") and time.monotonic() - started > 1.0:
            _fail(name, model, message or f"application {state}", user, coordinator, emit)
        if unhealthy_since is not None and time.monotonic() - unhealthy_since > UNHEALTHY_GRACE_S:
            _fail(
                name, model, f"unhealthy for {UNHEALTHY_GRACE_S:.0f} s: {message or 'application UNHEALTHY'}",
                user, coordinator, emit,
            )  # fmt: skip
        if time.monotonic() - started > engine.deploy_timeout_s:
            _fail(
                name, model, f"not healthy after {engine.deploy_timeout_s:.0f} s ({message})", user, coordinator, emit
            )
        if message and message != last_message:
            emit({"state": "deploying", "app": name, "message": message[:500]})
            last_message = message
        time.sleep(1.0)
    hosted = HostedEndpoint(name, base_url, model.served_model, engine.max_model_len, source.tokenizer, shared)
    report = check_service(resolve_endpoint(model, None, hosted=hosted))
    if not report.ok:
        _fail(name, model, f"deployed but not answering: {report.failure()}", user, coordinator, emit)
    emit({"state": "running", "app": name, "message": f"healthy after {time.monotonic() - started:.0f} s"})
    return hosted


_ERROR_LINE = re.compile(r"^\s*((?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception)): (.+)$", re.M)


def root_cause(message: str) -> str:
    """Serve's failure text, cut to what the user must fix: its first sentence and the innermost error line."""
    head = message.split("Error:\n", 1)[0].strip().split("\n", 1)[0]
    causes = [m for m in _ERROR_LINE.finditer(message) if not m.group(2).startswith("Traceback")]
    if not causes:
        return message[:1000]
    last = causes[-1]
    detail = [line.strip() for line in message[last.end() :].splitlines()[1:4] if line.strip()]
    text = " ".join([last.group(2).strip(), *detail])
    return f"{head[:300]} Cause: {last.group(1).rsplit('.', 1)[-1]}: {text[:700]}"


def _fail(name: str, model: ModelSpec, why: str, user: str, coordinator: Any, emit: Callable) -> None:
    release(name, user=user, coordinator=coordinator, keep=False)
    why = root_cause(why)
    emit({"state": "failed", "app": name, "message": why})
    raise ServiceError(f"model '{model.name}' could not be deployed on Ray Serve: {why}")


def release(name: str, *, user: str, coordinator: Any | None, keep: bool) -> bool:
    """`user` is done with the application; delete it when nobody else uses it and `keep` is off.

    Returns:
        True when the application was deleted.
    """
    import ray
    from ray import serve

    remaining = ray.get(coordinator.release_deployment.remote(name, user)) if coordinator is not None else 0
    if keep or remaining:
        return False
    try:
        serve.delete(name, _blocking=True)
    except Exception as e:  # already gone, or Serve shut down
        log.warning("could not delete Serve app %s: %s", name, e)
        return False
    log.info("deleted Serve app %s", name)
    return True
