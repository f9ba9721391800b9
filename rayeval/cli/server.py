"""`rayeval server`: start and stop the authenticated HTTP API on a cluster, issue and revoke its API
tokens, print its audit log (rayeval.server)."""

from __future__ import annotations

import getpass
import json
import logging
import os
from datetime import timedelta

import click

from rayeval.cli.group import main

__all__ = ["audit", "server", "start", "stop", "token", "token_create", "token_list", "token_revoke"]

_STORE_HELP = "The server location (a folder or a pyarrow filesystem URI) holding tokens and the audit log; default "
_STORE_HELP += "$RAYEVAL_HOME/server."


def _who() -> str:
    """How the audit log names the command line's user."""
    return f"local:{getpass.getuser()}"


@main.group()
def server() -> None:
    """The authenticated HTTP API on Ray Serve through which teams share one cluster: tokens mapped to tags,
    every state change audited."""


@server.command()
@click.option(
    "--address",
    help="The cluster: its dashboard (http://HEAD:8265; the server is deployed through a Ray job) or its address "
    "(HEAD:6379); default RAY_ADDRESS or a cluster running on this machine.",
)
@click.option("--store", help=_STORE_HELP)
@click.option(
    "--dashboard",
    help="The dashboard the server submits tasks to, as the head node reaches it; default --address when it is "
    "one, else RAY_ADDRESS when it is one, else http://127.0.0.1:8265.",
)
@click.option("--output", help="Results location of tasks submitted through the server; default $RAYEVAL_HOME/results.")
@click.option(
    "--data-root",
    "data_roots",
    multiple=True,
    metavar="ROOT",
    help="A folder or URI prefix that team tokens' tasks may name files under; {tag} stands for each of the "
    "token's tags (e.g. /data/{tag}). Repeatable. None: team tokens name no files.",
)
@click.option(
    "--allow-code",
    is_flag=True,
    help="Let team tokens run their own code on the cluster (mode custom, metric scripts): code on the cluster "
    "can read every team's results.",
)
@click.option("--route-prefix", default="/rayeval-server", show_default=True, help="Where the API is served.")
def start(
    address: str | None,
    store: str | None,
    dashboard: str | None,
    output: str | None,
    data_roots: tuple[str, ...],
    allow_code: bool,
    route_prefix: str,
) -> None:
    """Deploy the server on the cluster (it stays up) and print its URL."""
    from rayeval.cluster import connect
    from rayeval.cluster.remote import cluster_errors, is_dashboard
    from rayeval.server.config import ServerConfig
    from rayeval.server.deploy import deploy_remotely, start_server

    address = address or os.environ.get("RAY_ADDRESS")
    remote = is_dashboard(address)
    env = os.environ.get("RAY_ADDRESS", "")
    dashboard = dashboard or (address if remote else None) or (env if is_dashboard(env) else None)

    def here(location: str | None) -> str | None:  # this machine's paths mean the cluster's only when on it
        if location is None or remote or "://" in location:
            return location
        return os.path.abspath(location)

    config = ServerConfig(
        store=here(store or (None if remote else _default_store())),
        dashboard=dashboard,
        output=here(output),
        data_roots=[r if "://" in r or remote else os.path.abspath(r) for r in data_roots],
        allow_code=allow_code,
        workdir=None if remote else os.getcwd(),
    )
    if remote:
        url = deploy_remotely(address, "start", config, route_prefix)
        click.echo(f"rayeval server on the cluster's Serve proxy: {url} (on the head node; docs at {url}/docs)")
        return
    with cluster_errors(address or "the local cluster"):
        connect(address, log_to_driver=False)
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # Serve's INFO lines about starting and deploying
    url = start_server(config, route_prefix)
    click.echo(f"rayeval server at {url} (API under {url}/api/v1, docs at {url}/docs); tokens and audit log in "
               f"{config.store_location()}")  # fmt: skip


def _default_store() -> str:
    from rayeval.paths import server_dir

    return str(server_dir())


@server.command()
@click.option("--address", help="The cluster (as for `start`); default RAY_ADDRESS or a cluster running here.")
def stop(address: str | None) -> None:
    """Take the server down (tokens and the audit log stay)."""
    from rayeval.cluster import connect
    from rayeval.cluster.remote import cluster_errors, is_dashboard
    from rayeval.server.deploy import deploy_remotely, stop_server

    address = address or os.environ.get("RAY_ADDRESS")
    if is_dashboard(address):
        was = deploy_remotely(address, "stop")
    else:
        with cluster_errors(address or "the local cluster"):
            connect(address, log_to_driver=False)
        was = stop_server()
    click.echo("rayeval server stopped" if was else "rayeval server was not running")


