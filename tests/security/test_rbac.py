"""The Helm chart's RBAC grants exactly what the daemon uses, and nothing more.

The oracle is not a list typed into this test: it is the Kubernetes API requests the daemon's own
providers make against the Kubernetes emulator, turned into RBAC (resource, verb) pairs. A
kubernetes target lists, re-reads, and pauses (`patch`) or deletes (`delete`) CronJobs; the
Lease elector creates, reads and updates its one Lease. Then every values example the chart ships,
and variants of them, is rendered by a real Helm and its Roles compared with that oracle:

- per namespace of an in-cluster kubernetes target: cronjobs `get`, `list`, plus `patch` where a
  target there pauses and `delete` where one deletes, the action verbs only while
  `cleanup.enabled` (approval is a runtime flag re-read from the ConfigMap without a Helm
  upgrade, so the chart cannot follow it: `enabled` is the last switch Helm sees);
- leases in the release namespace: `create` (Kubernetes cannot scope a create by name) and
  `get`/`update` on the one Lease the rendered config names, only with the kubernetes backend;
- nothing else: no ClusterRole or ClusterRoleBinding, no `*`, no other resource (no secrets, no
  configmaps, no pods), no `create` on cronjobs (that is `restore`, run by an operator with
  their own credentials), bindings only to the daemon's ServiceAccount.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from providers import build_elector
from providers.emulators.kubernetes import KubernetesEmulator, zenml_cron_job
from providers.kubernetes import KubernetesTarget
from reconciler.config import KubernetesTarget as KubernetesConfig
from reconciler.config import LeaderElectionConfig
from tests.deploy import tools

pytestmark = pytest.mark.integration

EXAMPLES = tools.EXAMPLES
# name -> (values files, --set items)
CASES: dict[str, tuple[list[Path], list[str]]] = {
    "default": ([], []),
    "ha": ([EXAMPLES / "ha-values.yaml"], []),
    "ha-database-lease": ([EXAMPLES / "ha-values.yaml"], ["leaderElection.backend=database"]),
    "sidecar": ([EXAMPLES / "zenml-sidecar-values.yaml"], []),
    "sidecar-cleanup": ([EXAMPLES / "zenml-sidecar-values.yaml"], ["config.cleanup.enabled=true"]),
    "vertex": ([EXAMPLES / "vertex-values.yaml"], []),
    "kubeflow": ([EXAMPLES / "kubeflow-values.yaml"], []),
    "airflow": ([EXAMPLES / "airflow-values.yaml"], []),
    "kubernetes": ([EXAMPLES / "kubernetes-values.yaml"], []),
    "kubernetes-cleanup-off": ([EXAMPLES / "kubernetes-values.yaml"], ["config.cleanup.enabled=false"]),
    "kubernetes-all-pause": ([EXAMPLES / "kubernetes-values.yaml"], ["config.cleanup.action=pause"]),
    "kubernetes-no-rbac": ([EXAMPLES / "kubernetes-values.yaml"], ["rbac.create=false"]),
}
VERB_OF = {("GET", True): "list", ("GET", False): "get", ("POST", True): "create", ("PUT", False): "update",
           ("PATCH", False): "patch", ("DELETE", False): "delete"}


def _verbs(emulator: KubernetesEmulator, resource: str) -> set[str]:
    """The RBAC verbs of the requests on `resource` in the emulator's log (collection vs. item by path)."""
    found = set()
    for request in emulator.log.all():
        parts = request.path.rstrip("/").split("/")
        if resource not in parts:
            continue
        collection = parts[-1] == resource
        found.add(VERB_OF[(request.method, collection)])
    return found


@pytest.fixture(scope="module")
def used() -> Iterator[dict[str, set[str]]]:
    """What the daemon's providers really ask of the API server, by (what, action)."""
    emulator = KubernetesEmulator()
    emulator.start(0)
    try:
        found: dict[str, set[str]] = {}
        target = KubernetesTarget(KubernetesConfig(name="k8s", type="kubernetes", namespace="zenml",
                                                   host=emulator.url, max_retries=0))
        for number, action in enumerate(("pause", "delete")):
            name = f"orphan-{number}"
            emulator.add("cronjobs", zenml_cron_job("p", "0" * 32, "0 1 * * *", "zenml", name=name))
            emulator.log.clear()
            target.list_schedules()  # every cycle
            target.get(f"zenml/{name}")  # the re-read just before an action, and the verify after it
            getattr(target, action)(f"zenml/{name}")
            found[action] = _verbs(emulator, "cronjobs")
        target.close()
        emulator.log.clear()
        config = LeaderElectionConfig(enabled=True, backend="kubernetes", lease_name="zr-schedule-reconciler",
                                      namespace="zenml", host=emulator.url)
        elector = build_elector(config, None, "replica-1")  # type: ignore[arg-type] - no store for a Lease
        assert elector.acquire() and elector.acquire()  # take, then renew
        elector.release()
        found["lease"] = _verbs(emulator, "leases")
        yield found
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {case: tools.render(files, sets) for case, (files, sets) in CASES.items()}


