"""The alert rules, checked and unit-tested by Prometheus' own promtool."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.deploy import tools

RULES_DIR = tools.REPO / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yaml"
RULE_TESTS = RULES_DIR / "alerts_test.yaml"
README_ANCHOR = re.compile(r"^https://\S+/README\.md#[a-z0-9-]+$")


def alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def test_promtool_check_rules() -> None:
    result = tools.run([tools.promtool(), "check", "rules", RULES])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = tools.run([tools.promtool(), "test", "rules", RULE_TESTS.name], cwd=RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    # The unit tests must notice a rule that changed: raise one threshold and they fail.
    broken = RULES.read_text().replace("schedule_reconciler_target_up) == 0", "schedule_reconciler_target_up) == 2")
    assert broken != RULES.read_text()
    (tmp_path / "alerts.yaml").write_text(broken)
    (tmp_path / "alerts_test.yaml").write_text(RULE_TESTS.read_text())
    result = tools.run([tools.promtool(), "test", "rules", "alerts_test.yaml"], cwd=tmp_path)
    assert result.returncode != 0
    assert "ScheduleReconcilerTargetDown" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert firing == set(alerts())
    assert quiet == set(alerts())


def test_every_alert_is_documented_and_routable() -> None:
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert README_ANCHOR.match(annotations["runbook_url"]), name
        assert annotations["runbook_url"].endswith("#" + name.lower()), name
        # Alerts over per-target series name the target, those over kinds the kind.
        if "target" in rule["expr"] and "by (target" in rule["expr"]:
            assert "$labels.target" in annotations["summary"], name
        if "by (target, kind)" in rule["expr"]:
            assert "$labels.kind" in annotations["summary"], name


def test_no_success_window_is_three_default_intervals() -> None:
    # The chart rewrites this literal with 3 x config.interval; keep the two in step.
    from reconciler.config import Config

    expr = alerts()["ScheduleReconcilerNoRecentSuccess"]["expr"]
    assert expr.endswith(f"> 3 * {int(Config().interval)}")
