"""Hostile target payloads through each target's own mapping: Vertex schedules, KFP recurring
runs, Kubernetes CronJobs, Airflow DAGs (v2 and v1 JSON).

What this proves: for any object the API may answer (missing fields, wrong types, huge and
unicode names, label-injection names, exotic or invalid crons, time zones valid or not,
intervals of zero or below), the mapping either gives a LiveSchedule with exactly the
model's types (so the diff, the metrics and the report cannot crash on it) or fails in the
provider's documented way, which fails the whole listing (ListingError: the target is
unknown, never empty). And the diff then takes any such live schedule without crashing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from google.cloud.aiplatform_v1.types import CreatePipelineJobRequest, ListSchedulesResponse, PipelineJob, Schedule
from hypothesis import given
from hypothesis import strategies as st

from providers import airflow as airflow_provider
from providers.kubeflow import KubeflowError, KubeflowTarget
from providers.kubernetes import KubernetesError, KubernetesTarget, _is_cron_job
from providers.vertex import _map_page
from reconciler.config import KubeflowTarget as KubeflowConfig
from reconciler.config import KubernetesTarget as KubernetesConfig
from reconciler.diff import diff_target
from reconciler.model import LiveSchedule, LiveState, RegistrySnapshot
from reconciler.scope import TargetScope
from tests.abuse.strategies import (
    crons,
    drop_missing,
    evil_text,
    fuzz,
    intervals,
    json_values,
    maybe,
    time_text,
    zones,
)

NOW = datetime(2026, 11, 21, 10, tzinfo=timezone.utc)
EMPTY = RegistrySnapshot(schedules=(), components=(), pipelines=frozenset(), read_at=NOW)


def assert_live_types(live: LiveSchedule) -> None:
    assert isinstance(live.native_id, str) and isinstance(live.name, str)
    assert isinstance(live.state, LiveState)
    assert live.cron is None or isinstance(live.cron, str)
    assert live.interval_seconds is None or type(live.interval_seconds) is float
    for value in (live.start_time, live.end_time, live.created):
        assert value is None or (isinstance(value, datetime) and value.utcoffset() is not None)
    assert live.group is None or isinstance(live.group, str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in live.labels.items())
    assert all(isinstance(m, str) for m in live.zenml_marks)
    assert live.component_id is None or isinstance(live.component_id, str)


def diff_survives(flavor: str, live: list[LiveSchedule]) -> None:
    """The pure diff over the mapped objects: must not raise (a crash here fails every target's cycle)."""
    scope = TargetScope("t", flavor, frozenset({"c" * 32}))
    diff = diff_target(scope, EMPTY, live, NOW)
    assert len(diff.managed) + len(diff.unmanaged) == len(live)


# -- Kubeflow Pipelines ------------------------------------------------------------------------------

KFP = KubeflowTarget(KubeflowConfig(type="kubeflow", name="kfp", host="http://127.0.0.1:9"))

trigger = st.fixed_dictionaries({
    "cron_schedule": maybe(st.fixed_dictionaries({
        "cron": maybe(crons), "start_time": maybe(time_text), "end_time": maybe(time_text)}).map(drop_missing)),
    "periodic_schedule": maybe(st.fixed_dictionaries({
        "interval_second": maybe(st.one_of(intervals, intervals.map(str))),
        "start_time": maybe(time_text)}).map(drop_missing)),
}).map(drop_missing)

recurring_runs = st.fixed_dictionaries({
    "recurring_run_id": st.one_of(st.uuids().map(str), evil_text.filter(bool)),
    "display_name": maybe(evil_text),
    "status": maybe(st.sampled_from(["ENABLED", "DISABLED", "STATUS_UNSPECIFIED", "", "enabled"])),
    "mode": maybe(st.sampled_from(["ENABLE", "DISABLE", "MODE_UNSPECIFIED"])),
    "trigger": maybe(trigger),
    "created_at": maybe(time_text),
    "experiment_id": maybe(evil_text),
    "tags": maybe(st.dictionaries(evil_text, st.one_of(evil_text, json_values), max_size=3)),
    "pipeline_spec": maybe(json_values),
}).map(drop_missing)


@fuzz(200)
@given(run=recurring_runs)
def test_kfp_recurring_run_maps_with_the_models_types_or_fails_the_listing(run: dict[str, Any]) -> None:
    try:
        live = KFP._to_live(run, None, keep_raw=False)
    except KubeflowError:
        return  # `_list_all` fails the listing: the target is unknown this cycle
    assert_live_types(live)
    assert live.native_id == str(run["recurring_run_id"])
    diff_survives("kubeflow", [live])


# -- Kubernetes CronJobs -----------------------------------------------------------------------------

K8S = KubernetesTarget(KubernetesConfig(type="kubernetes", name="k8s", namespace="zenml", host="http://127.0.0.1:9"))

cron_jobs = st.fixed_dictionaries({
    "metadata": st.fixed_dictionaries({
        "name": st.one_of(evil_text, st.just("zenml-0a1b2c3d-" + "p" * 60)),
        "namespace": maybe(evil_text),
        "labels": maybe(st.dictionaries(evil_text, st.one_of(evil_text, json_values), max_size=3)),
        "annotations": maybe(st.dictionaries(st.one_of(evil_text, st.just("zenml.io/orchestrator")),
                                             st.one_of(evil_text, st.uuids().map(str), json_values), max_size=3)),
        "creationTimestamp": maybe(time_text),
    }).map(drop_missing),
    "spec": maybe(st.fixed_dictionaries({
        "schedule": maybe(crons),
        "timeZone": maybe(zones),
        "suspend": maybe(st.booleans()),
        "jobTemplate": maybe(json_values),
    }).map(drop_missing), st.dictionaries(st.text(max_size=5), json_values, max_size=2)),
}).map(drop_missing)


@fuzz(200)
@given(cron_job=cron_jobs)
def test_kubernetes_cron_job_maps_with_the_models_types_or_fails_the_listing(cron_job: dict[str, Any]) -> None:
    if not _is_cron_job(cron_job):
        return  # `_list_once` reports the page malformed before mapping it
    try:
        live = K8S._to_live(cron_job, keep_raw=False)
    except KubernetesError:
        return
    assert_live_types(live)
    assert live.name == cron_job["metadata"]["name"]
    diff_survives("kubernetes", [live])


# -- Airflow -----------------------------------------------------------------------------------------

dags = st.fixed_dictionaries({
    "dag_id": maybe(evil_text),
    "is_paused": maybe(st.booleans()),
    "is_stale": maybe(st.booleans()),
    "is_active": maybe(st.booleans()),
    "timetable_summary": maybe(st.one_of(crons, intervals.map(str), st.sampled_from(
        ["6:00:00", "1 day, 0:00:00", "-1 day, 23:59:59", "999999999 days, 0:00:00", "0:00:00", "None", "Asset"]))),
    "schedule_interval": maybe(st.fixed_dictionaries({
        "__type": maybe(st.sampled_from(["CronExpression", "TimeDelta", "RelativeDelta", ""])),
        "value": maybe(crons), "days": maybe(intervals), "seconds": maybe(intervals),
        "microseconds": maybe(intervals)}).map(drop_missing)),
    "fileloc": maybe(evil_text),
    "tags": maybe(st.lists(st.one_of(st.fixed_dictionaries({"name": maybe(evil_text)}).map(drop_missing),
                                     evil_text, json_values), max_size=3)),
}).map(drop_missing)


@fuzz(200)
@given(dag=dags, version=st.sampled_from(["v1", "v2"]))
def test_airflow_dag_maps_with_the_models_types_or_fails_the_listing(dag: dict[str, Any], version: str) -> None:
    try:
        live = airflow_provider._live(dag, version, keep_raw=False)
    except airflow_provider._CallError:
        return  # list_schedules turns it into ListingError
    assert_live_types(live)
    assert live.native_id == live.name == dag["dag_id"]
    diff_survives("airflow", [live])


# -- Vertex AI ---------------------------------------------------------------------------------------

def _vertex_schedule(name: str, display: str, cron: str, labels: dict[str, str], state: int,
                     create: int, start: int | None) -> Schedule:
    schedule = Schedule(
        name=name, display_name=display, cron=cron,
        create_pipeline_job_request=CreatePipelineJobRequest(pipeline_job=PipelineJob(labels=labels)))
    pb = Schedule.pb(schedule)
    pb.state = state  # any enum number, known or not: proto3 keeps unknown values
    pb.create_time.seconds = create
    if start is not None:
        pb.start_time.seconds = start
    return schedule


protobuf_text = evil_text.filter(lambda t: "\ud800" not in t)  # protobuf strings are UTF-8: no lone surrogates
timestamps = st.integers(min_value=-62135596800, max_value=253402300799)  # Timestamp's documented range


@fuzz(200)
@given(name=protobuf_text, display=protobuf_text, cron=crons.filter(lambda t: "\ud800" not in t),
       labels=st.dictionaries(protobuf_text, protobuf_text, max_size=3), state=st.integers(0, 9),
       create=timestamps, start=st.one_of(st.none(), timestamps))
def test_vertex_schedule_maps_with_the_models_types(name: str, display: str, cron: str, labels: dict[str, str],
                                                    state: int, create: int, start: int | None) -> None:
    live = _map_page(ListSchedulesResponse(schedules=[
        _vertex_schedule(name, display, cron, labels, state, create, start)]))[0]
    assert_live_types(live)
    assert (live.native_id, live.name) == (name, display)
    if state not in (1, 2, 3):  # ACTIVE, PAUSED, COMPLETED
        assert live.state is LiveState.PAUSED  # unknown runs nothing we can vouch for
    diff_survives("vertex", [live])
