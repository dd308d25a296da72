"""A real Prometheus scraping the real daemon: every dashboard query and alert evaluated.

The daemon runs from the product venv against the Kubernetes API emulator, seeded
from the shared scenario (one CronJob in sync, one orphan ZenML no longer knows,
one that ZenML never made), and the committed ZenML 0.98 store file. Cleanup is
on and approved with a budget of zero actions, so a candidate goes through
dry_run into `blocked` and nothing is ever removed. Prometheus (Debian's binary)
scrapes it every second and loads deploy/prometheus/alerts.yaml.

Then each dashboard query, with the Grafana variables substituted, must parse and
return data; each alert expression must parse; every loaded rule must evaluate
without error.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import tools
from tests.support.procs import REPO, Server, free_port, http_ok, wait_until
from providers.emulators import scenario

STORE = REPO / "tests" / "zenml_stores" / "files" / "zenml-0.98.0.db"
MANIFEST = STORE.with_suffix(".json")
DASHBOARD = tools.CHART / "dashboards" / "schedule-reconciler.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yaml"
DAEMON = REPO / ".venv" / "bin" / "schedule-reconciler"
GRAFANA_VARIABLES = {
    "$__rate_interval": "30s",
    "$__interval": "5s",
    "$__range": "5m",
    "$target": ".*",
}
DATA_TIMEOUT = 120.0

pytestmark = pytest.mark.integration


def kubernetes_seed() -> dict[str, Any]:
    from providers.emulators.kubernetes import plain_cron_job, zenml_cron_job

    component_id = json.loads(MANIFEST.read_text())["components"]["k8s-orchestrator"]
    cronjobs = []
    for schedule in scenario.schedules_for("kubernetes"):
        for live in schedule.live:
            assert live.cron is not None
            cronjobs.append(zenml_cron_job(schedule.pipeline, component_id, live.cron, "zenml", name=live.name,
                                           suspend=not live.enabled))
    cronjobs.append(plain_cron_job("nightly-backup", "0 1 * * *", "zenml"))
    return {"cronjobs": cronjobs}


def daemon_config(store: Path, emulator_port: int, metrics_port: int, state: Path) -> dict[str, Any]:
    return {
        "interval": "2s",
        "jitter": "0s",
        "registry": {"type": "zenml-sql", "url": f"sqlite:///{store}"},
        "targets": [{"name": "k8s", "type": "kubernetes", "namespace": "zenml",
                     "host": f"http://127.0.0.1:{emulator_port}", "components": ["k8s-orchestrator"],
                     "timeout": "5s", "max_retries": 1}],
        # Approved, but a budget of 0 blocks the orphan once its dry run is done: the cleanup
        # panels get dry-run actions and a blocked reason, and the orphan stays for the drift test.
        "cleanup": {"enabled": True, "approve": True, "dry_run_cycles": 1, "grace_period": "0s",
                    "max_actions_per_cycle": 0},
        "state": {"url": f"sqlite:///{state}"},
        "metrics": {"host": "127.0.0.1", "port": metrics_port},
        "log": {"format": "json", "level": "info"},
    }


def prometheus_config(metrics_port: int, rules: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "schedule-reconciler",
                            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
    }


class PrometheusApi:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback only
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 400/422 carry the parse error as JSON
            return json.loads(exc.read())

    def query(self, expr: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expr)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusApi]:
    for part in (STORE, MANIFEST, DAEMON):
        if not part.exists():
            raise RuntimeError(f"{part} is missing: this test needs the daemon, the emulators and the store files")
    work = tmp_path_factory.mktemp("prometheus-live")
    store = work / "zenml.db"
    shutil.copy(STORE, store)  # SQLite may touch its file; never the committed one
    seed = work / "kubernetes-seed.json"
    seed.write_text(json.dumps(kubernetes_seed()))
    emulator_port, metrics_port, prometheus_port = free_port(), free_port(), free_port()
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(daemon_config(store, emulator_port, metrics_port, work / "state.db")))
    prom_config = work / "prometheus.yml"
    prom_config.write_text(yaml.safe_dump(prometheus_config(metrics_port, ALERTS)))

    servers: list[Server] = []
    try:
        emulator = Server("kubernetes-emulator", [REPO / ".venv" / "bin" / "python", "-m",
                                                  "providers.emulators.kubernetes", "--port", str(emulator_port),
                                                  "--seed", seed], work / "emulator.log", cwd=REPO)
        servers.append(emulator)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{emulator_port}/version"), 30, "the Kubernetes emulator",
                   emulator)
        daemon = Server("schedule-reconciler", [DAEMON, "run", "--config", config], work / "daemon.log", cwd=work)
        servers.append(daemon)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{metrics_port}/metrics"), 60, "the daemon's /metrics", daemon)
        server = Server("prometheus", [tools.prometheus(), f"--config.file={prom_config}",
                                       f"--storage.tsdb.path={work / 'tsdb'}",
                                       f"--web.listen-address=127.0.0.1:{prometheus_port}",
                                       "--storage.tsdb.retention.time=1h", "--log.level=warn"],
                        work / "prometheus.log", cwd=work)
        servers.append(server)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{prometheus_port}/-/ready"), 60, "Prometheus", server)
        api = PrometheusApi(prometheus_port)
        wait_for_every_query(api, daemon)
        yield api
    finally:
        for process in reversed(servers):
            process.stop()


def dashboard_queries() -> list[tuple[str, str]]:
    queries = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            queries.append((f"{panel['title']} / {target['refId']}", substitute(target["expr"])))
    for variable in json.loads(DASHBOARD.read_text())["templating"]["list"]:
        if variable["type"] == "query":
            queries.append((f"variable {variable['name']}", label_values(variable["query"]["query"])))
    return queries


def substitute(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted Grafana variable in {expr}"
    return expr


def label_values(query: str) -> str:
    """Grafana's `label_values(metric, label)` as the PromQL it stands for."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
    assert match, query
    return f"group by ({match.group(2)}) ({match.group(1)})"


