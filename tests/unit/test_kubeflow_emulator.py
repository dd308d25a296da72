"""The KFP emulator read through kfp_server_api's own models: if they parse it, the wire shape is right."""

from __future__ import annotations

import json
from collections.abc import Iterator

import kfp_server_api
import pytest
from kfp_server_api.api.experiment_service_api import ExperimentServiceApi
from kfp_server_api.api.healthz_service_api import HealthzServiceApi
from kfp_server_api.api.recurring_run_service_api import RecurringRunServiceApi
from kfp_server_api.exceptions import ApiException

from providers.emulators.kubeflow import (
    KubeflowEmulator,
    seed_recurring_run,
    zenml_display_name,
    zenml_pipeline_spec,
)

TIMEOUT = (5, 5)


@pytest.fixture(scope="module")
def emulator() -> Iterator[KubeflowEmulator]:
    emulator = KubeflowEmulator()
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture()
def kfp(emulator: KubeflowEmulator) -> Iterator[KubeflowEmulator]:
    with emulator.lock:
        emulator.recurring_runs.clear()
        emulator.experiments.clear()
    emulator.tokens.clear()
    emulator.faults.clear()
    emulator.log.clear()
    yield emulator


def client(emulator: KubeflowEmulator) -> kfp_server_api.ApiClient:
    return kfp_server_api.ApiClient(kfp_server_api.Configuration(host=emulator.url))


def test_listing_parses_into_the_clients_models_with_every_field(kfp: KubeflowEmulator) -> None:
    experiment = kfp.experiment_named("training_pipeline")
    seeded = kfp.add_run(seed_recurring_run(zenml_display_name("training_pipeline"), experiment["experiment_id"],
                                            cron="0 0 9 * * *", start_time="2026-01-01T00:00:00Z"))
    kfp.add_run(seed_recurring_run("nightly", experiment["experiment_id"], interval_second=3600, enabled=False))
    api = RecurringRunServiceApi(client(kfp))
    response = api.recurring_run_service_list_recurring_runs(page_size=10, namespace="kubeflow",
                                                             _request_timeout=TIMEOUT)
    assert isinstance(response, kfp_server_api.V2beta1ListRecurringRunsResponse)
    assert response.total_size == 2
    assert response.next_page_token is None
    by_name = {r.display_name: r for r in response.recurring_runs}
    zenml = by_name[seeded["display_name"]]
    assert zenml.recurring_run_id == seeded["recurring_run_id"]
    assert zenml.status == "ENABLED"
    assert zenml.trigger.cron_schedule.cron == "0 0 9 * * *"
    assert zenml.trigger.cron_schedule.start_time.year == 2026
    assert zenml.experiment_id == experiment["experiment_id"]
    assert zenml.max_concurrency == "1"
    assert zenml.pipeline_spec["deploymentSpec"]["executors"]["exec-trainer"]["container"]["command"] == [
        "python", "-m", "zenml.entrypoints.entrypoint"]
    periodic = by_name["nightly"]
    assert periodic.status == "DISABLED"
    assert periodic.trigger.periodic_schedule.interval_second == "3600"


def test_the_list_key_is_camel_case_and_everything_else_snake_case(kfp: KubeflowEmulator) -> None:
    experiment = kfp.experiment_named("p")
    kfp.add_run(seed_recurring_run("p-1", experiment["experiment_id"], cron="0 0 * * * *"))
    response = RecurringRunServiceApi(client(kfp)).recurring_run_service_list_recurring_runs(
        _preload_content=False, _request_timeout=TIMEOUT)
    body = json.loads(response.data)
    assert set(body) == {"recurringRuns", "total_size"}
    assert {"recurring_run_id", "display_name", "created_at", "experiment_id", "no_catchup"} <= set(
        body["recurringRuns"][0])


