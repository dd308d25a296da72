"""The Vertex emulator's service behaviour, without a transport in between."""

from __future__ import annotations

from datetime import datetime, timezone

import grpc
import pytest
from google.cloud.aiplatform_v1.types import (
    CreateScheduleRequest,
    DeleteScheduleRequest,
    GetScheduleRequest,
    ListSchedulesRequest,
    PauseScheduleRequest,
    ResumeScheduleRequest,
    Schedule,
)
from google.longrunning import operations_pb2

from providers.emulators.vertex import (
    ApiError,
    VertexEmulator,
    grpc_code_for,
    http_status_for,
    zenml_pipeline_spec,
)

PARENT = "projects/demo-project/locations/us-central1"


def emulator_with(count: int, operation_delay: float = 0.0) -> VertexEmulator:
    emulator = VertexEmulator(operation_delay=operation_delay)
    for i in range(count):
        emulator.add_schedule(f"s-{i:03d}", "0 * * * *")
    return emulator


def listing(emulator: VertexEmulator, **fields: object) -> list[list[str]]:
    """Every page's display names, following next_page_token."""
    pages = []
    token = ""
    while True:
        response = emulator.list_schedules(ListSchedulesRequest(parent=PARENT, page_token=token, **fields))
        pages.append([s.display_name for s in response.schedules])
        token = response.next_page_token
        if not token:
            return pages


def test_page_size_is_capped_at_100() -> None:
    pages = listing(emulator_with(230), page_size=500)
    assert [len(p) for p in pages] == [100, 100, 30]
    assert sum(pages, []) == [f"s-{i:03d}" for i in range(230)]


def test_unset_page_size_uses_the_default() -> None:
    assert [len(p) for p in listing(emulator_with(101))] == [100, 1]


def test_page_tokens_are_checked() -> None:
    emulator = emulator_with(150)
    token = emulator.list_schedules(ListSchedulesRequest(parent=PARENT)).next_page_token
    assert token and not token.isdigit()
    other_parent = "projects/demo-project/locations/europe-west4"
    for parent, bad in [(PARENT, "garbage"), (other_parent, token)]:
        with pytest.raises(ApiError) as failure:
            emulator.list_schedules(ListSchedulesRequest(parent=parent, page_token=bad))
        assert failure.value.code is grpc.StatusCode.INVALID_ARGUMENT


def test_filter_on_display_name_and_state() -> None:
    emulator = emulator_with(3)
    emulator.add_schedule("odd one", "0 1 * * *", state="PAUSED")
    assert listing(emulator, filter='display_name="odd one"') == [["odd one"]]
    assert listing(emulator, filter="state=PAUSED") == [["odd one"]]
    assert listing(emulator, filter='state=ACTIVE AND display_name="s-001"') == [["s-001"]]


def test_create_sets_output_only_fields() -> None:
    emulator = VertexEmulator()
    given = Schedule(name=f"{PARENT}/schedules/1", display_name="new", cron="0 1 * * *",
                     state=Schedule.State.PAUSED, max_concurrent_run_count=1)
    given.create_pipeline_job_request.pipeline_job.pipeline_spec = zenml_pipeline_spec("p")

    created = emulator.create_schedule(CreateScheduleRequest(parent=PARENT, schedule=given))

    assert created.name != given.name and created.name.startswith(f"{PARENT}/schedules/")
    assert created.state == Schedule.State.ACTIVE
    assert created.start_time == created.create_time


@pytest.mark.parametrize("missing", ["display_name", "cron", "max_concurrent_run_count", "pipeline_spec"])
def test_create_rejects_an_incomplete_schedule(missing: str) -> None:
    fields = dict(display_name="new", cron="0 1 * * *", max_concurrent_run_count=1)
    fields.pop(missing, None)
    given = Schedule(**fields)
    if missing != "pipeline_spec":
        given.create_pipeline_job_request.pipeline_job.pipeline_spec = zenml_pipeline_spec("p")
    with pytest.raises(ApiError) as failure:
        VertexEmulator().create_schedule(CreateScheduleRequest(parent=PARENT, schedule=given))
    assert failure.value.code is grpc.StatusCode.INVALID_ARGUMENT


