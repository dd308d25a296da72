"""Vertex Schedule -> LiveSchedule, and how ZenML's step entrypoint is recognised."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from google.cloud.aiplatform_v1.types import CreatePipelineJobRequest, ListSchedulesResponse, PipelineJob, Schedule
from hypothesis import given
from hypothesis import strategies as st

from providers.emulators.vertex import ZENML_ENTRYPOINT_COMMAND, plain_pipeline_spec, zenml_pipeline_spec
from providers.vertex import _map_page, runs_zenml_entrypoint, to_live_schedule
from reconciler.model import LiveState

NAME = "projects/p/locations/us-central1/schedules/42"


def schedule(state: Schedule.State = Schedule.State.ACTIVE, spec: dict[str, Any] | None = None,
             labels: dict[str, str] | None = None) -> Schedule:
    return Schedule(
        name=NAME, display_name="nightly", cron="CRON_TZ=Etc/UTC 0 3 * * *", state=state,
        create_time=datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc),
        start_time=datetime(2026, 5, 2, tzinfo=timezone.utc),
        create_pipeline_job_request=CreatePipelineJobRequest(
            parent="projects/p/locations/us-central1",
            pipeline_job=PipelineJob(display_name="training", pipeline_spec=spec or zenml_pipeline_spec("training"),
                                     labels=labels or {}),
        ),
    )


def test_maps_identity_times_and_labels() -> None:
    live = to_live_schedule(schedule(labels={"team": "ml"}))

    assert live.native_id == NAME
    assert live.name == "nightly"
    assert live.cron == "CRON_TZ=Etc/UTC 0 3 * * *"
    assert live.created == datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
    assert live.start_time == datetime(2026, 5, 2, tzinfo=timezone.utc)
    assert live.end_time is None
    assert live.labels == {"team": "ml"}
    assert live.raw["name"] == NAME
    assert live.raw["createPipelineJobRequest"]["pipelineJob"]["labels"] == {"team": "ml"}
    assert json.loads(json.dumps(live.raw)) == live.raw


def test_a_listing_page_maps_like_a_single_schedule_without_raw() -> None:
    # Listings read the protobuf fields directly and leave `raw` out; get() builds `raw`.
    schedules = [schedule(labels={"team": "ml"}), schedule(Schedule.State.PAUSED, spec=plain_pipeline_spec("x")),
                 Schedule(name=NAME, display_name="bare")]
    listed = _map_page(ListSchedulesResponse(schedules=schedules))
    assert [replace(to_live_schedule(s), raw={}) for s in schedules] == listed
    assert [l.zenml_marks for l in listed] == [frozenset({"entrypoint"}), frozenset(), frozenset()]
    assert listed[2].created is None and listed[2].cron is None and listed[2].labels == {}
    assert all(l.raw == {} for l in listed)


# Values a pipeline spec (a protobuf Struct) can hold, with the entrypoint's pieces mixed in.
spec_values = st.recursive(
    st.none() | st.booleans() | st.text(max_size=12)
    | st.sampled_from(["-m", "zenml.entrypoints.entrypoint", '["-m", "zenml.entrypoints.entrypoint"]']),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@given(spec_values)
def test_the_protobuf_walk_agrees_with_the_dict_walk(value: Any) -> None:
    spec = {"root": value}
    live = _map_page(ListSchedulesResponse(schedules=[schedule(spec=spec)]))[0]
    assert (live.zenml_marks == frozenset({"entrypoint"})) is runs_zenml_entrypoint(spec)


def test_maps_states() -> None:
    assert to_live_schedule(schedule(Schedule.State.ACTIVE)).state is LiveState.ENABLED
    assert to_live_schedule(schedule(Schedule.State.PAUSED)).state is LiveState.PAUSED
    assert to_live_schedule(schedule(Schedule.State.COMPLETED)).state is LiveState.COMPLETED


def test_labels_alone_are_no_zenml_mark() -> None:
    # ZenML's Vertex orchestrator sets only the user's labels, so none of them proves anything.
    live = to_live_schedule(schedule(spec=plain_pipeline_spec("x"), labels={"zenml": "true"}))
    assert live.zenml_marks == frozenset()


def test_zenml_step_entrypoint_is_a_mark() -> None:
    assert to_live_schedule(schedule()).zenml_marks == frozenset({"entrypoint"})
    assert runs_zenml_entrypoint(zenml_pipeline_spec("p", ["load", "train"]))
    assert not runs_zenml_entrypoint(plain_pipeline_spec("p"))


def test_entrypoint_inside_a_custom_job_payload_is_found() -> None:
    # A step run as a Vertex custom training job carries its container spec as JSON text.
    payload = json.dumps({"display_name": "train", "job_spec": {"worker_pool_specs": [{
        "replica_count": 1, "machine_spec": {"machine_type": "n1-standard-4"},
        "container_spec": {"image_uri": "img", "command": ZENML_ENTRYPOINT_COMMAND, "args": ["--step_name", "t"]},
    }]}})
    spec = {"deploymentSpec": {"executors": {"exec-train": {"container": {
        "image": "gcr.io/ml-pipeline/google-cloud-pipeline-components:2.17.0",
        "command": ["python3", "-u", "-m", "google_cloud_pipeline_components.container.v1.custom_job.launcher"],
        "args": ["--type", "CustomJob", "--payload", payload]}}}}}
    assert runs_zenml_entrypoint(spec)


def test_the_old_step_entrypoint_module_is_a_mark() -> None:
    spec = {"deploymentSpec": {"executors": {"e": {"container": {
        "command": ["python", "-m", "zenml.entrypoints.step_entrypoint"]}}}}}
    assert runs_zenml_entrypoint(spec)


def test_a_mere_mention_is_no_mark() -> None:
    assert not runs_zenml_entrypoint({"description": "python -m zenml.entrypoints.entrypoint"})
    assert not runs_zenml_entrypoint({"command": ["python", "-m", "zenml.entrypoints.entrypoint_v2"]})
    assert not runs_zenml_entrypoint({"command": ["python", "zenml.entrypoints.entrypoint"]})
    assert not runs_zenml_entrypoint({"args": ["{not json zenml.entrypoints.entrypoint"]})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_no_entrypoint_no_mark(value: Any) -> None:
    assert not runs_zenml_entrypoint(value)


@given(json_values, st.integers(min_value=0, max_value=3))
def test_the_entrypoint_is_found_at_any_depth(value: Any, depth: int) -> None:
    nested: Any = {"container": {"command": list(ZENML_ENTRYPOINT_COMMAND)}}
    for _ in range(depth):
        nested = [value, {"inner": nested}]
    assert runs_zenml_entrypoint({"other": value, "spec": nested})
