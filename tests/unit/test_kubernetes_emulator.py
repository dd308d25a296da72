"""The Kubernetes emulator driven by the real `kubernetes` client: typed objects, Status errors, paging."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from providers.emulators.kubernetes import (
    KubernetesEmulator,
    plain_cron_job,
    sanitize_label,
    zenml_cron_job,
    zenml_cron_job_name,
)

TIMEOUT = (5, 5)
NAMESPACE = "zenml"


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
    emulator.faults.clear()
    emulator.log.clear()
    yield emulator


def api_client(emulator: KubernetesEmulator, token: str | None = None) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    configuration.host = emulator.url
    if token:
        configuration.api_key["authorization"] = token
        configuration.api_key_prefix["authorization"] = "Bearer"
    return k8s.ApiClient(configuration)


def batch(emulator: KubernetesEmulator) -> k8s.BatchV1Api:
    return k8s.BatchV1Api(api_client(emulator))


def test_a_zenml_cron_job_reads_back_as_the_clients_typed_object(cluster: KubernetesEmulator) -> None:
    component = uuid.uuid4().hex
    cluster.add("cronjobs", zenml_cron_job("training_pipeline", component, "0 9 * * *", NAMESPACE,
                                           name="a1b2c3d4-training-pipeline", time_zone="Europe/Berlin"))
    cron_job = batch(cluster).read_namespaced_cron_job("a1b2c3d4-training-pipeline", NAMESPACE,
                                                       _request_timeout=TIMEOUT)
    assert isinstance(cron_job, k8s.V1CronJob)
    assert cron_job.api_version == "batch/v1" and cron_job.kind == "CronJob"
    assert cron_job.spec.schedule == "0 9 * * *"
    assert cron_job.spec.time_zone == "Europe/Berlin"
    assert cron_job.spec.suspend is False
    assert cron_job.metadata.annotations["zenml.io/orchestrator"] == str(uuid.UUID(component))
    assert cron_job.metadata.labels["pipeline"] == "training-pipeline"
    assert cron_job.metadata.resource_version.isdigit()
    assert cron_job.metadata.creation_timestamp.tzinfo is not None
    assert cron_job.spec.job_template.spec.template.spec.containers[0].command[-1] == (
        "zenml.integrations.kubernetes.orchestrators.kubernetes_orchestrator_entrypoint")


def test_list_pages_with_limit_and_continue(cluster: KubernetesEmulator) -> None:
    for index in range(7):
        cluster.add("cronjobs", plain_cron_job(f"job-{index}", "*/5 * * * *", NAMESPACE))
    cluster.add("cronjobs", plain_cron_job("elsewhere", "*/5 * * * *", "other"))
    api = batch(cluster)
    first = api.list_namespaced_cron_job(NAMESPACE, limit=3, _request_timeout=TIMEOUT)
    assert isinstance(first, k8s.V1CronJobList)
    assert [c.metadata.name for c in first.items] == ["job-0", "job-1", "job-2"]
    assert first.metadata.remaining_item_count == 4
    names = [c.metadata.name for c in first.items]
    token = first.metadata._continue
    while token:
        page = api.list_namespaced_cron_job(NAMESPACE, limit=3, _continue=token, _request_timeout=TIMEOUT)
        names.extend(c.metadata.name for c in page.items)
        token = page.metadata._continue
    assert names == [f"job-{index}" for index in range(7)]
    raw = json.loads(api.list_namespaced_cron_job(NAMESPACE, _preload_content=False, _request_timeout=TIMEOUT).data)
    assert raw["kind"] == "CronJobList" and raw["apiVersion"] == "batch/v1"
    assert "continue" not in raw["metadata"] and raw["metadata"]["resourceVersion"].isdigit()
    assert "kind" not in raw["items"][0]  # list items come without their type


def test_a_compacted_continue_token_answers_410_expired(cluster: KubernetesEmulator) -> None:
    for index in range(4):
        cluster.add("cronjobs", plain_cron_job(f"job-{index}", "*/5 * * * *", NAMESPACE))
    api = batch(cluster)
    first = api.list_namespaced_cron_job(NAMESPACE, limit=2, _request_timeout=TIMEOUT)
    cluster.compact()
    with pytest.raises(ApiException) as raised:
        api.list_namespaced_cron_job(NAMESPACE, limit=2, _continue=first.metadata._continue,
                                     _request_timeout=TIMEOUT)
    assert raised.value.status == 410
    status = json.loads(raised.value.body)
    assert status["kind"] == "Status" and status["reason"] == "Expired" and status["code"] == 410
    with pytest.raises(ApiException) as invalid:
        api.list_namespaced_cron_job(NAMESPACE, limit=2, _continue="not-a-token", _request_timeout=TIMEOUT)
    assert invalid.value.status == 400


def test_patch_suspend_by_strategic_merge_merge_and_json_patch(cluster: KubernetesEmulator) -> None:
    cluster.add("cronjobs", plain_cron_job("job", "0 1 * * *", NAMESPACE))
    api = batch(cluster)
    before = api.read_namespaced_cron_job("job", NAMESPACE, _request_timeout=TIMEOUT)
    patched = api.patch_namespaced_cron_job("job", NAMESPACE, {"spec": {"suspend": True}}, _request_timeout=TIMEOUT)
    assert patched.spec.suspend is True
    assert int(patched.metadata.resource_version) > int(before.metadata.resource_version)
    assert patched.metadata.generation == before.metadata.generation + 1
    assert cluster.log.all()[-1].operation == "patch_schedule"
    resumed = api.patch_namespaced_cron_job("job", NAMESPACE, [{"op": "replace", "path": "/spec/suspend",
                                                                "value": False}], _request_timeout=TIMEOUT)
    assert resumed.spec.suspend is False
    merge = api_client(cluster).call_api(
        "/apis/batch/v1/namespaces/zenml/cronjobs/job", "PATCH", header_params={
            "Content-Type": "application/merge-patch+json", "Accept": "application/json"},
        body={"spec": {"suspend": True}, "metadata": {"labels": {"team": "ml"}}}, response_type="V1CronJob",
        _return_http_data_only=True, _request_timeout=TIMEOUT)
    assert merge.spec.suspend is True and merge.metadata.labels["team"] == "ml"
    with pytest.raises(ApiException) as stale:
        api.patch_namespaced_cron_job("job", NAMESPACE, {"metadata": {"resourceVersion": "1"},
                                                         "spec": {"suspend": False}}, _request_timeout=TIMEOUT)
    assert stale.value.status == 409


def test_delete_records_the_propagation_policy_and_404s_after(cluster: KubernetesEmulator) -> None:
    cluster.add("cronjobs", plain_cron_job("a", "0 1 * * *", NAMESPACE))
    cluster.add("cronjobs", plain_cron_job("b", "0 1 * * *", NAMESPACE))
    api = batch(cluster)
    status = api.delete_namespaced_cron_job("a", NAMESPACE, propagation_policy="Background",
                                            _request_timeout=TIMEOUT)
    assert status.status == "Success" and status.details.name == "a"
    api.delete_namespaced_cron_job("b", NAMESPACE, body=k8s.V1DeleteOptions(propagation_policy="Foreground"),
                                   _request_timeout=TIMEOUT)
    assert [(d["name"], d["propagationPolicy"]) for d in cluster.deletions] == [("a", "Background"),
                                                                                 ("b", "Foreground")]
    with pytest.raises(ApiException) as raised:
        api.read_namespaced_cron_job("a", NAMESPACE, _request_timeout=TIMEOUT)
    assert raised.value.status == 404
    status_body = json.loads(raised.value.body)
    assert status_body["reason"] == "NotFound"
    assert status_body["message"] == 'cronjobs.batch "a" not found'


def test_delete_preconditions_guard_against_a_changed_object(cluster: KubernetesEmulator) -> None:
    cluster.add("cronjobs", plain_cron_job("a", "0 1 * * *", NAMESPACE))
    api = batch(cluster)
    with pytest.raises(ApiException) as raised:
        api.delete_namespaced_cron_job("a", NAMESPACE, body=k8s.V1DeleteOptions(
            preconditions=k8s.V1Preconditions(resource_version="1")), _request_timeout=TIMEOUT)
    assert raised.value.status == 409
    assert cluster.object("cronjobs", NAMESPACE, "a") is not None


def test_create_validates_and_conflicts(cluster: KubernetesEmulator) -> None:
    api = batch(cluster)
    body = zenml_cron_job("training_pipeline", uuid.uuid4().hex, "0 9 * * *", NAMESPACE)
    created = api.create_namespaced_cron_job(NAMESPACE, body, _request_timeout=TIMEOUT)
    assert created.metadata.uid and created.spec.concurrency_policy == "Allow"
    with pytest.raises(ApiException) as exists:
        api.create_namespaced_cron_job(NAMESPACE, body, _request_timeout=TIMEOUT)
    assert exists.value.status == 409 and json.loads(exists.value.body)["reason"] == "AlreadyExists"
    too_long = plain_cron_job("x" * 53, "0 1 * * *", NAMESPACE)
    with pytest.raises(ApiException) as invalid:
        api.create_namespaced_cron_job(NAMESPACE, too_long, _request_timeout=TIMEOUT)
    assert invalid.value.status == 422 and json.loads(invalid.value.body)["reason"] == "Invalid"


def test_leases_create_get_replace_with_optimistic_concurrency(cluster: KubernetesEmulator) -> None:
    coordination = k8s.CoordinationV1Api(api_client(cluster))
    lease = k8s.V1Lease(metadata=k8s.V1ObjectMeta(name="schedule-reconciler"),
                        spec=k8s.V1LeaseSpec(holder_identity="pod-a", lease_duration_seconds=30))
    created = coordination.create_namespaced_lease(NAMESPACE, lease, _request_timeout=TIMEOUT)
    assert created.spec.holder_identity == "pod-a"
    with pytest.raises(ApiException) as exists:
        coordination.create_namespaced_lease(NAMESPACE, lease, _request_timeout=TIMEOUT)
    assert exists.value.status == 409
    current = coordination.read_namespaced_lease("schedule-reconciler", NAMESPACE, _request_timeout=TIMEOUT)
    current.spec.holder_identity = "pod-b"
    replaced = coordination.replace_namespaced_lease("schedule-reconciler", NAMESPACE, current,
                                                     _request_timeout=TIMEOUT)
    assert replaced.spec.holder_identity == "pod-b"
    assert int(replaced.metadata.resource_version) > int(current.metadata.resource_version)
    current.spec.holder_identity = "pod-c"  # still carries the old resourceVersion
    with pytest.raises(ApiException) as conflict:
        coordination.replace_namespaced_lease("schedule-reconciler", NAMESPACE, current, _request_timeout=TIMEOUT)
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["reason"] == "Conflict"
    with pytest.raises(ApiException) as missing:
        coordination.read_namespaced_lease("nobody", NAMESPACE, _request_timeout=TIMEOUT)
    assert missing.value.status == 404


def test_version_and_auth(cluster: KubernetesEmulator) -> None:
    info = k8s.VersionApi(api_client(cluster)).get_code(_request_timeout=TIMEOUT)
    assert info.major == "1" and info.git_version.startswith("v1.")
    cluster.tokens.add("sa-token")
    with pytest.raises(ApiException) as raised:
        k8s.BatchV1Api(api_client(cluster, "other")).list_namespaced_cron_job(NAMESPACE, _request_timeout=TIMEOUT)
    assert raised.value.status == 401 and json.loads(raised.value.body)["reason"] == "Unauthorized"
    k8s.BatchV1Api(api_client(cluster, "sa-token")).list_namespaced_cron_job(NAMESPACE, _request_timeout=TIMEOUT)
    assert cluster.tokens_seen[-2:] == ["other", "sa-token"]


def test_zenml_names_are_sanitized_like_zenmls() -> None:
    assert sanitize_label("-Training_Pipeline--v2-") == "training-pipeline-v2"
    assert zenml_cron_job_name("training_pipeline", hex8="0a1b2c3d") == "0a1b2c3d-training-pipeline"
    assert zenml_cron_job_name("p", prefix="nightly", hex8="0a1b2c3d") == "nightly-0a1b2c3d-p"
