"""The `rayeval` command group: errors as one line with their exit code, the tags a caller presents."""

from __future__ import annotations

from typing import Any

import click

from rayeval.errors import RayevalError

__all__ = ["caller_tags_option", "main", "server_client"]


class _Group(click.Group):
    """Turns RayevalError into a clear message and its exit code (2: invalid input, nothing written)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RayevalError as e:
            click.echo(f"rayeval: error: {e}", err=True)
            ctx.exit(e.exit_code)


@click.group(cls=_Group)
@click.version_option(package_name="rayeval")
@click.option(
    "--tags",
    metavar="TAG[,TAG...]",
    help="The tags you present (default $RAYEVAL_TAGS): you see, stop, restart, copy, delete and read only "
    "tasks carrying one of them, and reuse results only from those.",
)
@click.option(
    "--server",
    envvar="RAYEVAL_SERVER",
    metavar="URL",
    help="Send the task commands (run, submit, status, list, logs, stop, restart, copy, delete, results, item, "
    "report) to this `rayeval server` instead of Ray, with the API token in RAYEVAL_TOKEN (default "
    "$RAYEVAL_SERVER). The server acts with the token's tags.",
)
@click.pass_context
def main(ctx: click.Context, tags: str | None, server: str | None) -> None:
    """rayeval: distributed evaluation of LLMs on Ray."""
    from rayeval.records import caller_tags

    ctx.obj = {"tags": caller_tags(tags), "server": server}


def server_client() -> Any:
    """The `rayeval server` the caller named (--server, RAYEVAL_SERVER), as a ServerClient; None: Ray."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    url = obj.get("server") if isinstance(obj, dict) else None
    if not url:
        return None
    from rayeval.server.client import ServerClient

    return ServerClient(url)


def caller_tags_option() -> list[str] | None:
    """The tags the caller presents (--tags, else $RAYEVAL_TAGS), for every command's lookups."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    if isinstance(obj, dict) and "tags" in obj:
        return obj["tags"]
    from rayeval.records import caller_tags

    return caller_tags()