def test_pages_are_capped_at_200_and_chain_by_token(kfp: KubeflowEmulator) -> None:
    experiment = kfp.experiment_named("p")
    for index in range(450):
        kfp.add_run(seed_recurring_run(f"p-{index:03d}", experiment["experiment_id"], cron="0 0 * * * *"))
    api = RecurringRunServiceApi(client(kfp))
    names: list[str] = []
    sizes: list[int] = []
    token = None
    while True:
        page = api.recurring_run_service_list_recurring_runs(page_size=1000, page_token=token,
                                                             sort_by="display_name", _request_timeout=TIMEOUT)
        sizes.append(len(page.recurring_runs))
        names.extend(r.display_name for r in page.recurring_runs)
        token = page.next_page_token
        if not token:
            break
    assert sizes == [200, 200, 50]
    assert names == [f"p-{index:03d}" for index in range(450)]


def test_filters_by_namespace_and_experiment_and_sorts_descending(kfp: KubeflowEmulator) -> None:
    first = kfp.experiment_named("a")
    second = kfp.experiment_named("b")
    other = kfp.experiment_named("a", namespace="team-x")
    kfp.add_run(seed_recurring_run("a-1", first["experiment_id"], cron="0 0 * * * *"))
    kfp.add_run(seed_recurring_run("a-2", first["experiment_id"], cron="0 0 * * * *"))
    kfp.add_run(seed_recurring_run("b-1", second["experiment_id"], cron="0 0 * * * *"))
    kfp.add_run(seed_recurring_run("x-1", other["experiment_id"], "team-x", cron="0 0 * * * *"))
    api = RecurringRunServiceApi(client(kfp))
    in_kubeflow = api.recurring_run_service_list_recurring_runs(namespace="kubeflow", sort_by="display_name desc",
                                                                _request_timeout=TIMEOUT)
    assert [r.display_name for r in in_kubeflow.recurring_runs] == ["b-1", "a-2", "a-1"]
    in_a = api.recurring_run_service_list_recurring_runs(experiment_id=first["experiment_id"],
                                                         _request_timeout=TIMEOUT)
    assert sorted(r.display_name for r in in_a.recurring_runs) == ["a-1", "a-2"]
    experiments = ExperimentServiceApi(client(kfp)).experiment_service_list_experiments(
        namespace="team-x", _request_timeout=TIMEOUT)
    assert [e.experiment_id for e in experiments.experiments] == [other["experiment_id"]]


def test_errors_carry_the_api_servers_body(kfp: KubeflowEmulator) -> None:
    api = RecurringRunServiceApi(client(kfp))
    with pytest.raises(ApiException) as raised:
        api.recurring_run_service_get_recurring_run("no-such-run", _request_timeout=TIMEOUT)
    assert raised.value.status == 404
    body = json.loads(raised.value.body)
    assert set(body) == {"error", "code", "message", "details"}
    assert body["code"] == 5  # gRPC NOT_FOUND
    with pytest.raises(ApiException) as bad_sort:
        api.recurring_run_service_list_recurring_runs(sort_by="nonsense", _request_timeout=TIMEOUT)
    assert bad_sort.value.status == 400
    with pytest.raises(ApiException) as bad_token:
        api.recurring_run_service_list_recurring_runs(page_token="garbage", _request_timeout=TIMEOUT)
    assert bad_token.value.status == 400


