"""Commands about what a task can use and try: models, metrics, built-in sets (datasets), check-service,
debug, and the web UI."""

from __future__ import annotations

import json
import sys
import time

import click

from rayeval.cli.group import caller_tags_option as _tags
from rayeval.cli.group import main
from rayeval.cli.progress import quiet_logging
from rayeval.errors import RayevalError

__all__ = [
    "check_service_cmd",
    "datasets_group",
    "debug",
    "grafana_cmd",
    "metrics_cmd",
    "models_cmd",
    "preview_cmd",
    "schema_cmd",
    "ui",
]


@main.command()
@click.option(
    "--address",
    help="The cluster: its dashboard (http://HEAD:8265; the UI then stays up there) or its address; default "
    "RAY_ADDRESS or a running local cluster.",
)
@click.option("--detach", is_flag=True, help="Leave the UI running on the cluster and return.")
def ui(address: str | None, detach: bool) -> None:
    """Serve every task's report, and the progress of running tasks, from a Ray Serve application (on the
    Serve proxy: 127.0.0.1 unless RAYEVAL_SERVE_HOST says otherwise). Ctrl-C takes it down."""
    import os

    from rayeval.cluster import connect
    from rayeval.cluster.remote import cluster_errors, is_dashboard, query
    from rayeval.serve_apps.ui import start_ui, stop_ui

    address = address or os.environ.get("RAY_ADDRESS")
    if is_dashboard(address):
        url = query(address, "ui", tags=_tags())
        click.echo(f"rayeval UI on the cluster's Serve proxy: {url} (on the head node; it stays up)")
        return
    with cluster_errors(address or "the local cluster"):
        connect(address, log_to_driver=False)
    url = start_ui(tags=_tags())
    click.echo(f"rayeval UI at {url}" + ("" if detach else " (Ctrl-C to stop)"))
    if detach:
        return
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop_ui()
        click.echo("rayeval UI stopped")


@main.command("check-service")
@click.argument("url")
@click.option("--model", "model_id", help="Served model id expected in /v1/models (default: the first listed).")
@click.option("--api", type=click.Choice(["chat", "completions"]), help="Endpoint kind (default: from URL, else chat).")
@click.option("--auth-header-key", default="Authorization", show_default=True)
@click.option("--auth-env", help="Environment variable holding the auth header value (e.g. 'Bearer sk-...').")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds per request.")
def check_service_cmd(
    url: str, model_id: str | None, api: str | None, auth_header_key: str, auth_env: str | None, timeout: float
) -> None:
    """Connectivity test of an OpenAI-compatible service: reachable, auth, model listed, one tiny request."""
    import os

    import httpx

    from rayeval.inference.client import check_service, resolve_endpoint
    from rayeval.spec import ModelSpec

    auth = None
    if auth_env:
        if auth_env not in os.environ:
            raise RayevalError(f"environment variable {auth_env} is not set")
        auth = os.environ[auth_env]
    if model_id is None:
        probe = resolve_endpoint(ModelSpec(name="probe", url=url, api=api, auth_header_key=auth_header_key), auth)
        try:
            listed = httpx.get(f"{probe.base_url}/models", headers=probe.headers, timeout=timeout).json()["data"]
            model_id = listed[0]["id"]
        except Exception:
            model_id = "probe"
    spec = ModelSpec(name="probe", url=url, model=model_id, api=api, auth_header_key=auth_header_key)
    report = check_service(resolve_endpoint(spec, auth, timeout))
    click.echo(report.render())
    sys.exit(0 if report.ok else 1)


@main.command()
@click.argument("task_file", type=click.Path(dir_okay=False))
@click.option("--set", "set_name", help="The evaluation set whose metrics to try (may be left out with one set).")
@click.option("--samples", default=5, show_default=True, help="How many items, from the start of the set.")
@click.option("--model", help="Score this model's responses: asked now, or read from the set in Evaluation Only.")
@click.option(
    "--responses",
    "responses_file",
    type=click.Path(dir_okay=False, exists=True),
    help="Score these responses instead: JSON list or {item_id: response}, JSON Lines, or one per line.",
)
@click.option("--response", "typed", multiple=True, help="A response typed here (repeat: one per sample, in order).")
@click.option("--show-prompt", is_flag=True, help="Print each judge prompt without asking the judge.")
@click.option("--json", "as_json", is_flag=True, help="Print the samples as JSON.")
def debug(
    task_file: str,
    set_name: str | None,
    samples: int,
    model: str | None,
    responses_file: str | None,
    typed: tuple[str, ...],
    show_prompt: bool,
    as_json: bool,
) -> None:
    """Try a set's metrics on a few samples of TASK_FILE, printing every step; nothing is written."""
    from rayeval.debug import debug_metrics, format_debug
    from rayeval.spec import load_task

    if typed and responses_file:
        raise click.UsageError("give --responses or --response, not both")
    if (typed or responses_file) and model:
        raise click.UsageError("give --model or responses, not both")
    quiet_logging(False)
    spec = load_task(task_file)
    given = list(typed) if typed else responses_file
    result = debug_metrics(spec, set_name, samples=samples, model=model, responses=given, show_prompt=show_prompt)
    if as_json:
        click.echo(json.dumps([s.as_dict() for s in result], ensure_ascii=False, indent=2))
    else:
        click.echo(format_debug(result, set_name=set_name or spec.evaluation_sets[0].name))


