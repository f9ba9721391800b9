"""`rayeval server`'s HTTP API: FastAPI on Ray Serve (`@serve.deployment` + `@serve.ingress`), under
`/api/v1`, with the OpenAPI docs at `/docs` (all below the application's route prefix, by default
`/rayeval-server`, on the Serve proxy: 127.0.0.1 unless RAYEVAL_SERVE_HOST says otherwise).

The application's root is the web console (rayeval.server.console), a page with no data of its own.
Every route but it, `/docs`, `/openapi.json` and `/api/v1/health` needs `Authorization: Bearer <token>`: a
middleware checks it before the request is routed or its body read, and answers 401 with one generic body
for a missing, malformed, forged, revoked or expired token. The routes then act with the token's tags
(rayeval.server.tasks); errors become status codes here (404 for a task that does not exist or is not the
caller's, in the same words; 422 invalid input; 409 a state that forbids the call; 502 the cluster refused
a job), with bodies that carry no secret and nothing about other teams' tasks.

`build_app` is the application builder a Serve config file names (`import_path:
rayeval.server.app:build_app`, `args:` a ServerConfig).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from ray import serve
from starlette.concurrency import run_in_threadpool

from rayeval.errors import RayevalError, RunRefused, ServiceError, SpecError, TaskNotFoundError
from rayeval.server.audit import AuditLog
from rayeval.server.config import ServerConfig
from rayeval.server.console import console_page
from rayeval.server.schemas import (
    ActionResult,
    CopyRequest,
    Problem,
    RestartRequest,
    TaskEvent,
    TaskRow,
    TaskStatus,
    WhoAmI,
)
from rayeval.server.store import ServerStore
from rayeval.server.tasks import Conflict, ItemNotFound, TaskService
from rayeval.server.tokens import Caller, TokenStore

__all__ = ["API_PREFIX", "MAX_BODY_BYTES", "RayevalServer", "api", "build_app"]

log = logging.getLogger("ray.serve")
API_PREFIX = "/api/v1"
#: Largest task file the API takes.
MAX_BODY_BYTES = 1 << 20
#: Routes anyone may read: the console's page (it holds no data), the docs, and a health check that says
#: nothing about tasks.
_OPEN = ("", "/docs", "/docs/oauth2-redirect", "/openapi.json", f"{API_PREFIX}/health")  # "": the console page
_UNAUTHORIZED = {"detail": "unauthorized: send a valid API token as 'Authorization: Bearer <token>'"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No valid token."},
    404: {"model": Problem, "description": "No such task visible to the token."},
}

api = FastAPI(
    title="rayeval server",
    description="Tasks, results and logs of the rayeval evaluation cluster, for the holder of an API token "
    "(`rayeval server token create`): a team token sees and acts on its tags' tasks only, an admin token on "
    "every task. Send the token as `Authorization: Bearer <token>`.",
    version="1",
    docs_url="/docs",
    redoc_url=None,
)
bearer = HTTPBearer(auto_error=False, description="An API token from `rayeval server token create`.")


def _server() -> RayevalServer:
    """This replica's deployment object (where Serve keeps it for class-based views too)."""
    return serve.get_replica_context().servable_object


class BearerAuth:
    """ASGI middleware: the request's token is checked before anything else happens (routing, reading the
    body); the caller it stands for is kept in the request's state."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        root, path = scope.get("root_path", ""), scope.get("path", "")
        relative = path[len(root) :] if root and path.startswith(root) else path
        if relative.rstrip("/") in _OPEN:
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        caller = None
        if scheme.lower() == "bearer" and token.strip():
            caller = await run_in_threadpool(_server().tokens.verify, token.strip())
        if caller is None:
            response = JSONResponse(_UNAUTHORIZED, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        scope.setdefault("state", {})["caller"] = caller
        return await self.app(scope, receive, send)


api.add_middleware(BearerAuth)


def caller(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> Caller:
    """The caller BearerAuth accepted (the Security parameter puts the scheme in the OpenAPI docs)."""
    who = getattr(request.state, "caller", None)
    if not isinstance(who, Caller):  # never reached behind BearerAuth; refuse rather than assume
        raise _Unauthorized()
    return who


class _Unauthorized(Exception):
    pass


#: A route's caller (its token accepted by BearerAuth).
Who = Annotated[Caller, Depends(caller)]


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


@api.exception_handler(_Unauthorized)
async def _unauthorized(request: Request, exc: _Unauthorized) -> JSONResponse:
    return JSONResponse(_UNAUTHORIZED, status_code=401, headers={"WWW-Authenticate": "Bearer"})


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, without echoing the input (which may hold a credential)."""
    problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()]
    return _problem(422, "; ".join(problems) or "invalid request")


@api.exception_handler(RayevalError)
async def _rayeval_error(request: Request, exc: RayevalError) -> JSONResponse:
    if isinstance(exc, (TaskNotFoundError, ItemNotFound)):
        return _problem(404, str(exc))
    if isinstance(exc, SpecError):
        return _problem(422, str(exc))
    if isinstance(exc, ServiceError):
        log.warning("rayeval server: the cluster refused a job: %s", str(exc)[:500])
        return _problem(502, "the cluster could not take the job (the server's log says why)")
    if isinstance(exc, (Conflict, RunRefused)):
        return _problem(409, str(exc))
    return _problem(409, str(exc))  # e.g. a task with no results to read yet


