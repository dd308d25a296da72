"""The sandbox end to end: every target's real client against its emulator, seeded from the
scenario that made the ZenML store, must report exactly the drift the scenario declares."""

import json
import subprocess
import sys
from collections import Counter

import pytest
import yaml

from providers.emulators import scenario
from providers.emulators.sandbox import default_store, running, seed
from reconciler.cli import build_reconciler
from reconciler.config import Config
from reconciler.metrics import Metrics
from reconciler.report import to_json
from tests.support.procs import REPO, free_port

pytestmark = pytest.mark.integration


def sandbox_config(tmp_path):
    raw = yaml.safe_load((REPO / "config" / "sandbox.yaml").read_text())
    raw["registry"]["url"] = f"sqlite:///{default_store()}"
    ports = {"airflow": ("url", "http://127.0.0.1:{}"), "vertex": ("endpoint", "http://127.0.0.1:{}"),
             "kubeflow": ("host", "http://127.0.0.1:{}"), "kubernetes": ("host", "http://127.0.0.1:{}")}
    (tmp_path / "airflow-password").write_text("sandbox-secret-value\n")
    for target in raw["targets"]:
        key, url = ports[target["type"]]
        target[key] = url.format(free_port())
        if target["type"] == "airflow":
            target["username_file"] = str(REPO / target["username_file"])
            target["password_file"] = str(tmp_path / "airflow-password")
    raw["metrics"]["port"] = free_port()
    path = tmp_path / "sandbox.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, Config.model_validate(raw)


def expected_drift(target_type):
    kinds = Counter()
    for spec in scenario.schedules_for(target_type):
        for kind in spec.drift:
            kinds[kind] += 1
    return kinds


def test_sandbox_shows_exactly_the_scenario_drift_and_plan_never_mutates(tmp_path):
    path, config = sandbox_config(tmp_path)
    with running(config) as emulators:
        reconciler = build_reconciler(config, Metrics())
        seed(emulators, {c.name: c.id for c in reconciler.registry.read().components})
        report = reconciler.cycle(1)
        assert report.result == "success", [t.error for t in report.targets]
        for target in report.targets:
            got = Counter(d.kind.value for d in target.diff.drift)
            assert got == expected_drift(target.flavor), target.name
            unmanaged = {u.live.name for u in scenario.UNMANAGED if u.target_type == target.flavor}
            assert {l.name for l in target.diff.unmanaged} == unmanaged

        # `plan` from another process against the running emulators: same drift, exit 1, nothing mutated.
        for emulator in emulators.all():
            emulator.log.clear()
        result = subprocess.run([sys.executable, "-m", "reconciler", "plan", "--config", str(path), "--output", "json"],
                                capture_output=True, text=True, timeout=120, cwd=REPO)
        assert result.returncode == 1, result.stderr
        plan = json.loads(result.stdout)
        assert [t["status"] for t in plan["targets"]] == ["ok"] * 4
        assert plan["registry"] == {"status": "ok", "schedules": scenario_schedules(), "error": None}
        assert {t["name"]: len(t["drift"]) for t in plan["targets"]} == \
               {t["name"]: len(t["drift"]) for t in to_json(report)["targets"]}
        for emulator in emulators.all():
            assert emulator.log.mutations() == [], emulator
        assert "sandbox-secret-value" not in result.stdout + result.stderr


def scenario_schedules():
    return sum(1 for s in scenario.SCHEDULES if not s.archived)
