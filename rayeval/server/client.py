"""The command line's way to `rayeval server`: `rayeval --server URL` (or RAYEVAL_SERVER), with the API token
in RAYEVAL_TOKEN, sends every task command to the server's JSON API instead of to Ray. No Ray client is
needed on the caller's machine, and the server acts with the token's tags.

The server's answers come back as rayeval's own errors: 401 a ServiceError naming RAYEVAL_TOKEN, 404 a
TaskNotFoundError, 422 a SpecError, 409 a RunRefused, anything else a ServiceError with the server's words.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx

from rayeval.errors import RunRefused, ServiceError, SpecError, TaskNotFoundError

__all__ = ["SERVER_ENV", "TOKEN_ENV", "ServerClient"]

#: The environment variable naming the server (the command line's --server).
SERVER_ENV = "RAYEVAL_SERVER"
#: The environment variable holding the API token (never a command-line argument: those show in `ps`).
TOKEN_ENV = "RAYEVAL_TOKEN"
_API = "/api/v1"
#: States in which a task is over.
_ENDED = ("succeeded", "failed", "stopped", "interrupted")


class ServerClient:
    """The server's JSON API, called with one token.

    Args:
        url: The server's address, as `rayeval server start` printed it (http://HOST:PORT/rayeval-server).
        token: The API token; default RAYEVAL_TOKEN.
        timeout: Seconds per call (reports and results of large tasks take a while).
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 300.0):
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        if not token:
            raise ServiceError(
                f"the server {url} needs an API token: set {TOKEN_ENV} to the token "
                "`rayeval server token create` printed for you"
            )
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url + _API, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            r = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise ServiceError(f"cannot reach the server {self.url}: {type(e).__name__}: {e}") from None
        if r.status_code < 400:
            return r
        try:
            detail = str(r.json().get("detail"))
        except (ValueError, AttributeError):
            detail = r.text[:500]
        if r.status_code == 401:
            raise ServiceError(
                f"the server {self.url} did not accept the token in {TOKEN_ENV} (revoked, expired or mistyped)"
            )
        if r.status_code == 404:
            raise TaskNotFoundError(detail)
        if r.status_code == 422:
            raise SpecError(detail)
        if r.status_code == 409:
            raise RunRefused(detail)
        raise ServiceError(f"the server {self.url} answered {r.status_code}: {detail}")

    def whoami(self) -> dict[str, Any]:
        """The token's name and tags."""
        return self._call("GET", "/whoami").json()

    def submit(self, text: str, *, json_body: bool = False) -> dict[str, Any]:
        """Submit a task file's text (YAML, or JSON); returns the action (its `task_id`)."""
        kind = "application/json" if json_body else "application/yaml"
        return self._call("POST", "/tasks", content=text.encode("utf-8"), headers={"Content-Type": kind}).json()

    def tasks(self, *, state: str | None = None, tag: str | None = None) -> list[dict[str, Any]]:
        """The tasks the token may see, newest first."""
        params = {k: v for k, v in {"state": state, "tag": tag}.items() if v}
        return self._call("GET", "/tasks", params=params).json()

    def status(self, task: str) -> dict[str, Any]:
        """One task's status."""
        return self._call("GET", f"/tasks/{_quoted(task)}").json()

    def wait(self, task: str, every: float = 2.0) -> dict[str, Any]:
        """Poll a task's status until it is over; returns the last status."""
        while True:
            status = self.status(task)
            if status["state"] in _ENDED:
                return status
            time.sleep(every)

    def stop(self, task: str, wait: float | None = 120.0) -> dict[str, Any]:
        params = {"wait": wait} if wait is not None else {}
        return self._call("POST", f"/tasks/{_quoted(task)}/stop", params=params).json()

    def restart(self, task: str, *, failed: bool = False, spec: str | None = None) -> dict[str, Any]:
        return self._call("POST", f"/tasks/{_quoted(task)}/restart", json={"failed": failed, "spec": spec}).json()

    def copy(self, task: str, *, name: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"name": name, "overrides": overrides or {}}
        return self._call("POST", f"/tasks/{_quoted(task)}/copy", json=body).json()

    def delete(self, task: str) -> dict[str, Any]:
        return self._call("DELETE", f"/tasks/{_quoted(task)}").json()

    def results(self, task: str, **params: Any) -> dict[str, Any]:
        """`Results.to_dict()`'s form: leaderboard, scores, usage, comparison."""
        return self._call("GET", f"/tasks/{_quoted(task)}/results", params=_given(params)).json()

    def item(self, task: str, item_id: str, **params: Any) -> list[dict[str, Any]]:
        """Every step of one item, per model (`ItemView.to_dict()`'s form)."""
        return self._call("GET", f"/tasks/{_quoted(task)}/items/{_quoted(item_id)}", params=_given(params)).json()

    def report(self, task: str, **params: Any) -> str:
        """The HTML report."""
        return self._call("GET", f"/tasks/{_quoted(task)}/report", params=_given(params)).text

    def events(self, task: str, *, follow: bool = False) -> Iterator[dict[str, Any]]:
        """The task's event log; with `follow`, new events as they come until the task ends."""
        path = f"/tasks/{_quoted(task)}/logs"
        if not follow:
            yield from self._call("GET", path).json()
            return
        self._call("GET", f"/tasks/{_quoted(task)}")  # a missing task: the error, before streaming
        with self._client.stream("GET", path, params={"follow": "true"}, timeout=None) as r:
            for line in r.iter_lines():
                if line.strip():
                    yield json.loads(line)


def _quoted(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="")


def _given(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}
