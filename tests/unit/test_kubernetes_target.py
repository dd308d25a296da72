"""KubernetesTarget through the real `kubernetes` client against the Kubernetes emulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.emulators.base import Fault
from providers.emulators.kubernetes import KubernetesEmulator, plain_cron_job, zenml_cron_job
from providers.kubernetes import KubernetesError, KubernetesTarget
from reconciler.config import ConfigError
from reconciler.config import KubernetesTarget as KubernetesConfig
from reconciler.model import ListingError, LiveState
from tests.support.recorder import Recorder

NAMESPACE = "zenml"
COMPONENT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture(scope="module")
def emulator() -> Iterator[KubernetesEmulator]:
    emulator = KubernetesEmulator()
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture()
def cluster(emulator: KubernetesEmulator) -> Iterator[KubernetesEmulator]:
    with emulator.lock:
        emulator.objects.clear()
    emulator.deletions.clear()
    emulator.tokens.clear()
    emulator.tokens_seen.clear()
    emulator.faults.clear()
    emulator.log.clear()
    yield emulator
    emulator.faults.clear()


def target(emulator: KubernetesEmulator, recorder: Recorder | None = None, **settings: Any) -> KubernetesTarget:
    values: dict[str, Any] = {"type": "kubernetes", "name": "k8s", "namespace": NAMESPACE, "host": emulator.url,
                              "timeout": 5, "max_retries": 2}
    values.update(settings)
    return KubernetesTarget(KubernetesConfig(**values), recorder or Recorder())


def seed_many(cluster: KubernetesEmulator, count: int) -> list[str]:
    names = []
    for index in range(count):
        obj = cluster.add("cronjobs", zenml_cron_job(f"pipeline_{index:03d}", COMPONENT, "0 9 * * *", NAMESPACE,
                                                     name=f"0a1b2c3d-pipeline-{index:03d}"))
        names.append(obj["metadata"]["name"])
    return names


def test_a_paged_listing_makes_one_request_per_page(cluster: KubernetesEmulator) -> None:
    names = seed_many(cluster, 25)
    cluster.add("cronjobs", plain_cron_job("elsewhere", "0 1 * * *", "other"))
    recorder = Recorder()
    live = target(cluster, recorder, page_size=10).list_schedules()
    assert sorted(s.name for s in live) == sorted(names)
    assert cluster.log.count("list_schedules") == 3
    assert len(cluster.log.all()) == 3  # no request per schedule
    assert [r.query.get("limit") for r in cluster.log.all()] == [["10"]] * 3
    assert "continue" not in cluster.log.all()[0].query and "continue" in cluster.log.all()[1].query
    assert recorder.calls == [("list_schedules", "200")] * 3
    assert cluster.log.mutations() == []


def test_fields_map_onto_the_live_schedule(cluster: KubernetesEmulator) -> None:
    zenml = cluster.add("cronjobs", zenml_cron_job("training_pipeline", str(uuid.UUID(COMPONENT)), "30 9 * * 1-5",
                                                   NAMESPACE, name="a1b2c3d4-training-pipeline", suspend=True,
                                                   created="2026-01-01T00:00:00Z"))
    cluster.add("cronjobs", zenml_cron_job("berlin", COMPONENT, "0 6 * * *", NAMESPACE, name="b-berlin",
                                           time_zone="Europe/Berlin"))
    cluster.add("cronjobs", plain_cron_job("backup", "0 1 * * *", NAMESPACE, labels={"app": "backup"}))
    provider = target(cluster)
    live = {s.name: s for s in provider.list_schedules()}

    made = live["a1b2c3d4-training-pipeline"]
    assert made.native_id == "zenml/a1b2c3d4-training-pipeline"
    assert made.state is LiveState.PAUSED
    assert made.cron == "30 9 * * 1-5"
    assert made.created == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert made.component_id == COMPONENT
    assert made.zenml_marks == frozenset({"annotation:zenml.io/orchestrator", "entrypoint"})
    assert made.labels["pipeline"] == "training-pipeline"
    assert made.labels["zenml.io/orchestrator"] == str(uuid.UUID(COMPONENT))
    # A listing carries no API object (memory at scale); get() does, for the audit snapshot.
    assert made.raw == {}
    snapshot = provider.get(made.native_id)
    assert snapshot is not None
    assert snapshot.raw["apiVersion"] == "batch/v1" and snapshot.raw["kind"] == "CronJob"
    assert snapshot.raw["metadata"]["uid"] == zenml["metadata"]["uid"]
    assert snapshot.raw["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["name"] == "main"
    assert replace(snapshot, raw={}) == made

    assert live["b-berlin"].cron == "CRON_TZ=Europe/Berlin 0 6 * * *"
    assert live["b-berlin"].state is LiveState.ENABLED

    plain = live["backup"]
    assert plain.component_id is None
    assert plain.zenml_marks == frozenset()
    assert plain.labels == {"app": "backup"}


def test_a_bad_component_annotation_gives_no_component_id(cluster: KubernetesEmulator) -> None:
    obj = zenml_cron_job("p", COMPONENT, "0 9 * * *", NAMESPACE, name="x-p")
    obj["metadata"]["annotations"]["zenml.io/orchestrator"] = "not-a-uuid"
    cluster.add("cronjobs", obj)
    [live] = target(cluster).list_schedules()
    assert live.component_id is None
    assert "annotation:zenml.io/orchestrator" in live.zenml_marks


def test_an_expired_continue_token_restarts_the_listing(cluster: KubernetesEmulator) -> None:
    names = seed_many(cluster, 25)
    compacted: list[bool] = []

    def compact_after_first_page(operation: str, code: str) -> None:
        if not compacted:
            compacted.append(True)
            cluster.compact()

    recorder = Recorder(after=compact_after_first_page)
    live = target(cluster, recorder, page_size=10).list_schedules()
    assert sorted(s.name for s in live) == sorted(names)
    assert recorder.codes("list_schedules") == ["200", "410", "200", "200", "200"]


def test_410_on_every_continue_fails_after_two_restarts(cluster: KubernetesEmulator) -> None:
    seed_many(cluster, 25)
    cluster.faults.set("list_schedules", Fault(status=410, after=1))
    recorder = Recorder()
    with pytest.raises(ListingError) as raised:
        target(cluster, recorder, page_size=10).list_schedules()
    assert "410" in str(raised.value)
    assert recorder.codes("list_schedules") == ["200", "410", "410", "410"]


def test_pause_resume_delete_and_not_found(cluster: KubernetesEmulator) -> None:
    [name] = seed_many(cluster, 1)
    provider = target(cluster)
    native_id = f"{NAMESPACE}/{name}"
    assert provider.pause(native_id) is True
    assert cluster.object("cronjobs", NAMESPACE, name)["spec"]["suspend"] is True
    paused = provider.get(native_id)
    assert paused is not None and paused.state is LiveState.PAUSED
    assert provider.resume(native_id) is True
    assert cluster.object("cronjobs", NAMESPACE, name)["spec"]["suspend"] is False
    assert provider.delete(native_id) is True
    assert cluster.deletions == [{"resource": "cronjobs", "namespace": NAMESPACE, "name": name,
                                  "propagationPolicy": "Background"}]
    assert provider.get(native_id) is None
    assert provider.delete(native_id) is False
    assert provider.pause(native_id) is False
    assert provider.resume(native_id) is False
    patches = [r for r in cluster.log.all() if r.operation == "patch_schedule"]
    assert [r.body for r in patches] == [{"spec": {"suspend": True}}, {"spec": {"suspend": False}},
                                         {"spec": {"suspend": True}}, {"spec": {"suspend": False}}]


def test_the_propagation_policy_is_configurable(cluster: KubernetesEmulator) -> None:
    [name] = seed_many(cluster, 1)
    provider = KubernetesTarget(KubernetesConfig(type="kubernetes", name="k8s", namespace=NAMESPACE,
                                                 host=cluster.url, propagation_policy="Foreground"), Recorder())
    assert provider.delete(f"{NAMESPACE}/{name}") is True
    assert cluster.deletions[-1]["propagationPolicy"] == "Foreground"


def test_create_restores_a_deleted_cron_job_from_its_snapshot(cluster: KubernetesEmulator) -> None:
    [name] = seed_many(cluster, 1)
    provider = target(cluster)
    snapshot = provider.get(f"{NAMESPACE}/{name}")
    assert snapshot is not None
    provider.delete(snapshot.native_id)
    restored = provider.create(snapshot.raw)
    assert restored.native_id == snapshot.native_id
    assert restored.raw["metadata"]["uid"] != snapshot.raw["metadata"]["uid"]
    assert restored.cron == snapshot.cron
    assert restored.component_id == COMPONENT
    assert restored.raw["spec"]["jobTemplate"] == snapshot.raw["spec"]["jobTemplate"]
    with pytest.raises(KubernetesError) as exists:
        provider.create(snapshot.raw)
    assert exists.value.status == 409


def test_token_file_rotation_is_followed(cluster: KubernetesEmulator, tmp_path: Path) -> None:
    seed_many(cluster, 3)
    cluster.tokens.update({"sa-token-1", "sa-token-2"})
    token_file = tmp_path / "token"
    token_file.write_text("sa-token-1")
    provider = target(cluster, token_file=str(token_file))
    assert len(provider.list_schedules()) == 3
    token_file.write_text("sa-token-2")
    assert len(provider.list_schedules()) == 3
    assert cluster.tokens_seen == ["sa-token-1", "sa-token-2"]


def test_401_is_a_listing_error_without_the_token(cluster: KubernetesEmulator, tmp_path: Path) -> None:
    seed_many(cluster, 3)
    cluster.tokens.add("the-right-one")
    token_file = tmp_path / "token"
    token_file.write_text("leaked-secret-token-9a8b")
    with pytest.raises(ListingError) as raised:
        target(cluster, token_file=str(token_file)).list_schedules()
    message = str(raised.value)
    assert "401" in message and "leaked-secret-token-9a8b" not in message and "\n" not in message


def test_403_is_a_listing_error_naming_rbac(cluster: KubernetesEmulator) -> None:
    seed_many(cluster, 3)
    cluster.faults.set("list_schedules", Fault(status=403))
    recorder = Recorder()
    with pytest.raises(ListingError) as raised:
        target(cluster, recorder).list_schedules()
    assert "403" in str(raised.value) and "RBAC" in str(raised.value)
    assert recorder.codes("list_schedules") == ["403"]


def test_latency_within_the_timeout_is_fine(cluster: KubernetesEmulator) -> None:
    seed_many(cluster, 3)
    cluster.faults.set("list_schedules", Fault(latency=0.3))
    assert len(target(cluster, timeout=5).list_schedules()) == 3


def test_5xx_then_success_is_retried(cluster: KubernetesEmulator) -> None:
    seed_many(cluster, 3)
    cluster.faults.set("list_schedules", Fault(status=500, times=2))
    recorder = Recorder()
    assert len(target(cluster, recorder).list_schedules()) == 3
    assert recorder.codes("list_schedules") == ["500", "500", "200"]


def test_429_retry_after_is_honoured(cluster: KubernetesEmulator) -> None:
    seed_many(cluster, 3)
    cluster.faults.set("list_schedules", Fault(status=429, retry_after=0.2, times=1))
    recorder = Recorder()
    assert len(target(cluster, recorder, max_retries=1).list_schedules()) == 3
    assert recorder.codes("list_schedules") == ["429", "200"]


def test_a_hang_past_the_timeout_is_a_listing_error(cluster: KubernetesEmulator) -> None:
    seed_many(cluster, 3)
    cluster.faults.set("list_schedules", Fault(hang=5))
    recorder = Recorder()
    with pytest.raises(ListingError) as raised:
        target(cluster, recorder, timeout=0.5, max_retries=1).list_schedules()
    assert "no answer" in str(raised.value)
    assert recorder.codes("list_schedules") == ["timeout", "timeout"]


def test_a_malformed_page_is_a_listing_error(cluster: KubernetesEmulator) -> None:
    seed_many(cluster, 25)
    cluster.faults.set("list_schedules", Fault(malformed=True, after=1))
    with pytest.raises(ListingError) as raised:
        target(cluster, page_size=10).list_schedules()
    assert "not valid JSON" in str(raised.value)


def test_failure_on_page_two_fails_the_whole_listing(cluster: KubernetesEmulator) -> None:
    seed_many(cluster, 25)
    cluster.faults.set("list_schedules", Fault(status=503, after=1))
    recorder = Recorder()
    with pytest.raises(ListingError):
        target(cluster, recorder, page_size=10, max_retries=1).list_schedules()
    assert recorder.codes("list_schedules") == ["200", "503", "503"]
    assert cluster.log.mutations() == []


def test_check_and_endpoint(cluster: KubernetesEmulator) -> None:
    provider = target(cluster)
    provider.check()
    assert provider.endpoint == cluster.url
    assert provider.flavor == "kubernetes"
    cluster.faults.set("list_schedules", Fault(status=403))
    with pytest.raises(ListingError):
        provider.check()


def test_a_kubeconfig_with_a_context_is_used(cluster: KubernetesEmulator, tmp_path: Path) -> None:
    seed_many(cluster, 2)
    cluster.tokens.add("kubeconfig-token")
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(f"""
apiVersion: v1
kind: Config
clusters:
- name: emulated
  cluster: {{server: "{cluster.url}"}}
