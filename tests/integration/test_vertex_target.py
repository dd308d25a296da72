"""providers.vertex through the real ScheduleServiceClient against the Vertex emulator.

Every test runs over both transports (gRPC and REST): the real client library
speaks the wire protocol to the emulator, and the emulator's request log shows
what reached the server. No outside server is needed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from providers.emulators.base import Fault
from providers.emulators.vertex import VertexEmulator, plain_pipeline_spec, zenml_pipeline_spec
from providers.retry import Backoff
from providers.vertex import VertexError, VertexTarget
from reconciler.config import VertexTarget as VertexTargetConfig
from reconciler.model import ListingError, LiveState
from tests.support.procs import Server, free_port, wait_until
from tests.support.recorder import Recorder

PROJECT = "demo-project"
LOCATION = "europe-west4"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


@dataclass(frozen=True)
class RecordingBackoff(Backoff):
    """Fast backoff that remembers the server's retry hint handed to each delay."""

    hints: list[float | None] = field(default_factory=list)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        self.hints.append(retry_after)
        return super().delay(attempt, retry_after)


@pytest.fixture(scope="module")
def emulator() -> Any:
    emulator = VertexEmulator(project=PROJECT, location=LOCATION, operation_delay=0.3)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(autouse=True)
def clean(emulator: VertexEmulator) -> None:
    emulator.reset()


