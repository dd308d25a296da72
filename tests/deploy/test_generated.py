"""Generated deploy files: committed copies equal a fresh generation; the dashboard's shape."""

from __future__ import annotations

import json
import runpy
from typing import Any

from tests.deploy import tools

DASHBOARD_PY = tools.REPO / "deploy" / "grafana" / "dashboard.py"
COMMITTED_DASHBOARD = tools.CHART / "dashboards" / "schedule-reconciler.json"


def dashboard_module() -> dict[str, Any]:
    return runpy.run_path(str(DASHBOARD_PY))


def test_committed_dashboard_is_a_fresh_generation() -> None:
    fresh = dashboard_module()["render"]()
    assert COMMITTED_DASHBOARD.read_text() == fresh, "run `python deploy/generate.py`"


def test_chart_alerts_are_the_rules_file() -> None:
    source = (tools.REPO / "deploy" / "prometheus" / "alerts.yaml").read_bytes()
    assert (tools.CHART / "files" / "alerts.yaml").read_bytes() == source, "run `python deploy/generate.py`"


def panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(COMMITTED_DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def test_template_variables() -> None:
    variables = {v["name"]: v for v in json.loads(COMMITTED_DASHBOARD.read_text())["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    target = variables["target"]
    assert target["query"]["query"] == "label_values(schedule_reconciler_target_info, target)"
    assert target["multi"] and target["includeAll"] and target["allValue"] == ".*"


def test_every_panel_uses_the_datasource_variable_and_is_described() -> None:
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["description"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            # Per-target series must follow the $target selector.
            if "target" in target["expr"] and "build_info" not in target["expr"]:
                assert 'target=~"$target"' in target["expr"], (panel["title"], target["expr"])


def test_panels_cover_the_contract() -> None:
    exprs = " ".join(t["expr"] for p in panels() for t in p["targets"])
    for metric in ("in_sync_ratio", "drift_schedules", "drift_info", "drift_info_dropped", "live_schedules",
                   "registry_schedules", "cleanup_candidates", "cleanup_actions_total", "cleanup_blocked",
                   "target_up", "registry_up", "last_success_timestamp_seconds", "cycles_total",
                   "cycle_duration_seconds_bucket", "list_duration_seconds_bucket", "api_requests_total",
                   "target_info", "leader", "build_info"):
        assert f"schedule_reconciler_{metric}" in exprs, metric
    assert exprs.count("histogram_quantile(") == 3


def test_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in json.loads(COMMITTED_DASHBOARD.read_text())["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))