users:
- name: reconciler
  user: {{token: kubeconfig-token}}
contexts:
- name: emulated
  context: {{cluster: emulated, user: reconciler, namespace: {NAMESPACE}}}
current-context: emulated
""")
    provider = KubernetesTarget(KubernetesConfig(type="kubernetes", name="k8s", namespace=NAMESPACE,
                                                 kubeconfig=str(kubeconfig), context="emulated"), Recorder())
    assert len(provider.list_schedules()) == 2
    assert cluster.tokens_seen == ["kubeconfig-token"]


def test_a_missing_kubeconfig_is_one_config_error_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        KubernetesTarget(KubernetesConfig(type="kubernetes", name="k8s", namespace=NAMESPACE,
                                          kubeconfig=str(tmp_path / "missing")), Recorder())
    assert "\n" not in str(raised.value) and "k8s" in str(raised.value)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(min_value=0, max_value=30), page_size=st.integers(min_value=1, max_value=12))
def test_any_listing_is_complete_in_ceil_pages(cluster: KubernetesEmulator, count: int, page_size: int) -> None:
    with cluster.lock:
        cluster.objects.clear()
    cluster.log.clear()
    names = seed_many(cluster, count)
    live = target(cluster, page_size=page_size).list_schedules()
    assert sorted(s.name for s in live) == names
    assert cluster.log.count("list_schedules") == max(1, -(-count // page_size))