def test_pause_and_resume_only_from_the_other_state() -> None:
    emulator = emulator_with(1)
    name = emulator.schedules()[0].name
    emulator.pause_schedule(PauseScheduleRequest(name=name))
    assert emulator.get_schedule(GetScheduleRequest(name=name)).state == Schedule.State.PAUSED
    with pytest.raises(ApiError) as failure:
        emulator.pause_schedule(PauseScheduleRequest(name=name))
    assert failure.value.code is grpc.StatusCode.FAILED_PRECONDITION
    emulator.resume_schedule(ResumeScheduleRequest(name=name))
    assert emulator.get_schedule(GetScheduleRequest(name=name)).state == Schedule.State.ACTIVE


def test_delete_is_a_long_running_operation() -> None:
    slow = emulator_with(1, operation_delay=3600)
    name = slow.schedules()[0].name
    operation = slow.delete_schedule(DeleteScheduleRequest(name=name))
    assert not operation.done
    assert operation.name.startswith("projects/demo-project/locations/us-central1/operations/")
    assert not slow.get_operation(operations_pb2.GetOperationRequest(name=operation.name)).done
    assert [s.name for s in slow.schedules()] == [name]  # not gone before the operation is done

    fast = emulator_with(1, operation_delay=0)
    name = fast.schedules()[0].name
    operation = fast.delete_schedule(DeleteScheduleRequest(name=name))
    polled = fast.get_operation(operations_pb2.GetOperationRequest(name=operation.name))
    assert polled.done and polled.HasField("response")
    assert fast.schedules() == []
    with pytest.raises(ApiError) as failure:
        fast.delete_schedule(DeleteScheduleRequest(name=name))
    assert failure.value.code is grpc.StatusCode.NOT_FOUND


def test_unknown_operation_is_not_found() -> None:
    with pytest.raises(ApiError) as failure:
        VertexEmulator().get_operation(operations_pb2.GetOperationRequest(name=f"{PARENT}/operations/9"))
    assert failure.value.http_status == 404


def test_seed_reads_the_sandbox_format() -> None:
    emulator = VertexEmulator()
    names = emulator.seed({"project": "p", "location": "asia-east1", "schedules": [
        {"display_name": "a", "cron": "0 1 * * *", "create_time": "2026-02-03T04:05:06Z",
         "end_time": "2027-01-01T00:00:00+00:00", "labels": {"team": "x"}},
        {"display_name": "b", "cron": "0 2 * * *", "state": "COMPLETED", "zenml": False},
    ]})
    by_name = {s.name: s for s in emulator.schedules()}
    first, second = by_name[names[0]], by_name[names[1]]
    assert names[0].startswith("projects/p/locations/asia-east1/schedules/")
    assert first.create_time == datetime(2026, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    assert first.end_time == datetime(2027, 1, 1, tzinfo=timezone.utc)
    assert first.create_pipeline_job_request.pipeline_job.labels["team"] == "x"
    assert second.state == Schedule.State.COMPLETED


def test_error_mapping_follows_google() -> None:
    assert grpc_code_for(429) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert grpc_code_for(503) is grpc.StatusCode.UNAVAILABLE
    assert grpc_code_for(401) is grpc.StatusCode.UNAUTHENTICATED
    assert http_status_for(grpc.StatusCode.FAILED_PRECONDITION) == 400
    assert http_status_for(grpc.StatusCode.DEADLINE_EXCEEDED) == 504
    expected = {"error": {"code": 404, "message": "gone", "status": "NOT_FOUND"}}
    assert VertexEmulator().error_body(404, "gone") == expected
