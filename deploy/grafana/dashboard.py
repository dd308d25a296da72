"""The Grafana dashboard for schedule-reconciler, as code.

    python deploy/grafana/dashboard.py   # writes helm/schedule-reconciler/dashboards/schedule-reconciler.json

The committed JSON must equal a fresh generation (tests/deploy/test_generated.py),
and every query here is evaluated against a real Prometheus scraping the real
daemon (tests/deploy/test_prometheus_live.py). Gauges are aggregated with `max`
so that an HA pair (both replicas export the same view) is not counted twice.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "helm" / "schedule-reconciler" / "dashboards" / "schedule-reconciler.json"
UID = "schedule-reconciler"
M = "schedule_reconciler_"
T = '{target=~"$target"}'
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
WIDTH = 24


@dataclass
class Query:
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


@dataclass
class Panel:
    title: str
    kind: str  # timeseries | stat | table | bargauge
    description: str
    queries: list[Query]
    width: int
    height: int = 8
    unit: str = "short"
    stacked: bool = False
    min: float | None = None
    max: float | None = None
    thresholds: list[tuple[float | None, str]] = field(default_factory=lambda: [(None, "green")])
    mappings: list[dict[str, Any]] = field(default_factory=list)
    hidden_columns: list[str] = field(default_factory=list)


ROWS: list[tuple[str, list[Panel]]] = [
    ("Drift", [
        Panel("In-sync ratio", "bargauge",
              "Share of each target's schedules (expected in ZenML or managed live) that are bound with no "
              "mismatch. 1 means no drift.",
              [Query(f"min by (target) ({M}in_sync_ratio{T})", "{{target}}", instant=True)],
              width=8, unit="percentunit", min=0, max=1,
              thresholds=[(None, "red"), (0.9, "orange"), (1, "green")]),
        Panel("Drift by kind", "timeseries",
              "Drifted schedules per target and kind over time: zenml_only (missing on the orchestrator), "
              "orchestrator_only (orphans), spec_mismatch, state_mismatch, duplicate.",
              [Query(f"max by (target, kind) ({M}drift_schedules{T})", "{{target}} {{kind}}")],
              width=16, stacked=True, min=0),
        Panel("Drifted schedules", "table",
              "One row per drifted schedule (capped by metrics.detail_series_limit per target): the ZenML "
              "schedule name where one is bound and the orchestrator's native id.",
              [Query(f"max by (target, kind, schedule, native_id) ({M}drift_info{T})", instant=True, table=True)],
              width=18, height=10, hidden_columns=["Time", "Value"]),
        Panel("Not listed (over the cap)", "stat",
              "Drifted schedules left out of the table above because of metrics.detail_series_limit.",
              [Query(f"sum({M}drift_info_dropped{T})", instant=True)],
              width=6, height=10, thresholds=[(None, "green"), (1, "orange")]),
        Panel("Live schedules: managed vs unmanaged", "timeseries",
              "Live schedules per target, split by ownership (managed: created by ZenML; unmanaged: counted, "
              "never touched), beside the schedules ZenML expects there.",
              [Query(f"max by (target, ownership) ({M}live_schedules{T})", "{{target}} {{ownership}}"),
               Query(f"max by (target) ({M}registry_schedules{T})", "{{target}} expected by ZenML")],
              width=24, min=0),
    ]),
    ("Cleanup", [
        Panel("Candidates by stage", "timeseries",
              "Cleanup candidates per target by stage: dry_run (collecting evidence), ready (waiting for "
              "approval or acting), protected, blocked.",
              [Query(f"max by (target, stage) ({M}cleanup_candidates{T})", "{{target}} {{stage}}")],
              width=8, stacked=True, min=0),
        Panel("Actions by outcome", "timeseries",
              "Cleanup actions per target, action and outcome in each interval: dry_run, succeeded, failed, "
              "already_gone, skipped_changed.",
              [Query(f"sum by (target, action, outcome) (increase({M}cleanup_actions_total{T}[$__rate_interval]))",
                     "{{target}} {{action}} {{outcome}}")],
              width=8, stacked=True, min=0),
        Panel("Blocked, by reason", "table",
              "Candidates held back by a safety guard (registry or listing incomplete, not the leader, budget), "
              "per target and reason.",
              [Query(f"max by (target, reason) ({M}cleanup_blocked{T}) > 0", instant=True, table=True)],
              width=8, hidden_columns=["Time"]),
    ]),
    ("Health", [
        Panel("Target up", "stat",
              "1 when the target's last listing was complete; 0 means its drift is unknown this cycle.",
              [Query(f"max by (target) ({M}target_up{T})", "{{target}}", instant=True)],
              width=8, height=6, thresholds=[(None, "red"), (1, "green")],
              mappings=[{"type": "value", "options": {"0": {"text": "down", "color": "red"},
                                                      "1": {"text": "up", "color": "green"}}}]),
        Panel("Registry up", "stat",
              "1 when the last read of ZenML's schedule registry was complete.",
              [Query(f"max({M}registry_up)", "registry", instant=True)],
              width=4, height=6, thresholds=[(None, "red"), (1, "green")],
              mappings=[{"type": "value", "options": {"0": {"text": "down", "color": "red"},
                                                      "1": {"text": "up", "color": "green"}}}]),
        Panel("Since last success", "stat",
              "Time since each target was last reconciled completely.",
              [Query(f"time() - max by (target) ({M}last_success_timestamp_seconds{T})", "{{target}}",
                     instant=True)],
              width=8, height=6, unit="s", thresholds=[(None, "green"), (900, "orange"), (3600, "red")]),
        Panel("Leader replicas", "stat",
              "Replicas that may act (exactly 1 expected).",
              [Query(f"sum({M}leader)", "leader", instant=True)],
              width=4, height=6, thresholds=[(None, "red"), (1, "green"), (2, "red")]),
        Panel("Targets", "table",
              "Configured targets with their flavor and endpoint, and the daemon's version.",
              [Query(f"max by (target, flavor, endpoint) ({M}target_info{T})", instant=True, table=True),
               Query(f"max by (version) ({M}build_info)", instant=True, table=True)],
              width=24, height=6, hidden_columns=["Time", "Value #A", "Value #B"]),
    ]),
    ("Performance", [
        Panel("Cycles by result", "timeseries",
              "Reconcile cycles per second by result: success, partial (a target failed), failed.",
              [Query(f"sum by (result) (rate({M}cycles_total[$__rate_interval]))", "{{result}}")],
              width=8, unit="ops", stacked=True, min=0),
        Panel("Cycle duration", "timeseries",
              "Median and 95th percentile of a whole reconcile cycle.",
              [Query(f"histogram_quantile(0.5, sum by (le) (rate({M}cycle_duration_seconds_bucket[$__rate_interval])))",
                     "p50"),
               Query(f"histogram_quantile(0.95, sum by (le) (rate({M}cycle_duration_seconds_bucket[$__rate_interval])))",
                     "p95")],
              width=8, unit="s", min=0),
        Panel("Listing duration", "timeseries",
              "95th percentile of a whole listing (all pages and retries) per target.",
              [Query(f"histogram_quantile(0.95, sum by (target, le) "
                     f"(rate({M}list_duration_seconds_bucket{T}[$__rate_interval])))", "{{target}} p95")],
              width=8, unit="s", min=0),
        Panel("API requests by code", "timeseries",
              "Requests to the orchestrators' and ZenML's APIs per second, by target and response code "
              "(every attempt, retries included).",
              [Query(f"sum by (target, code) (rate({M}api_requests_total{T}[$__rate_interval]))",
                     "{{target}} {{code}}")],
              width=24, unit="reqps", stacked=True, min=0),
    ]),
]


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for index, query in enumerate(panel.queries):
        target: dict[str, Any] = {"datasource": DATASOURCE, "expr": query.expr, "refId": chr(ord("A") + index)}
        if query.legend:
            target["legendFormat"] = query.legend
        if query.instant:
            target["instant"] = True
            target["range"] = False
        if query.table:
            target["format"] = "table"
        targets.append(target)
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": {"mode": "absolute",
                       "steps": [{"color": color, "value": value} for value, color in panel.thresholds]},
        "mappings": panel.mappings,
    }
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    options: dict[str, Any] = {}
    if panel.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "fillOpacity": 20 if panel.stacked else 0, "lineWidth": 1,
                              "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"}}
        options = {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
                   "tooltip": {"mode": "multi", "sort": "desc"}}
    elif panel.kind in ("stat", "bargauge"):
        defaults["color"] = {"mode": "thresholds"}
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "orientation": "horizontal"}
    elif panel.kind == "table":
        options = {"showHeader": True}
    result: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": targets,
    }
    if panel.kind == "table":
        transformations: list[dict[str, Any]] = []
        if len(panel.queries) > 1:
            transformations.append({"id": "merge", "options": {}})
        transformations.append({"id": "organize", "options": {
            "excludeByName": {name: True for name in panel.hidden_columns}}})
        result["transformations"] = transformations
    return result


def build() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    panel_id = 1
    y = 0
    for row_title, row_panels in ROWS:
        panels.append({"id": panel_id, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y}, "panels": []})
        panel_id += 1
        y += 1
        x = 0
        row_height = 0
        for panel in row_panels:
            if x + panel.width > WIDTH:
                x, y, row_height = 0, y + row_height, 0
            panels.append(panel_json(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return {
        "uid": UID,
        "title": "Schedule reconciler",
        "description": "Drift between ZenML's schedule registry and the orchestrators, cleanup, and the daemon's health.",
        "tags": ["zenml", "schedule-reconciler"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "options": []},
            {"name": "target", "label": "Target", "type": "query", "datasource": DATASOURCE,
             "definition": f"label_values({M}target_info, target)",
             "query": {"query": f"label_values({M}target_info, target)", "refId": "targets"},
             "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*", "sort": 1,
             "current": {}, "hide": 0, "options": []},
        ]},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