@main.command("preview")
@click.argument("task_file", type=click.Path(dir_okay=False))
@click.option("--set", "set_name", help="The evaluation set (may be left out with one set).")
@click.option("--n", "count", default=5, show_default=True, help="Items to show, from the start of the set.")
@click.option("--model", help="Whose request (parameters, API): default the task's first model.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per item.")
def preview_cmd(task_file: str, set_name: str | None, count: int, model: str | None, as_json: bool) -> None:
    """The first items of a set exactly as they will be sent: each request's body, with the system prompt,
    few-shot examples and template applied. Nothing is run or sent."""
    from rayeval.debug import preview_requests

    for entry in preview_requests(task_file, set_name, n=count, model=model):
        if as_json:
            click.echo(json.dumps(entry, ensure_ascii=False))
            continue
        click.echo(f"--- {entry['item_id']}  POST {entry['url']}")
        if "requests" in entry:  # a set scored by log-likelihood: one request per choice
            click.echo(f"context: {entry['context']}")
            for r in entry["requests"]:
                click.echo(
                    f"  choice {r['choice']!r}: {r['context_tokens']} context + {r['choice_tokens']} choice tokens; "
                    f"body {json.dumps(r['body'], ensure_ascii=False)}"
                )
        else:
            click.echo(json.dumps(entry["body"], ensure_ascii=False, indent=2))
        click.echo(f">>> reference: {entry['reference']}")


@main.command("models")
def models_cmd() -> None:
    """List the built-in models (use them with `builtin: NAME` in a task's models or judges)."""
    from rayeval.serve_apps.builtins import BUILTIN_MODELS

    for name, m in BUILTIN_MODELS.items():
        where = f"offline: {m.source}" if m.offline else f"hub: {m.hub_id}"
        click.echo(f"{name:<26} {where:<38} {m.description}")


@main.command("schema")
def schema_cmd() -> None:
    """Print the task file's JSON Schema (for editors: VS Code's YAML extension takes it with a
    `# yaml-language-server: $schema=PATH` line at the top of a task file)."""
    from rayeval.spec import TaskSpec

    click.echo(json.dumps(TaskSpec.model_json_schema(), indent=2))


@main.command("grafana")
def grafana_cmd() -> None:
    """Print a Grafana dashboard (JSON) of rayeval's progress metrics, as Ray exports them to Prometheus
    (ray_rayeval_*): import it in the Grafana that shows Ray's own dashboards."""
    from rayeval.actors.progress_metrics import grafana_dashboard

    click.echo(json.dumps(grafana_dashboard(), indent=2))


@main.command("metrics")
def metrics_cmd() -> None:
    """List the registered metrics."""
    from rayeval.metrics import list_metrics

    for name, description in list_metrics().items():
        click.echo(f"{name:<16} {description}")


@main.group("datasets")
def datasets_group() -> None:
    """Built-in evaluation sets: list, preview, prefetch for air-gapped clusters."""


@datasets_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def datasets_list(as_json: bool) -> None:
    """The built-in sets, with their default metrics, prompt format and data sources."""
    from rayeval.sets.builtin import list_builtin_sets

    rows = [
        {
            "name": b.name,
            "description": b.description,
            "metrics": [m if isinstance(m, str) else m["name"] for m in b.metrics_for(b.modes[0])],
            "modes": list(b.modes),
            "loglikelihood_metrics": b.metrics_for("loglikelihood") if "loglikelihood" in b.modes else [],
            "prompt": b.prompt,
            "opencompass_folder": f"{b.folder}/ holding {b.layout}",
            "package": b.package,
            "hub": b.hub,
        }
        for b in list_builtin_sets().values()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        click.echo(f"{r['name']:<10} {r['description']}")
        click.echo(f"{'':<10} metrics: {', '.join(r['metrics'])}; prompt: {r['prompt']}")
        if r["modes"] != ["generate"]:
            modes = ", ".join(r["modes"])
            click.echo(f"{'':<10} modes: {modes} (log-likelihood metrics: {', '.join(r['loglikelihood_metrics'])})")
        sources = [f"folder {r['opencompass_folder']}"]
        sources += [f"package {r['package']}"] if r["package"] else []
        sources += [f"hub {r['hub']}"] if r["hub"] else []
        click.echo(f"{'':<10} sources: {'; '.join(sources)}")


@datasets_group.command("preview")
@click.argument("name")
@click.option("--path", help="The set's folder in the OpenCompass data layout (default: package or hub).")
@click.option("--n", "count", default=5, show_default=True, help="Items to show.")
@click.option("--shots", type=int, help="Few-shot examples in each prompt (default: the set's own).")
@click.option("--json", "as_json", is_flag=True, help="Print the items as JSON lines.")
def datasets_preview(name: str, path: str | None, count: int, shots: int | None, as_json: bool) -> None:
    """The first items of built-in set NAME as rayeval sends them: id, prompt and reference."""
    from rayeval.sets.builtin import materialize

    file = materialize(name, path, shots)
    with open(file, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= count:
                break
            if as_json:
                click.echo(line.rstrip("\n"))
                continue
            row = json.loads(line)
            click.echo(f"--- {row['id']}")
            click.echo(row["query"])
            click.echo(f">>> reference: {row['reference']}")


@datasets_group.command("prefetch")
@click.argument("name")
@click.option("--to", "to_dir", required=True, type=click.Path(file_okay=False), help="The folder to prepare.")
@click.option("--path", help="Read from this OpenCompass-layout folder instead of the package or the hub.")
@click.option("--shots", type=int, help="Few-shot examples in each prompt (default: the set's own).")
def datasets_prefetch(name: str, to_dir: str, path: str | None, shots: int | None) -> None:
    """Prepare built-in set NAME in a folder to copy to an air-gapped cluster (then `path: DIR/<folder>`)."""
    from rayeval.sets.builtin import prefetch

    folder, rows = prefetch(name, to_dir, path=path, shots=shots)
    click.echo(f"wrote {rows} items of {name} to {folder}; in a task: builtin: {name}, path: {folder}")