@server.group()
def token() -> None:
    """API tokens: each maps a name to tags (or to everything, --admin); only its hash is stored."""


@token.command("create")
@click.option("--name", required=True, help="Who holds it (the audit log shows this name).")
@click.option("--tags", default="", metavar="TAG[,TAG...]", help="The tags it acts with (a team token needs one).")
@click.option("--admin", is_flag=True, help="It sees and acts on every task.")
@click.option("--expires-in-days", type=click.FloatRange(min=0, min_open=True), help="It expires after N days.")
@click.option("--store", help=_STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the token and its record as JSON.")
def token_create(
    name: str, tags: str, admin: bool, expires_in_days: float | None, store: str | None, as_json: bool
) -> None:
    """Issue a token and print it, once: it is not stored, only its hash is."""
    from rayeval.server import AuditLog, ServerStore, TokenStore

    location = ServerStore(store)
    wanted = [t for t in (s.strip() for s in tags.split(",")) if t]
    expires = timedelta(days=expires_in_days) if expires_in_days else None
    try:
        issued = TokenStore(location).create(name, wanted, admin=admin, expires_in=expires)
    except Exception as e:
        AuditLog(location).record(_who(), "token-create", None, "invalid", f"token {name}: {e}")
        raise
    record = issued.record
    AuditLog(location).record(
        _who(), "token-create", None, "ok",
        f"token {record.name} (id {record.id}) " + ("admin" if admin else f"tags {','.join(record.tags)}")
        + (f", expires {record.expires_at:%Y-%m-%d %H:%M} UTC" if record.expires_at else ""),
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps({"token": issued.token, **record.model_dump(mode="json", exclude={"sha256"})}))
        return
    click.echo(issued.token)
    scope = "every task (admin)" if admin else f"tasks tagged {', '.join(record.tags)}"
    until = f"until {record.expires_at:%Y-%m-%d %H:%M} UTC" if record.expires_at else "until revoked"
    click.echo(
        f"rayeval: token for {record.name} (id {record.id}): {scope}, {until}. It is shown this once; "
        "send it as 'Authorization: Bearer <token>'.",
        err=True,
    )


@token.command("list")
@click.option("--store", help=_STORE_HELP)
@click.option("--all", "show_all", is_flag=True, help="Also the revoked and expired tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON (without their hashes).")
def token_list(store: str | None, show_all: bool, as_json: bool) -> None:
    """The tokens: name, id, tags, admin, created, expires, status (never a secret)."""
    from rayeval.server import TokenStore

    records = [t for t in TokenStore(store).tokens() if show_all or t.active()]
    if as_json:
        rows = [{**t.model_dump(mode="json", exclude={"sha256"}), "status": t.status()} for t in records]
        click.echo(json.dumps(rows, indent=2))
        return
    if not records:
        click.echo("no tokens" + ("" if show_all else " active (--all shows revoked and expired ones)"))
        return
    click.echo(f"{'NAME':<20} {'ID':<13} {'STATUS':<8} {'SCOPE':<30} {'CREATED (UTC)':<17} EXPIRES (UTC)")
    for t in records:
        scope = "admin" if t.admin else ",".join(t.tags)
        expires = f"{t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "never"
        click.echo(f"{t.name:<20} {t.id:<13} {t.status():<8} {scope:<30} {t.created_at:%Y-%m-%d %H:%M}  {expires}")


@token.command("revoke")
@click.argument("name")
@click.option("--store", help=_STORE_HELP)
def token_revoke(name: str, store: str | None) -> None:
    """Revoke the active token(s) named NAME (or with id NAME); the server refuses them within seconds."""
    from rayeval.server import AuditLog, ServerStore, TokenStore

    location = ServerStore(store)
    try:
        revoked = TokenStore(location).revoke(name)
    except Exception as e:
        AuditLog(location).record(_who(), "token-revoke", None, "not-found", f"token {name}: {e}")
        raise
    for t in revoked:
        AuditLog(location).record(_who(), "token-revoke", None, "ok", f"token {t.name} (id {t.id}) revoked")
        click.echo(f"revoked token {t.name} (id {t.id})")


@server.command()
@click.option("--store", help=_STORE_HELP)
@click.option("--task", help="Only calls about this task (id).")
@click.option("--who", help="Only calls by this token name.")
@click.option("--limit", type=int, help="Only the last N records.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
def audit(store: str | None, task: str | None, who: str | None, limit: int | None, as_json: bool) -> None:
    """The audit log: every state-changing call (who, what, which task, when, outcome), oldest first."""
    from rayeval.server import AuditLog
    from rayeval.server.audit import format_audit

    records = AuditLog(store).records(task=task, who=who, limit=limit)
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return
    click.echo(format_audit(records))
