"""The real daemon process against the sandbox emulators: its /metrics agree with its /plan,
bad registry rows do not crash it, and SIGTERM ends it cleanly with exit 0."""

import json
import shutil
import signal
import sqlite3
import sys
import urllib.request
from collections import Counter

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from providers.emulators.sandbox import default_store, running, seed
from reconciler.config import Config
from tests.support.procs import REPO, Server, free_port, http_ok, wait_until

pytestmark = pytest.mark.integration


def config_file(tmp_path, store):
    raw = yaml.safe_load((REPO / "config" / "sandbox.yaml").read_text())
    raw["registry"]["url"] = f"sqlite:///{store}"
    keys = {"airflow": "url", "vertex": "endpoint", "kubeflow": "host", "kubernetes": "host"}
    for target in raw["targets"]:
        target[keys[target["type"]]] = f"http://127.0.0.1:{free_port()}"
        for key in ("username_file", "password_file"):
            if key in target:
                target[key] = str(REPO / target[key])
    raw["metrics"]["port"] = free_port()
    raw["interval"] = "1h"  # one cycle at start is all these tests need
    raw["log"] = {"format": "json", "level": "info"}
    path = tmp_path / "daemon.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, Config.model_validate(raw)


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        return response.read().decode()


def metric_values(text):
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


@pytest.fixture
def daemon(tmp_path):
    def start(store=default_store()):
        path, config = config_file(tmp_path, store)
        stack = running(config)
        emulators = stack.__enter__()
        started.append(stack)
        from providers import build_registry
        seed(emulators, {c.name: c.id for c in build_registry(config.registry).read().components})
        server = Server("daemon", [sys.executable, "-m", "reconciler", "run", "--config", str(path)],
                        tmp_path / "daemon.log", cwd=REPO)
        servers.append(server)
        base = f"http://127.0.0.1:{config.metrics.port}"
        wait_until(lambda: http_ok(base + "/readyz") and get(base + "/readyz").strip() == "ok", 90,
                   "the daemon's first cycle", server)
        return server, base

    started, servers = [], []
    yield start
    for server in servers:
        server.stop()
    for stack in started:
        stack.__exit__(None, None, None)


def test_metrics_match_the_plan_and_sigterm_exits_0(daemon):
    server, base = daemon()
    plan = json.loads(get(base + "/plan"))
    values = metric_values(get(base + "/metrics"))
    assert values[("schedule_reconciler_registry_up", ())] == 1
    for target in plan["targets"]:
        name = (("target", target["name"]),)
        assert values[("schedule_reconciler_target_up", name)] == 1
        kinds = Counter(d["kind"] for d in target["drift"])
        for kind in ("zenml_only", "orchestrator_only", "spec_mismatch", "state_mismatch", "duplicate"):
            assert values[("schedule_reconciler_drift_schedules", (("kind", kind), ("target", target["name"])))] \
                == kinds[kind], (target["name"], kind)
        assert values[("schedule_reconciler_live_schedules", (("ownership", "managed"), ("target", target["name"])))] \
            == target["counts"]["managed"]
        assert values[("schedule_reconciler_live_schedules", (("ownership", "unmanaged"), ("target", target["name"])))] \
            == target["counts"]["unmanaged"]
        assert values[("schedule_reconciler_registry_schedules", name)] == target["counts"]["expected"]
        assert values[("schedule_reconciler_in_sync_ratio", name)] == pytest.approx(target["in_sync_ratio"], abs=1e-4)
        info = [k for k in values if k[0] == "schedule_reconciler_drift_info" and ("target", target["name"]) in k[1]]
        assert len(info) == len({(d["kind"], d["schedule"], d["native_id"]) for d in target["drift"]})
    assert values[("schedule_reconciler_cycles_total", (("result", "success"),))] >= 1
    assert get(base + "/healthz").strip() == "ok"

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) == 0
    log = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
    events = [entry["event"] for entry in log]
    assert "cycle finished" in events and events[-1] == "stopped"
    target_lines = [e for e in log if e["event"] == "target reconciled"]
    assert {e["target"] for e in target_lines} == {t["name"] for t in plan["targets"]}
    assert all(e["cycle"] >= 1 for e in target_lines)


def test_an_unparsable_cron_in_zenml_is_drift_not_a_crash(daemon, tmp_path):
    store = tmp_path / "zenml.db"
    shutil.copy(default_store(), store)
    with sqlite3.connect(store) as db:
        changed = db.execute("UPDATE schedule SET cron_expression = 'every day at nine' WHERE name = 'etl_daily'")
        assert changed.rowcount == 1
    server, base = daemon(store)
    plan = json.loads(get(base + "/plan"))
    airflow = next(t for t in plan["targets"] if t["name"] == "airflow")
    assert airflow["status"] == "ok"
    etl = [d for d in airflow["drift"] if d["schedule"] == "etl_daily"]
    assert [d["kind"] for d in etl] == ["spec_mismatch"] and "unparsable in ZenML" in etl[0]["detail"]
    assert server.alive()
