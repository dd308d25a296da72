"""The Helm chart, linted and rendered by a real Helm, validated against Kubernetes' schemas.

Cases: default values, HA (leader election, 2 replicas), the ZenML sidecar example,
and one values file per target type. Every rendered object is checked with
`kubernetes-validate --strict` against the oldest and newest Kubernetes the chart
supports. ServiceMonitor and PrometheusRule are custom resources without a schema
there: the PrometheusRule's rules go through `promtool check rules` (and the alert
unit tests), the ServiceMonitor is checked against the Service it selects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.config import load_config
from tests.deploy import tools

CASES: dict[str, list[Path]] = {
    "default": [],
    "ha": [tools.EXAMPLES / "ha-values.yaml"],
    "sidecar": [tools.EXAMPLES / "zenml-sidecar-values.yaml"],
    "vertex": [tools.EXAMPLES / "vertex-values.yaml"],
    "kubeflow": [tools.EXAMPLES / "kubeflow-values.yaml"],
    "airflow": [tools.EXAMPLES / "airflow-values.yaml"],
    "kubernetes": [tools.EXAMPLES / "kubernetes-values.yaml"],
}
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
KUBERNETES_VERSIONS = ["1.25.0", "1.37.0"]  # Chart.yaml kubeVersion's floor, and the newest schema
CRONJOB_VERBS = {"get", "list", "patch", "delete"}
LEASE_VERBS = {"get", "create", "update"}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {case: tools.render(files) for case, files in CASES.items()}


def only(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"expected one {kind}*{suffix}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def all_of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def rendered_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    configmap = only(docs, "ConfigMap", "schedule-reconciler")
    return yaml.safe_load(configmap["data"]["config.yaml"])


@pytest.mark.parametrize("case", CASES)
def test_lint_strict(case: str) -> None:
    argv: list[str | Path] = [tools.helm(), "lint", "--strict", tools.CHART]
    for path in CASES[case]:
        argv += ["--values", path]
    result = tools.run(argv)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("case", CASES)
def test_every_object_validates_strictly(case: str, rendered: dict[str, list[dict[str, Any]]],
                                         tmp_path: Path) -> None:
    files = []
    for index, doc in enumerate(rendered[case]):
        if doc["kind"] in CUSTOM_KINDS:
            continue
        path = tmp_path / f"{index:02d}-{doc['kind']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        files.append(path)
    assert files
    for version in KUBERNETES_VERSIONS:
        result = tools.run([tools.kubernetes_validate(), "--strict", "--kubernetes-version", version, *files])
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count(" passed for resource ") == len(files), result.stdout


def test_the_validator_is_strict(rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    # If kubernetes-validate ignored unknown fields, the test above would prove little.
    deployment = json.loads(json.dumps(only(rendered["default"], "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(deployment))
    result = tools.run([tools.kubernetes_validate(), "--strict", path])
    assert result.returncode != 0


@pytest.mark.parametrize("case", [c for c in CASES if c != "sidecar"])
def test_deployment_is_locked_down(case: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    pod = only(rendered[case], "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["runAsUser"] != 0
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}]
    assert container["args"] == ["run", "--config", "/etc/schedule-reconciler/config.yaml"]
    assert container["resources"]["limits"]["memory"]
    # Writable paths are volumes; the config is a directory mount (a subPath never sees updates).
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert {"/etc/schedule-reconciler", "/var/lib/schedule-reconciler", "/tmp"} <= set(mounts)
    assert not any("subPath" in m for m in container["volumeMounts"])
    for env in container["env"]:
        assert "value" not in env or env["name"] in {"SCHEDULE_RECONCILER_CONFIG"}, env


def test_replicas_follow_leader_election(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert only(rendered["default"], "Deployment")["spec"]["replicas"] == 1
    assert only(rendered["default"], "Deployment")["spec"]["strategy"]["type"] == "Recreate"
    assert only(rendered["default"], "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    ha = only(rendered["ha"], "Deployment")
    assert ha["spec"]["replicas"] == 2
    assert only(rendered["ha"], "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert rendered_config(rendered["ha"])["leader_election"] == {
        "enabled": True, "backend": "kubernetes", "lease_name": "zr-schedule-reconciler",
        "namespace": tools.NAMESPACE, "lease_duration": "30s"}
    assert not all_of(rendered["sidecar"], "Deployment")


def test_api_token_is_mounted_only_when_the_daemon_talks_to_kubernetes(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    expected = {"default": False, "ha": True, "vertex": False, "kubeflow": False, "airflow": False,
                "kubernetes": True}
    for case, wanted in expected.items():
        pod = only(rendered[case], "Deployment")["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is wanted, case


@pytest.mark.parametrize("case", CASES)
def test_rbac_is_namespaced_and_minimal(case: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered[case]
    assert not all_of(docs, "ClusterRole") and not all_of(docs, "ClusterRoleBinding")
    for role in all_of(docs, "Role"):
        assert role["metadata"]["namespace"]
        for rule in role["rules"]:
            if rule["apiGroups"] == ["batch"]:
                assert rule["resources"] == ["cronjobs"]
                assert set(rule["verbs"]) <= CRONJOB_VERBS and {"get", "list"} <= set(rule["verbs"])
            else:
                assert rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"]
                assert set(rule["verbs"]) <= LEASE_VERBS
                assert "resourceNames" in rule or rule["verbs"] == ["create"]
    roles = {r["metadata"]["name"] for r in all_of(docs, "Role")}
    bindings = all_of(docs, "RoleBinding")
    assert {b["roleRef"]["name"] for b in bindings} == roles
    sa = "zenml" if case == "sidecar" else "zr-schedule-reconciler"
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": tools.NAMESPACE}]


def cronjob_verbs(docs: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {r["metadata"]["namespace"]: r["rules"][0]["verbs"]
            for r in all_of(docs, "Role") if r["metadata"]["name"].endswith("-cronjobs")}


def test_cronjob_verbs_follow_cleanup(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert cronjob_verbs(rendered["default"]) == {}
    assert cronjob_verbs(rendered["vertex"]) == {}
    # kubernetes example: delete in zenml, pause (patch) in ml-batch, the kubeconfig target gets nothing here.
    assert cronjob_verbs(rendered["kubernetes"]) == {"zenml": ["get", "list", "delete"],
                                                     "ml-batch": ["get", "list", "patch"]}
    assert cronjob_verbs(rendered["ha"]) == {"zenml": ["get", "list", "patch"]}
    assert cronjob_verbs(rendered["sidecar"]) == {"zenml": ["get", "list"]}  # cleanup off: read only
    lease_roles = [r for r in all_of(rendered["ha"], "Role") if r["metadata"]["name"].endswith("-leader-election")]
    assert len(lease_roles) == 1
    for case in ("default", "kubernetes", "sidecar"):
        assert not any(r["metadata"]["name"].endswith("-leader-election") for r in all_of(rendered[case], "Role"))


@pytest.mark.parametrize("case", CASES)
def test_rendered_config_is_accepted_by_the_daemon(case: str, rendered: dict[str, list[dict[str, Any]]],
                                                   tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(only(rendered[case], "ConfigMap", "schedule-reconciler")["data"]["config.yaml"])
    config = load_config(path, environ={})
    assert config.metrics.port == 9464
    assert config.leader_election.enabled is (case == "ha")


def test_secrets_come_from_secret_refs(rendered: dict[str, list[dict[str, Any]]]) -> None:
    container = only(rendered["vertex"], "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["ZENML_STORE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "zenml-store", "key": "url"}
    assert env["ZENML_STORE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "zenml-store", "key": "password"}
    airflow = only(rendered["airflow"], "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in airflow["volumes"] if v["name"] == "secret-airflow")
    assert volume["secret"]["secretName"] == "airflow-api-user"
    mount = next(m for m in airflow["containers"][0]["volumeMounts"] if m["name"] == "secret-airflow")
    assert mount == {"name": "secret-airflow", "mountPath": "/var/run/secrets/airflow", "readOnly": True}
    assert not all_of(rendered["airflow"], "Secret")


def test_inline_secrets_are_refused() -> None:
    result = tools.template([], ["config.targets[0].name=a", "config.targets[0].type=airflow",
                                 "config.targets[0].url=http://a", "config.targets[0].password=hunter2"])
    assert result.returncode != 0
    assert "a secret is inlined in .Values.config" in result.stderr
    assert "hunter2" not in result.stderr


def test_ha_on_sqlite_state_is_refused() -> None:
    result = tools.template([], ["leaderElection.enabled=true"])
    assert result.returncode != 0
    assert "leaderElection.enabled needs a shared state store" in result.stderr


def test_values_schema_rejects_unknown_keys() -> None:
    result = tools.template([], ["replicaCount=3"])
    assert result.returncode != 0 and "replicaCount" in result.stderr


def test_workload_identity_annotation(rendered: dict[str, list[dict[str, Any]]]) -> None:
    sa = only(rendered["vertex"], "ServiceAccount")
    assert sa["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "schedule-reconciler@my-gcp-project.iam.gserviceaccount.com"}
    assert "annotations" not in only(rendered["default"], "ServiceAccount")["metadata"]


def test_kubeflow_projected_token(rendered: dict[str, list[dict[str, Any]]]) -> None:
    pod = only(rendered["kubeflow"], "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "kubeflow-token")
    assert volume["projected"]["sources"] == [{"serviceAccountToken": {
        "audience": "pipelines.kubeflow.org", "expirationSeconds": 3600, "path": "token"}}]
    target = rendered_config(rendered["kubeflow"])["targets"][0]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "kubeflow-token")
    assert target["token_file"] == f"{mount['mountPath']}/token"
    policy = only(rendered["kubeflow"], "NetworkPolicy")
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_sidecar_patch_adds_a_locked_down_container(rendered: dict[str, list[dict[str, Any]]],
                                                    tmp_path: Path) -> None:
    docs = rendered["sidecar"]
    patch = yaml.safe_load(only(docs, "ConfigMap", "-sidecar")["data"]["patch.yaml"])
    pod = patch["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["ZENML_STORE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "zenml", "key": "ZENML_STORE_URL"}
    assert "readinessProbe" not in container  # an unready sidecar would take ZenML out of its Service
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "reconciler"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    names = {v["name"] for v in pod["volumes"]}
    assert {m["name"] for m in container["volumeMounts"]} <= names
    assert all(name.startswith("schedule-reconciler-") for name in names)  # no clash with ZenML's volumes
    # The patched ZenML server Deployment (its own container plus ours) is a valid object.
    server = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "zenml"},
              "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "zenml"}},
                       "template": {"metadata": {"labels": {"app.kubernetes.io/name": "zenml"}},
                                    "spec": {"serviceAccountName": "zenml",
                                             "containers": [{"name": "zenml", "image": "zenmldocker/zenml-server"}]
                                             + pod["containers"], "volumes": pod["volumes"]}}}}
    path = tmp_path / "zenml-server.yaml"
    path.write_text(yaml.safe_dump(server))
    result = tools.run([tools.kubernetes_validate(), "--strict", path])
    assert result.returncode == 0, result.stdout + result.stderr
    service = only(docs, "Service")
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "zenml", "app.kubernetes.io/instance": "zenml",
                                           "app.kubernetes.io/component": "server"}
    assert service["spec"]["ports"][0]["targetPort"] == "reconciler"
    assert not all_of(docs, "ServiceAccount") and not all_of(docs, "PodDisruptionBudget")


@pytest.mark.parametrize("case", [c for c in CASES if any(
    yaml.safe_load(p.read_text()).get("serviceMonitor", {}).get("enabled") for p in CASES[c])])
def test_service_monitor_selects_the_service(case: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    monitor = only(rendered[case], "ServiceMonitor")
    service = only(rendered[case], "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [tools.NAMESPACE]}
    ports = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in ports and endpoint["path"] == "/metrics"


def rule_file(docs: list[dict[str, Any]], directory: Path) -> Path:
    rule = only(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    path = directory / "alerts.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def test_prometheus_rule_is_the_tested_rules_file(rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    # With default settings the chart's rules are exactly deploy/prometheus/alerts.yaml:
    # the same promtool unit tests pass against them.
    path = rule_file(rendered["ha"], tmp_path)
    source = yaml.safe_load((tools.REPO / "deploy" / "prometheus" / "alerts.yaml").read_text())
    assert yaml.safe_load(path.read_text()) == source
    (tmp_path / "alerts_test.yaml").write_text((tools.REPO / "deploy" / "prometheus" / "alerts_test.yaml").read_text())
    result = tools.run([tools.promtool(), "test", "rules", "alerts_test.yaml"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_rule_follows_values(tmp_path: Path) -> None:
    docs = tools.render([tools.EXAMPLES / "vertex-values.yaml"],
                        ["config.interval=1m", "prometheusRule.additionalLabels.team=ml-platform",
                         "prometheusRule.runbookBaseUrl=https://wiki.example.com/reconciler"])
    path = rule_file(docs, tmp_path)
    result = tools.run([tools.promtool(), "check", "rules", path])
    assert result.returncode == 0, result.stdout + result.stderr
    rules = {r["alert"]: r for r in yaml.safe_load(path.read_text())["groups"][0]["rules"]}
    assert rules["ScheduleReconcilerDriftPresent"]["for"] == "2h"
    assert rules["ScheduleReconcilerTargetDown"]["for"] == "15m"
    assert rules["ScheduleReconcilerNoRecentSuccess"]["expr"].endswith("> 3 * 60")
    for rule in rules.values():
        assert rule["labels"]["team"] == "ml-platform" and rule["labels"]["severity"]
        assert rule["annotations"]["runbook_url"].startswith("https://wiki.example.com/reconciler#")


def test_interval_the_chart_cannot_convert_is_refused() -> None:
    result = tools.template([], ["prometheusRule.enabled=true", "config.interval=1h30m"])
    assert result.returncode != 0
    assert "config.interval" in result.stderr


def test_dashboard_configmap(rendered: dict[str, list[dict[str, Any]]]) -> None:
    configmap = only(rendered["default"], "ConfigMap", "-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    committed = (tools.CHART / "dashboards" / "schedule-reconciler.json").read_text()
    assert json.loads(configmap["data"]["schedule-reconciler.json"]) == json.loads(committed)
