"""The coordinator's progress metrics (Ray metrics, per task, model and evaluation set), the names under
which Ray exports them to Prometheus, and a Grafana dashboard of them in the form of Ray's own.

Ray prefixes every application metric with `ray_`, and Prometheus counters end in `_total`: the gauge
`rayeval_task_progress` is scraped as `ray_rayeval_task_progress`, the counter `rayeval_items_evaluated`
as `ray_rayeval_items_evaluated_total`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["METRICS", "PANELS", "TAG_KEYS", "MetricDef", "Panel", "exported_name", "grafana_dashboard"]

#: Labels of every progress metric.
TAG_KEYS = ("task_id", "model", "eval_set")


@dataclass(frozen=True)
class MetricDef:
    """One progress metric: its name in Ray, its kind, what it counts and its labels."""

    name: str
    kind: Literal["gauge", "counter"]
    description: str
    tags: tuple[str, ...] = TAG_KEYS


METRICS: tuple[MetricDef, ...] = (
    MetricDef("rayeval_task_progress", "gauge", "Fraction of entries evaluated, per task, model and evaluation set."),
    MetricDef("rayeval_items_evaluated", "counter", "Items evaluated (including failed ones)."),
    MetricDef("rayeval_item_errors", "counter", "Items that failed."),
    MetricDef("rayeval_items_remaining", "gauge", "Items not evaluated yet, per task, model and evaluation set."),
    MetricDef(
        "rayeval_items_reused", "gauge", "Items taken from earlier tasks' results, per task, model and evaluation set."
    ),
    MetricDef(
        "rayeval_items_stage",
        "counter",
        "Items each stage handled (stage: inferred, judged, scored), per task, model and evaluation set.",
        (*TAG_KEYS, "stage"),
    ),
)


def exported_name(metric: MetricDef) -> str:
    """The metric's name as Prometheus scrapes it from a Ray node."""
    return f"ray_{metric.name}" + ("_total" if metric.kind == "counter" else "")


@dataclass(frozen=True)
class Panel:
    """One chart: a PromQL expression per series (`{filters}` stands for the dashboard's selections)."""

    title: str
    description: str
    expr: str
    unit: str = "short"
    legend: str = "{{task_id}} {{model}} / {{eval_set}}"


_SERIES = "task_id, model, eval_set"
PANELS: tuple[Panel, ...] = (
    Panel(
        "Progress",
        "Fraction of each model and set's entries evaluated (failed ones count as evaluated).",
        "max by (" + _SERIES + ") (ray_rayeval_task_progress{{filters}})",
        unit="percentunit",
    ),
    Panel(
        "Items evaluated per second",
        "Rate at which items are evaluated (stored with their scores).",
        "sum by (" + _SERIES + ") (rate(ray_rayeval_items_evaluated_total{{filters}}[1m]))",
        unit="ops",
    ),
    Panel(
        "Item errors per second",
        "Rate of items stored with an error (after MAX_RETRY_PER_QUERY retries).",
        "sum by (" + _SERIES + ") (rate(ray_rayeval_item_errors_total{{filters}}[1m]))",
        unit="ops",
    ),
    Panel(
        "Items per second by stage",
        "Items inferred, judged and scored per second: the stage that falls behind is the bottleneck.",
        "sum by (" + _SERIES + ", stage) (rate(ray_rayeval_items_stage_total{{filters}}[1m]))",
        unit="ops",
        legend="{{stage}} {{task_id}} {{model}} / {{eval_set}}",
    ),
    Panel(
        "Items remaining",
        "Items not evaluated yet.",
        "max by (" + _SERIES + ") (ray_rayeval_items_remaining{{filters}})",
    ),
    Panel(
        "Items reused",
        "Items whose results were taken from earlier tasks instead of being evaluated again.",
        "max by (" + _SERIES + ") (ray_rayeval_items_reused{{filters}})",
    ),
)

_FILTERS = 'SessionName=~"$SessionName",task_id=~"$TaskId"'


def _variable(name: str, label: str, query: str, description: str, *, multi: bool) -> dict[str, Any]:
    return {
        "allValue": ".+",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {"selected": False},
        "datasource": "${datasource}",
        "definition": query,
        "description": description,
        "hide": 0,
        "includeAll": True,
        "label": label,
        "multi": multi,
        "name": name,
        "options": [],
        "query": {"query": query, "refId": f"Prometheus-{name}-Variable-Query"},
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 2,
        "type": "query",
    }


def _panel(index: int, panel: Panel) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": "${datasource}",
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": panel.unit, "min": 0}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull"]}},
        "targets": [
            {
                "datasource": "${datasource}",
                "expr": panel.expr.replace("{filters}", _FILTERS),
                "legendFormat": panel.legend,
                "refId": "A",
            }
        ],
    }


def grafana_dashboard() -> dict[str, Any]:
    """A Grafana dashboard of the progress metrics, shaped like Ray's own (a `datasource` variable, a
    `SessionName` filter) with a task filter; import it in Grafana next to Ray's dashboards."""
    datasource = {
        "current": {"selected": False},
        "description": "Filter queries of a specific Prometheus type.",
        "hide": 2,
        "includeAll": False,
        "multi": False,
        "name": "datasource",
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
        "type": "datasource",
    }
    session = _variable(
        "SessionName",
        "Ray session",
        "label_values(ray_rayeval_task_progress, SessionName)",
        "Filter queries to specific Ray sessions.",
        multi=False,
    )
    task = _variable(
        "TaskId",
        "Task",
        'label_values(ray_rayeval_task_progress{SessionName=~"$SessionName"}, task_id)',
        "Filter queries to specific rayeval tasks.",
        multi=True,
    )
    return {
        "annotations": {"list": []},
        "editable": True,
        "graphTooltip": 1,
        "links": [],
        "panels": [_panel(i, p) for i, p in enumerate(PANELS)],
        "refresh": "10s",
        "schemaVersion": 27,
        "tags": ["rayeval", "ray"],
        "templating": {"list": [datasource, session, task]},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": "rayeval",
        "uid": "rayevalDashboard",
        "version": 1,
    }