@pytest.fixture(params=["grpc", "rest"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_target(emulator: VertexEmulator, transport: str, recorder: Recorder | None = None,
                backoff: Backoff | None = None, **overrides: Any) -> VertexTarget:
    endpoint = f"http://{emulator.grpc_target}" if transport == "grpc" else emulator.url
    settings: dict[str, Any] = dict(type="vertex", name="vertex-test", project=PROJECT, location=LOCATION,
                                    endpoint=endpoint, transport=transport, credentials="anonymous",
                                    timeout=5, list_deadline=60, max_retries=3, rate_limit=1000)
    settings.update(overrides)
    config = VertexTargetConfig(**settings)
    backoff = backoff or RecordingBackoff(max_retries=config.max_retries, base=0.01, cap=0.05)
    return VertexTarget(config, recorder or Recorder(), backoff=backoff)


def ok(transport: str) -> str:
    return "OK" if transport == "grpc" else "200"


def seed_many(emulator: VertexEmulator, count: int) -> list[str]:
    return [emulator.add_schedule(f"nightly-{i:03d}", "0 3 * * *") for i in range(count)]


# -- listing ---------------------------------------------------------------------------


def test_lists_every_page_with_one_request_per_page(emulator: VertexEmulator, transport: str) -> None:
    names = seed_many(emulator, 250)
    recorder = Recorder()
    target = make_target(emulator, transport, recorder)

    live = target.list_schedules()

    assert sorted(s.native_id for s in live) == sorted(names)
    assert len({s.native_id for s in live}) == 250
    # 250 schedules at 100 per page: 3 list requests, and none per schedule.
    assert emulator.log.count("list_schedules") == 3
    assert [r.operation for r in emulator.log.all()] == ["list_schedules"] * 3
    assert recorder.calls == [("list_schedules", ok(transport))] * 3
    assert emulator.log.mutations() == []
    target.close()


def test_page_size_is_sent_and_capped_by_the_server(emulator: VertexEmulator, transport: str) -> None:
    seed_many(emulator, 25)
    target = make_target(emulator, transport, page_size=10)

    assert len(target.list_schedules()) == 25
    assert emulator.log.count("list_schedules") == 3
    target.close()


def test_empty_location_lists_nothing_in_one_request(emulator: VertexEmulator, transport: str) -> None:
    emulator.add_schedule("elsewhere", "0 * * * *", location="us-central1")
    target = make_target(emulator, transport)

    assert target.list_schedules() == []
    assert emulator.log.count("list_schedules") == 1
    target.close()


def test_maps_every_field(emulator: VertexEmulator, transport: str) -> None:
    created = datetime(2026, 3, 1, 8, 30, tzinfo=timezone.utc)
    start = datetime(2026, 3, 2, tzinfo=timezone.utc)
    end = datetime(2027, 1, 1, tzinfo=timezone.utc)
    zenml_name = emulator.add_schedule(
        "daily-training", "TZ=UTC 0 6 * * *", state="PAUSED", labels={"team": "ml", "env": "prod"},
        pipeline_name="training_pipeline", create_time=created, start_time=start, end_time=end)
    plain_name = emulator.add_schedule("hand-made", "*/5 * * * *", state="COMPLETED", zenml=False,
                                       create_time=created + timedelta(minutes=1))
    active_name = emulator.add_schedule("hourly", "0 * * * *", create_time=created + timedelta(minutes=2))
    target = make_target(emulator, transport)

    live = {s.native_id: s for s in target.list_schedules()}

    zenml = live[zenml_name]
    assert zenml.name == "daily-training"
    assert zenml.state is LiveState.PAUSED
    assert zenml.cron == "TZ=UTC 0 6 * * *"  # the core normalizes the zone
    assert zenml.start_time == start
    assert zenml.end_time == end
    assert zenml.created == created
    assert zenml.labels["team"] == "ml" and zenml.labels["env"] == "prod"
    assert zenml.zenml_marks == frozenset({"entrypoint"})
    assert zenml.interval_seconds is None
    # A listing carries no API object (memory at scale); get() does, for the audit snapshot.
    assert zenml.raw == {}
    snapshot = target.get(zenml_name)
    assert snapshot is not None
    assert snapshot.raw["name"] == zenml_name
    assert snapshot.raw["displayName"] == "daily-training"
    assert snapshot.raw["createPipelineJobRequest"]["pipelineJob"]["displayName"] == "training_pipeline"
    json.dumps(snapshot.raw)  # an audit snapshot must be plain JSON
    assert replace(snapshot, raw={}) == zenml  # the same schedule, read either way

    plain = live[plain_name]
    assert plain.state is LiveState.COMPLETED
    assert plain.zenml_marks == frozenset()
    assert plain.end_time is None
    # Vertex starts a schedule at its creation when no start is given.
    assert plain.start_time == created + timedelta(minutes=1)

    assert live[active_name].state is LiveState.ENABLED
    assert live[active_name].enabled
    target.close()


# -- faults while listing ----------------------------------------------------------------


def test_latency_within_the_timeout_succeeds(emulator: VertexEmulator, transport: str) -> None:
    seed_many(emulator, 3)
    emulator.faults.set("list_schedules", Fault(latency=0.3))
    recorder = Recorder()
    target = make_target(emulator, transport, recorder, timeout=5)

    assert len(target.list_schedules()) == 3
    assert recorder.codes("list_schedules") == [ok(transport)]
    target.close()


@pytest.mark.parametrize("status, code", [(503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED"), (500, "INTERNAL")])
def test_a_server_error_is_retried_then_succeeds(emulator: VertexEmulator, transport: str,
                                                 status: int, code: str) -> None:
    seed_many(emulator, 150)
    emulator.faults.set("list_schedules", Fault(status=status, times=2))
    recorder = Recorder()
    target = make_target(emulator, transport, recorder)

    assert len(target.list_schedules()) == 150
    failed = code if transport == "grpc" else str(status)
    assert recorder.codes("list_schedules") == [failed, failed, ok(transport), ok(transport)]
    assert emulator.log.count("list_schedules") == 4
    assert emulator.log.mutations() == []
    target.close()


def test_resource_exhausted_honours_the_retry_hint(emulator: VertexEmulator, transport: str) -> None:
    seed_many(emulator, 2)
    # REST sends Retry-After; gRPC sends google.rpc.RetryInfo in the status details.
    emulator.faults.set("list_schedules", Fault(status=429, retry_after=0.25, times=1))
    recorder = Recorder()
    backoff = RecordingBackoff(max_retries=3, base=0.01, cap=0.05)
    target = make_target(emulator, transport, recorder, backoff=backoff)

    assert len(target.list_schedules()) == 2
    exhausted = "RESOURCE_EXHAUSTED" if transport == "grpc" else "429"
    assert recorder.codes("list_schedules") == [exhausted, ok(transport)]
    assert backoff.hints == [0.25]
    target.close()


def test_a_hang_past_the_timeout_fails_after_bounded_retries(emulator: VertexEmulator, transport: str) -> None:
    seed_many(emulator, 2)
    emulator.faults.set("list_schedules", Fault(hang=3))
    recorder = Recorder()
    target = make_target(emulator, transport, recorder, timeout=0.4, max_retries=2)

    with pytest.raises(ListingError) as failure:
        target.list_schedules()

    timed_out = "DEADLINE_EXCEEDED" if transport == "grpc" else "timeout"
    assert recorder.codes("list_schedules") == [timed_out] * 3
    assert "gave up after retries" in str(failure.value)
    assert "\n" not in str(failure.value)
    target.close()


def test_a_malformed_page_fails_the_listing(emulator: VertexEmulator, transport: str) -> None:
    seed_many(emulator, 2)
    emulator.faults.set("list_schedules", Fault(malformed=True))
    target = make_target(emulator, transport, max_retries=1)

    with pytest.raises(ListingError) as failure:
        target.list_schedules()

    assert "list_schedules" in str(failure.value)
    assert emulator.log.mutations() == []
    target.close()


@pytest.mark.parametrize("status", [500, 403])
def test_a_failure_on_page_two_fails_the_whole_listing(emulator: VertexEmulator, transport: str,
                                                       status: int) -> None:
    seed_many(emulator, 250)
    emulator.faults.set("list_schedules", Fault(status=status, after=1))
    recorder = Recorder()
    target = make_target(emulator, transport, recorder, max_retries=2)

    with pytest.raises(ListingError) as failure:
        target.list_schedules()

    assert "page 2" in str(failure.value)
    codes = recorder.codes("list_schedules")
    assert codes[0] == ok(transport)
    # A 5xx is retried (then given up), a 403 is not.
    assert len(codes) == (1 + 3 if status == 500 else 1 + 1)
    assert emulator.log.mutations() == []
    target.close()


@pytest.mark.parametrize("status, code", [(401, "UNAUTHENTICATED"), (403, "PERMISSION_DENIED")])
def test_refused_credentials_fail_with_one_clear_line(emulator: VertexEmulator, transport: str,
                                                      status: int, code: str) -> None:
    seed_many(emulator, 2)
    emulator.faults.set("list_schedules", Fault(status=status))
    recorder = Recorder()
    target = make_target(emulator, transport, recorder)

    with pytest.raises(ListingError) as failure:
        target.list_schedules()

    message = str(failure.value)
    assert code in message
    assert "credentials" in message
    assert "vertex-test" in message
    assert "\n" not in message
    assert len(recorder.codes("list_schedules")) == 1  # never retried
    target.close()


def test_check_reaches_the_api_and_reports_refusal(emulator: VertexEmulator, transport: str) -> None:
    target = make_target(emulator, transport)
    target.check()
    assert emulator.log.count("list_schedules") == 1

    emulator.faults.set("list_schedules", Fault(status=401))
    with pytest.raises(ListingError, match="UNAUTHENTICATED"):
        target.check()
    target.close()


def test_an_unreachable_endpoint_fails_the_listing(transport: str) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    config = VertexTargetConfig(type="vertex", name="gone", project=PROJECT, location=LOCATION, endpoint=endpoint,
                                transport=transport, credentials="anonymous", timeout=1, max_retries=1)
    recorder = Recorder()
    target = VertexTarget(config, recorder, backoff=Backoff(max_retries=1, base=0.01, cap=0.02))

    with pytest.raises(ListingError, match="gave up after retries"):
        target.list_schedules()
    assert len(recorder.codes("list_schedules")) == 2
    target.close()


# -- single schedules and actions -----------------------------------------------------------


def test_get_returns_the_schedule_or_none(emulator: VertexEmulator, transport: str) -> None:
    name = emulator.add_schedule("one", "0 1 * * *")
    target = make_target(emulator, transport)

    live = target.get(name)
    assert live is not None and live.name == "one"
    assert target.get(f"{PARENT}/schedules/404") is None
    assert emulator.log.mutations() == []
    target.close()


def test_pause_resume_and_their_not_found(emulator: VertexEmulator, transport: str) -> None:
    name = emulator.add_schedule("toggled", "0 1 * * *")
    recorder = Recorder()
    target = make_target(emulator, transport, recorder)

    assert target.pause(name) is True
    assert emulator.schedules()[0].state.name == "PAUSED"
    # Pausing a paused schedule is refused by Vertex; it is still paused, so done.
    assert target.pause(name) is True
    assert target.resume(name) is True
    assert emulator.schedules()[0].state.name == "ACTIVE"
    assert target.pause(f"{PARENT}/schedules/404") is False
    assert target.resume(f"{PARENT}/schedules/404") is False
    assert recorder.codes("pause_schedule")[0] == ok(transport)
    target.close()


def test_delete_waits_for_the_operation_and_not_found_is_already_gone(emulator: VertexEmulator,
                                                                       transport: str) -> None:
    keep = emulator.add_schedule("keep", "0 1 * * *")
    doomed = emulator.add_schedule("doomed", "0 2 * * *")
    recorder = Recorder()
    target = make_target(emulator, transport, recorder)

    assert target.delete(doomed) is True

    # Done means gone: the operation finished only once the schedule was removed.
    assert [s.name for s in emulator.schedules()] == [keep]
    assert emulator.log.count("get_operation") >= 1
    assert recorder.codes("delete_schedule") == [ok(transport)]
    assert set(recorder.codes("get_operation")) == {ok(transport)}
    assert target.delete(doomed) is False
    target.close()


def test_a_failing_delete_raises(emulator: VertexEmulator, transport: str) -> None:
    name = emulator.add_schedule("protected", "0 1 * * *")
    emulator.faults.set("delete_schedule", Fault(status=403))
    target = make_target(emulator, transport)

    with pytest.raises(VertexError) as failure:
        target.delete(name)
    assert failure.value.code == "PERMISSION_DENIED"
    assert [s.name for s in emulator.schedules()] == [name]
    target.close()


def test_create_restores_from_a_snapshot(emulator: VertexEmulator, transport: str) -> None:
    name = emulator.add_schedule("restored", "TZ=UTC 30 4 * * 1", labels={"team": "ml"})
    target = make_target(emulator, transport)
    snapshot = target.get(name)
    assert snapshot is not None
    assert target.delete(name) is True

    recreated = target.create(snapshot.raw)

    assert recreated.native_id != name
    assert recreated.native_id.startswith(f"{PARENT}/schedules/")
    assert (recreated.name, recreated.cron, recreated.state) == ("restored", "TZ=UTC 30 4 * * 1", LiveState.ENABLED)
    assert recreated.labels["team"] == "ml"
    assert recreated.zenml_marks == frozenset({"entrypoint"})
    assert [s.display_name for s in emulator.schedules()] == ["restored"]
    target.close()


def test_rest_error_body_is_googles_shape(emulator: VertexEmulator) -> None:
    response = requests.get(f"{emulator.url}/v1/{PARENT}/schedules/404", timeout=5)
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"
    assert response.json()["error"]["code"] == 404


# -- the emulator as its own process (how the sandbox runs it) -------------------------------------


@pytest.mark.integration  # slow: a fresh interpreter importing the Vertex SDK
def test_standalone_emulator_serves_both_transports_with_shared_faults(tmp_path: Path) -> None:
    seed = {"project": PROJECT, "location": LOCATION, "schedules": [
        {"display_name": "zen", "cron": "0 1 * * *", "labels": {"team": "ml"},
         "create_time": "2026-01-01T00:00:00Z"},
        {"display_name": "hand", "cron": "0 2 * * *", "zenml": False, "state": "PAUSED"},
        {"display_name": "custom", "cron": "0 3 * * *", "pipeline_spec": plain_pipeline_spec("x")},
        {"display_name": "steps", "cron": "0 4 * * *", "pipeline_spec": zenml_pipeline_spec("p", ["a", "b"])},
    ]}
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(seed))
    port, grpc_port = free_port(), free_port()
    server = Server("vertex-emulator", [sys.executable, "-m", "providers.emulators.vertex",
                                        "--port", str(port), "--grpc-port", str(grpc_port), "--seed", str(seed_file)],
                    tmp_path / "emulator.log", cwd=Path(__file__).resolve().parents[2])
    try:
        control = f"http://127.0.0.1:{port}/_emulator"
        wait_until(lambda: requests.get(f"{control}/requests", timeout=2).ok, 30, "the vertex emulator", server)
        grpc_target = make_target_for(f"http://127.0.0.1:{grpc_port}", "grpc")
        rest_target = make_target_for(f"http://127.0.0.1:{port}", "rest")

        by_name = {s.name: s for s in grpc_target.list_schedules()}
        assert sorted(by_name) == ["custom", "hand", "steps", "zen"]
        assert {n for n, s in by_name.items() if "entrypoint" in s.zenml_marks} == {"zen", "steps"}
        assert by_name["hand"].state is LiveState.PAUSED
        assert by_name["zen"].created == datetime(2026, 1, 1, tzinfo=timezone.utc)
        assert sorted(s.native_id for s in rest_target.list_schedules()) == sorted(
            s.native_id for s in by_name.values())

        # A fault set over HTTP hits the gRPC side too: one fault plan for both.
        assert requests.post(f"{control}/faults", json={"list_schedules": {"status": 401}}, timeout=5).ok
        with pytest.raises(ListingError, match="UNAUTHENTICATED"):
            grpc_target.list_schedules()
        logged = requests.get(f"{control}/requests", timeout=5).json()
        assert [r["operation"] for r in logged] == ["list_schedules"] * 3
        assert [r["status"] for r in logged] == [200, 200, 401]
        grpc_target.close()
        rest_target.close()
    finally:
        server.stop()


def make_target_for(endpoint: str, transport: str) -> VertexTarget:
    config = VertexTargetConfig(type="vertex", name="sandbox", project=PROJECT, location=LOCATION,
                                endpoint=endpoint, transport=transport, credentials="anonymous", timeout=5)
    return VertexTarget(config, Recorder(), backoff=Backoff(max_retries=1, base=0.01, cap=0.02))
