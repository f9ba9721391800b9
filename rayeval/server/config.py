"""`rayeval server`'s settings: what `rayeval server start` passes and a Serve config file's `args` hold.

Defaults are taken where the server runs (its replica, on the head node): `$RAYEVAL_HOME` there, and the
dashboard at RAY_ADDRESS (when it is an http:// address) or http://127.0.0.1:8265.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

from rayeval.paths import default_home, server_dir

__all__ = ["APP_NAME", "DEFAULT_DASHBOARD", "ROUTE_PREFIX", "ServerConfig"]

#: The Serve application's name and default route prefix.
APP_NAME = "rayeval-server"
ROUTE_PREFIX = "/rayeval-server"
DEFAULT_DASHBOARD = "http://127.0.0.1:8265"


class ServerConfig(BaseModel):
    """The server's settings (the application builder's arguments)."""

    model_config = ConfigDict(extra="forbid")

    store: str | None = Field(
        None,
        description="The server location (a folder or a pyarrow filesystem URI) holding API tokens (hashes only) and "
        "the audit log; default $RAYEVAL_HOME/server.",
    )
    dashboard: str | None = Field(
        None,
        description="The cluster's dashboard (Jobs API), through which tasks run as Ray jobs; default RAY_ADDRESS "
        f"when it is an http:// address, else {DEFAULT_DASHBOARD}.",
    )
    output: str | None = Field(
        None,
        description="Results location of the tasks submitted through the server (team tokens' tasks must use it, or "
        "a folder under it); default $RAYEVAL_HOME/results.",
    )
    data_roots: list[str] = Field(
        default_factory=list,
        description="Folders or URI prefixes the files named by team tokens' tasks must be under; `{tag}` stands for "
        "each of the token's tags (e.g. /data/{tag}). None given: team tokens may name no files.",
    )
    allow_code: bool = Field(
        False,
        description="Let team tokens submit tasks that run their own code on the cluster (mode custom, metric "
        "scripts, evaluate modules). Code on the cluster has direct Ray access: it can read every team's results.",
    )
    workdir: str | None = Field(
        None,
        description="Folder that relative paths in admins' task files are resolved against (team tokens give "
        "absolute paths); default the server's working folder.",
    )
    token_cache_s: float = Field(
        3.0,
        ge=0,
        le=300,
        description="Seconds the server trusts the token records it read last (new or revoked "
        "tokens take effect within this).",
    )

    def store_location(self) -> str:
        """The server location."""
        return self.store or str(server_dir())

    def results_location(self) -> str:
        """Where the tasks submitted through the server keep their results."""
        return self.output or os.path.join(default_home(), "results")

    def dashboard_address(self) -> str:
        """The Jobs API address the server submits to."""
        if self.dashboard:
            return self.dashboard
        env = os.environ.get("RAY_ADDRESS", "")
        return env if env.startswith(("http://", "https://")) else DEFAULT_DASHBOARD

    def protected_locations(self) -> list[str]:
        """rayeval's own files, which no team token's task may name: results, server location, $RAYEVAL_HOME."""
        return [self.results_location(), self.store_location(), default_home()]