def alert_expressions() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def has_data(response: dict[str, Any]) -> bool:
    return response.get("status") == "success" and bool(response["data"]["result"])


def wait_for_every_query(api: PrometheusApi, daemon: Server) -> None:
    # Rates and quantiles need a few scrapes and cycles.
    def ready() -> bool:
        return all(has_data(api.query(expr)) for name, expr in dashboard_queries())

    try:
        wait_until(ready, DATA_TIMEOUT, "data for every dashboard query", daemon, interval=2.0)
    except TimeoutError:
        pass  # the test below names each query without data


@pytest.mark.parametrize("name,expr", dashboard_queries(), ids=[name for name, _ in dashboard_queries()])
def test_dashboard_query_returns_data(prometheus: PrometheusApi, name: str, expr: str) -> None:
    response = prometheus.query(expr)
    assert response.get("status") == "success", f"{name}: {expr}: {response.get('error')}"
    assert response["data"]["result"], f"{name}: no data for {expr}"


@pytest.mark.parametrize("name,expr", alert_expressions(), ids=[name for name, _ in alert_expressions()])
def test_alert_expression_parses(prometheus: PrometheusApi, name: str, expr: str) -> None:
    response = prometheus.query(expr)
    assert response.get("status") == "success", f"{name}: {response.get('error')}"


def test_loaded_rules_evaluate_cleanly(prometheus: PrometheusApi) -> None:
    response = prometheus.get("/api/v1/rules")
    rules = [rule for group in response["data"]["groups"] for rule in group["rules"]]
    assert {rule["name"] for rule in rules} == {name for name, _ in alert_expressions()}
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"


def test_the_scenario_drift_is_what_prometheus_sees(prometheus: PrometheusApi) -> None:
    # The orphan CronJob (its ZenML schedule was deleted) is the one drifted schedule.
    result = prometheus.query('schedule_reconciler_drift_info{target="k8s"}')["data"]["result"]
    drifted = {(r["metric"]["kind"], r["metric"]["native_id"]) for r in result}
    assert drifted == {("orchestrator_only", "zenml/zenml-4e5f6a7b-k8s-export")}
    live = prometheus.query('schedule_reconciler_live_schedules{target="k8s"}')["data"]["result"]
    assert {r["metric"]["ownership"]: r["value"][1] for r in live} == {"managed": "2", "unmanaged": "1"}
    up = prometheus.query('schedule_reconciler_target_up{target="k8s"}')["data"]["result"]
    assert [r["value"][1] for r in up] == ["1"]