def _config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    maps = [d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {})]
    assert len(maps) == 1
    return yaml.safe_load(maps[0]["data"]["config.yaml"])


def _expected(docs: list[dict[str, Any]], used: dict[str, set[str]], rbac: bool) -> dict[tuple[str, str], set[str]]:
    """(namespace, resource[/name]) -> verbs, from the rendered config and what the providers use."""
    if not rbac:
        return {}
    config = _config(docs)
    cleanup = config.get("cleanup", {})
    expected: dict[tuple[str, str], set[str]] = {}
    for target in config.get("targets", []):
        if target["type"] != "kubernetes" or target.get("kubeconfig") or target.get("host"):
            continue  # another cluster: its RBAC is not this chart's
        verbs = expected.setdefault((target["namespace"], "cronjobs"), {"get", "list"})
        assert verbs <= used["pause"] and verbs <= used["delete"]  # reading is part of both
        if cleanup.get("enabled"):
            action = target.get("action") or cleanup.get("action") or "delete"
            verbs |= used[action]
    election = config.get("leader_election", {})
    if election.get("enabled") and election.get("backend") == "kubernetes":
        namespace = election["namespace"]
        expected[(namespace, "leases")] = used["lease"] & {"create"}
        expected[(namespace, f"leases/{election['lease_name']}")] = used["lease"] - {"create"}
    return expected


def _granted(docs: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for role in (d for d in docs if d["kind"] == "Role"):
        for rule in role["rules"]:
            assert set(rule) <= {"apiGroups", "resources", "resourceNames", "verbs"}, rule  # no nonResourceURLs
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
            assert rule["apiGroups"] in (["batch"], ["coordination.k8s.io"]), rule
            for resource in rule["resources"]:
                for name in rule.get("resourceNames") or [None]:
                    key = (role["metadata"]["namespace"], resource if name is None else f"{resource}/{name}")
                    granted.setdefault(key, set()).update(rule["verbs"])
    return granted


def test_the_oracle_is_what_the_providers_use(used: dict[str, set[str]]) -> None:
    """A sanity check on the oracle itself, so that an empty log cannot make every chart look right."""
    assert used["pause"] == {"list", "get", "patch"}
    assert used["delete"] == {"list", "get", "delete"}
    assert used["lease"] == {"get", "create", "update"}


@pytest.mark.parametrize("case", CASES)
def test_roles_grant_exactly_what_the_daemon_uses(case: str, rendered: dict[str, list[dict[str, Any]]],
                                                  used: dict[str, set[str]]) -> None:
    docs = rendered[case]
    _, sets = CASES[case]
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert _granted(docs) == _expected(docs, used, rbac="rbac.create=false" not in sets)
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "Role"}
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in bindings} == roles
    account = "zenml" if case.startswith("sidecar") else "zr-schedule-reconciler"
    for binding in bindings:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": binding["roleRef"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": tools.NAMESPACE}]


def test_the_cases_cover_every_shape(rendered: dict[str, list[dict[str, Any]]], used: dict[str, set[str]]) -> None:
    """Each kind of grant appears in some case, so the equality above is not vacuous."""
    every = {key[1].split("/")[0]: verbs for docs in rendered.values() for key, verbs in _granted(docs).items()}
    assert set(every) == {"cronjobs", "leases"}
    grants = [_granted(docs) for docs in rendered.values()]
    assert any(("ml-batch", "cronjobs") in g and "patch" in g[("ml-batch", "cronjobs")] for g in grants)
    assert any(("zenml", "cronjobs") in g and "delete" in g[("zenml", "cronjobs")] for g in grants)
    assert _granted(rendered["kubernetes-cleanup-off"]) == {("zenml", "cronjobs"): {"get", "list"},
                                                            ("ml-batch", "cronjobs"): {"get", "list"}}
    assert _granted(rendered["kubernetes-no-rbac"]) == {}