def test_enable_disable_delete_and_create(kfp: KubeflowEmulator) -> None:
    experiment = kfp.experiment_named("training_pipeline")
    api = RecurringRunServiceApi(client(kfp))
    body = kfp_server_api.V2beta1RecurringRun(
        display_name=zenml_display_name("training_pipeline"), experiment_id=experiment["experiment_id"],
        mode="ENABLE", pipeline_spec=zenml_pipeline_spec("training-pipeline"),
        trigger=kfp_server_api.V2beta1Trigger(periodic_schedule=kfp_server_api.V2beta1PeriodicSchedule(
            interval_second=900)),
        max_concurrency=1, no_catchup=True)
    created = api.recurring_run_service_create_recurring_run(body, _request_timeout=TIMEOUT)
    assert created.status == "ENABLED"
    assert created.namespace == "kubeflow"
    assert created.trigger.periodic_schedule.interval_second == "900"
    api.recurring_run_service_disable_recurring_run(created.recurring_run_id, _request_timeout=TIMEOUT)
    assert api.recurring_run_service_get_recurring_run(created.recurring_run_id,
                                                       _request_timeout=TIMEOUT).status == "DISABLED"
    api.recurring_run_service_enable_recurring_run(created.recurring_run_id, _request_timeout=TIMEOUT)
    assert api.recurring_run_service_get_recurring_run(created.recurring_run_id,
                                                       _request_timeout=TIMEOUT).status == "ENABLED"
    api.recurring_run_service_delete_recurring_run(created.recurring_run_id, _request_timeout=TIMEOUT)
    assert kfp.recurring_runs == {}
    with pytest.raises(ApiException) as raised:
        api.recurring_run_service_delete_recurring_run(created.recurring_run_id, _request_timeout=TIMEOUT)
    assert raised.value.status == 404


def test_create_rejects_a_run_with_two_triggers(kfp: KubeflowEmulator) -> None:
    experiment = kfp.experiment_named("p")
    body = {"display_name": "x", "experiment_id": experiment["experiment_id"], "pipeline_spec": {"a": 1},
            "trigger": {"cron_schedule": {"cron": "0 0 * * * *"}, "periodic_schedule": {"interval_second": "60"}}}
    with pytest.raises(ApiException) as raised:
        RecurringRunServiceApi(client(kfp)).recurring_run_service_create_recurring_run(body, _request_timeout=TIMEOUT)
    assert raised.value.status == 400


def test_auth_is_enforced_when_tokens_are_set_and_healthz_is_open(kfp: KubeflowEmulator) -> None:
    kfp.tokens.add("good-token")
    configuration = kfp_server_api.Configuration(host=kfp.url)
    configuration.api_key["authorization"] = "wrong-token"
    configuration.api_key_prefix["authorization"] = "Bearer"
    api_client = kfp_server_api.ApiClient(configuration)
    with pytest.raises(ApiException) as raised:
        RecurringRunServiceApi(api_client).recurring_run_service_list_recurring_runs(_request_timeout=TIMEOUT)
    assert raised.value.status == 401
    assert json.loads(raised.value.body)["code"] == 16
    health = HealthzServiceApi(api_client).healthz_service_get_healthz(_request_timeout=TIMEOUT)
    assert health.multi_user is True
    configuration.api_key["authorization"] = "good-token"
    RecurringRunServiceApi(api_client).recurring_run_service_list_recurring_runs(_request_timeout=TIMEOUT)
    assert kfp.tokens_seen[-2:] == ["wrong-token", "good-token"]


def test_experiments_get_and_create_conflict(kfp: KubeflowEmulator) -> None:
    api = ExperimentServiceApi(client(kfp))
    created = api.experiment_service_create_experiment({"display_name": "training_pipeline", "namespace": "kubeflow"},
                                                       _request_timeout=TIMEOUT)
    assert isinstance(created, kfp_server_api.V2beta1Experiment)
    assert created.storage_state == "AVAILABLE"
    fetched = api.experiment_service_get_experiment(created.experiment_id, _request_timeout=TIMEOUT)
    assert fetched.display_name == "training_pipeline"
    with pytest.raises(ApiException) as raised:
        api.experiment_service_create_experiment({"display_name": "training_pipeline", "namespace": "kubeflow"},
                                                 _request_timeout=TIMEOUT)
    assert raised.value.status == 409


def test_zenml_names_follow_the_orchestrator() -> None:
    assert zenml_display_name("training_pipeline", "0" * 32) == "training-pipeline-" + "0" * 32
    assert zenml_display_name("training_pipeline", "0" * 32, style="underscore") == "training_pipeline_" + "0" * 32