@api.exception_handler(Exception)
async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("rayeval server: %s on %s %s: %s", type(exc).__name__, request.method, request.url.path, str(exc)[:300])
    return _problem(500, "internal error (the server's log says more)")


@serve.deployment(num_replicas=1, max_ongoing_requests=64, ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class RayevalServer:
    """The API's replica: the token store (read again every few seconds), the audit log, the operations."""

    def __init__(self, config: dict[str, Any]):
        self.config = ServerConfig.model_validate(config)
        store = ServerStore(self.config.store_location())
        self.tokens = TokenStore(store, cache_s=self.config.token_cache_s)
        self.service = TaskService(self.config, AuditLog(store))

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    def console(self, request: Request) -> str:
        """The web console (rayeval.server.console): it asks for a token, then acts through this API."""
        return console_page(f"{request.scope.get('root_path', '')}{API_PREFIX}")

    @api.get(f"{API_PREFIX}/health", summary="Health check (no token needed; says nothing about tasks)")
    def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get(f"{API_PREFIX}/whoami", response_model=WhoAmI, responses=_ERRORS, summary="The token's name and tags")
    def whoami(self, who: Who) -> WhoAmI:
        return WhoAmI(name=who.name, tags=who.tags, admin=who.admin, expires_at=who.expires_at)

    @api.get(f"{API_PREFIX}/tasks", response_model=list[TaskRow], responses=_ERRORS, summary="List tasks")
    def list_tasks(
        self,
        who: Who,
        state: str | None = Query(None, description="Only tasks in this state (running, succeeded, ...)."),
        tag: str | None = Query(None, description="Only tasks with this tag."),
    ) -> list[TaskRow]:
        """The tasks the token may see, newest first: state, progress, tags, creator, creation time, resources,
        remarks."""
        return [TaskRow.of(r) for r in self.service.list(who, state=state, tag=tag)]

    @api.post(
        f"{API_PREFIX}/tasks",
        response_model=ActionResult,
        status_code=202,
        responses={**_ERRORS, 422: {"model": Problem, "description": "Invalid task file, or a rule it breaks."}},
        summary="Submit a task",
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "The task file: YAML, or JSON (Content-Type application/json).",
                "content": {
                    "application/yaml": {"schema": {"type": "string"}},
                    "text/plain": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "object"}},
                },
            }
        },
    )
    async def submit(self, request: Request, who: Who) -> ActionResult:
        """Run a task file as a Ray job. A team token's task carries exactly its tags; its files must be under
        the server's data roots (rayeval.server.policy). Returns the new task's id."""
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _problem(413, f"a task file of at most {MAX_BODY_BYTES} bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _problem(422, "the task file is not UTF-8 text")
        json_body = "json" in request.headers.get("content-type", "")
        return await run_in_threadpool(self.service.submit, who, text, json_body=json_body)

    @api.get(f"{API_PREFIX}/tasks/{{task}}", response_model=TaskStatus, responses=_ERRORS, summary="A task's status")
    def status(self, task: str, who: Who) -> TaskStatus:
        """State and progress per model and set, deployments, stages, summary (`rayeval status TASK`)."""
        return TaskStatus.of(self.service.find(who, task))

    @api.post(f"{API_PREFIX}/tasks/{{task}}/stop", response_model=ActionResult, responses=_ERRORS, summary="Stop")
    def stop(
        self,
        task: str,
        who: Who,
        wait: float = Query(0.0, ge=0, le=120, description="Seconds to wait for the task to end."),
    ) -> ActionResult:
        """Stop a running task: what was evaluated is kept and summarised; the state becomes `stopped`."""
        return self.service.stop(who, task, wait=wait)

    @api.post(
        f"{API_PREFIX}/tasks/{{task}}/restart",
        response_model=ActionResult,
        status_code=202,
        responses={**_ERRORS, 409: {"model": Problem, "description": "The task is running."}},
        summary="Restart",
    )
    def restart(self, task: str, who: Who, request: RestartRequest | None = None) -> ActionResult:
        """Run a stopped, interrupted or finished task again under its id, as a Ray job: only the items not
        stored yet (with `failed`, the failed ones too)."""
        return self.service.restart(who, task, request or RestartRequest())

    @api.post(
        f"{API_PREFIX}/tasks/{{task}}/copy", response_model=ActionResult, status_code=202, responses=_ERRORS,
        summary="Copy with overrides",
    )  # fmt: skip
    def copy(self, task: str, who: Who, request: CopyRequest | None = None) -> ActionResult:
        """A new task from the task's stored spec with overrides, run as a Ray job (`rayeval copy`)."""
        return self.service.copy(who, task, request or CopyRequest())

    @api.delete(
        f"{API_PREFIX}/tasks/{{task}}",
        response_model=ActionResult,
        responses={**_ERRORS, 409: {"model": Problem, "description": "The task is running."}},
        summary="Delete",
    )
    def delete(self, task: str, who: Who) -> ActionResult:
        """Remove a task that is not running: its record and every file of its results."""
        return self.service.delete(who, task)

    @api.get(f"{API_PREFIX}/tasks/{{task}}/results", responses=_ERRORS, summary="Results")
    def results(
        self,
        task: str,
        who: Who,
        weights: str | None = Query(
            None,
            description="Weights on top of the task's: a JSON object ({sets: {...}, metrics: {...}}) or "
            "set=W,metric:NAME=W.",
        ),
        reference: str | None = Query(None, description="Compare every model with this one (default: the task's)."),
        seed: int = Query(0, description="Seed of the bootstrap intervals."),
        resamples: int = Query(1000, ge=10, le=20000, description="Bootstrap resamples."),
    ) -> JSONResponse:
        """Leaderboard (comprehensive scores, intervals, ranks), scores per model x set x metric with
        intervals, usage, and the comparison with the reference model (`rayeval results --format json`)."""
        res = self.service.results(who, task, weights=weights, reference=reference, seed=seed, resamples=resamples)
        return JSONResponse(res)

    @api.get(f"{API_PREFIX}/tasks/{{task}}/items/{{item_id:path}}", responses=_ERRORS, summary="One item, step by step")
    def item(
        self,
        task: str,
        who: Who,
        item_id: str,
        model: str | None = Query(None, description="Only this model."),
        eval_set: str | None = Query(None, alias="set", description="The item's set, when its id is in several."),
        reference: str | None = Query(None, description="The model shown beside (default: the task's reference)."),
    ) -> JSONResponse:
        """Every step of one item per model: query, prompt sent, response, metric steps, judge, scores, errors
        (`rayeval item --json`)."""
        views = self.service.item(who, task, item_id, model=model, eval_set=eval_set, reference=reference)
        return JSONResponse(views)

    @api.get(
        f"{API_PREFIX}/tasks/{{task}}/report", response_class=HTMLResponse, responses=_ERRORS, summary="HTML report"
    )
    def report(
        self,
        task: str,
        who: Who,
        weights: str | None = Query(None, description="Starting weights (as for results)."),
        reference: str | None = Query(None, description="The reference model (default: the task's)."),
        items: int = Query(200, ge=0, le=100000, description="Items per set in the item browser (0: all)."),
        seed: int = Query(0, description="Seed of the bootstrap intervals."),
        resamples: int = Query(1000, ge=10, le=20000, description="Bootstrap resamples."),
    ) -> HTMLResponse:
        """The self-contained HTML report (`rayeval report`)."""
        page = self.service.report(
            who, task, weights=weights, reference=reference, items=items, seed=seed, resamples=resamples
        )
        return HTMLResponse(page)

    @api.get(
        f"{API_PREFIX}/tasks/{{task}}/logs",
        response_model=list[TaskEvent],
        responses={**_ERRORS, 200: {"content": {"application/x-ndjson": {}}}},
        summary="Event log",
    )
    def logs(
        self,
        task: str,
        who: Who,
        follow: bool = Query(False, description="Stream events as JSON lines until the task ends."),
    ) -> Any:
        """The task's event log across its runs (`rayeval logs`); with `follow`, JSON lines (one event each)
        streamed as they come, until the task ends."""
        events = self.service.events(who, task)  # 404 before anything is streamed
        if not follow:
            return events
        record = self.service.find(who, task)
        return StreamingResponse(self._follow(who, record["task_id"], events), media_type="application/x-ndjson")

    async def _follow(self, who: Caller, task_id: str, events: list[TaskEvent]):
        from rayeval.actors.coordinator import get_coordinator

        last = None
        for e in events:
            yield e.model_dump_json() + "\n"
            last = e.at
        while True:
            coordinator = get_coordinator(create=False)
            record = await coordinator.get.remote(task_id, who.visible_tags) if coordinator is not None else None
            if record is None:  # deleted meanwhile
                return
            for e in (TaskEvent.of(raw) for raw in record.get("events", [])):
                if last is None or e.at > last:
                    yield e.model_dump_json() + "\n"
                    last = e.at
            if self.service.ended(record):
                return
            await asyncio.sleep(1.0)


def build_app(args: dict[str, Any] | ServerConfig) -> serve.Application:
    """The Serve application of `rayeval server` (a Serve config file's `import_path`); `args` is a ServerConfig
    (store, dashboard, output, data_roots, allow_code, workdir, token_cache_s). Its replica runs on the head
    node when the cluster says which one that is (where the dashboard and the coordinator are)."""
    import ray

    config = args if isinstance(args, ServerConfig) else ServerConfig.model_validate(dict(args or {}))
    deployment = RayevalServer
    if ray.is_initialized() and "node:__internal_head__" in ray.cluster_resources():
        deployment = RayevalServer.options(
            ray_actor_options={"num_cpus": 0, "resources": {"node:__internal_head__": 0.001}}
        )
    return deployment.bind(json.loads(config.model_dump_json()))
