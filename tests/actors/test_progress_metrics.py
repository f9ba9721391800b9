"""The Grafana dashboard of rayeval's progress metrics: valid JSON in the form of Ray's dashboards, naming only
metrics the coordinator defines, under the names Ray exports them (the live scrape: tests/jobs/test_job_submit.py)."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from rayeval.actors.progress_metrics import METRICS, PANELS, exported_name, grafana_dashboard
from rayeval.cli import main

NAME = re.compile(r"\bray_rayeval_\w+")


def test_the_dashboard_charts_every_progress_metric_by_its_exported_name():
    result = CliRunner().invoke(main, ["grafana"])
    assert result.exit_code == 0, result.output
    dashboard = json.loads(result.output)
    assert dashboard == grafana_dashboard() and dashboard["uid"] and dashboard["title"] == "rayeval"
    exported = {exported_name(m) for m in METRICS}
    assert exported == {
        "ray_rayeval_task_progress",
        "ray_rayeval_items_evaluated_total",
        "ray_rayeval_item_errors_total",
        "ray_rayeval_items_remaining",
        "ray_rayeval_items_reused",
        "ray_rayeval_items_stage_total",
    }
    charted = set()
    for panel in dashboard["panels"]:
        (target,) = panel["targets"]
        expr = target["expr"]
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        assert 'SessionName=~"$SessionName"' in expr and 'task_id=~"$TaskId"' in expr
        charted |= set(NAME.findall(expr))
    assert charted == exported  # every metric charted, and nothing that does not exist
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", "SessionName", "TaskId"}
    for name in ("SessionName", "TaskId"):
        assert set(NAME.findall(variables[name]["definition"])) <= exported
    assert len(PANELS) == len(dashboard["panels"]) == len({p["id"] for p in dashboard["panels"]})
