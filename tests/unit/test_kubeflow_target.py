"""KubeflowTarget through the real kfp_server_api client against the KFP emulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from providers.emulators.base import Fault
from providers.emulators.kubeflow import KubeflowEmulator, seed_recurring_run, zenml_display_name
from providers.kubeflow import KubeflowError, KubeflowTarget
from reconciler.config import KubeflowTarget as KubeflowConfig
from reconciler.model import ListingError, LiveState
from tests.support.recorder import Recorder


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
    emulator.cookies.clear()
    emulator.tokens_seen.clear()
    emulator.faults.clear()
    emulator.log.clear()
    yield emulator
    emulator.faults.clear()


def target(emulator: KubeflowEmulator, recorder: Recorder | None = None, **settings: Any) -> KubeflowTarget:
    values: dict[str, Any] = {"type": "kubeflow", "name": "kfp", "host": emulator.url, "timeout": 5,
                              "max_retries": 2}
    values.update(settings)
    return KubeflowTarget(KubeflowConfig(**values), recorder or Recorder())


def seed_many(kfp: KubeflowEmulator, count: int) -> None:
    experiment = kfp.experiment_named("training_pipeline")
    for index in range(count):
        kfp.add_run(seed_recurring_run(zenml_display_name("training_pipeline"), experiment["experiment_id"],
                                       cron=f"0 {index % 60} 9 * * *"))


def test_450_runs_are_listed_in_three_pages_and_one_experiment_request(kfp: KubeflowEmulator) -> None:
    seed_many(kfp, 450)
    recorder = Recorder()
    live = target(kfp, recorder).list_schedules()
    assert len(live) == 450
    assert len({s.native_id for s in live}) == 450
    assert kfp.log.count("list_schedules") == 3
    assert kfp.log.count("list_experiments") == 1
    assert len(kfp.log.all()) == 4  # no request per schedule
    assert [r.query["page_size"] for r in kfp.log.all() if r.operation == "list_schedules"] == [["200"]] * 3
    assert all(r.query["namespace"] == ["kubeflow"] for r in kfp.log.all())
    assert recorder.calls == [("list_schedules", "200")] * 3 + [("list_experiments", "200")]
    assert kfp.log.mutations() == []


def test_fields_map_onto_the_live_schedule(kfp: KubeflowEmulator) -> None:
    experiment = kfp.experiment_named("training_pipeline")
    name = zenml_display_name("training_pipeline", "ab" * 16)
    cron_run = kfp.add_run(seed_recurring_run(
        name, experiment["experiment_id"], cron="0 30 9 * * 1-5", start_time="2026-01-02T03:04:05Z",
        end_time="2027-01-01T00:00:00Z", created_at="2026-01-01T00:00:00Z"))
    other = kfp.add_experiment("hand-made")
    interval_run = kfp.add_run(seed_recurring_run(
        "someone-elses-job", other["experiment_id"], interval_second=7200, enabled=False,
        pipeline_version_reference={"pipeline_id": str(uuid.uuid4()), "pipeline_version_id": str(uuid.uuid4())}))
    provider = target(kfp)
    live = {s.native_id: s for s in provider.list_schedules()}

    zenml = live[cron_run["recurring_run_id"]]
    assert zenml.name == name
    assert zenml.state is LiveState.ENABLED
    assert zenml.cron == "0 30 9 * * 1-5"
    assert zenml.interval_seconds is None
    assert zenml.start_time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert zenml.end_time == datetime(2027, 1, 1, tzinfo=timezone.utc)
    assert zenml.created == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert zenml.group == "training_pipeline"
    assert zenml.zenml_marks == frozenset({"entrypoint"})
    # A listing carries no API object (memory at scale); get() does, for the audit snapshot.
    assert zenml.raw == {}
    snapshot = provider.get(zenml.native_id)
    assert snapshot is not None and snapshot.raw == cron_run
    assert replace(snapshot, raw={}) == zenml

    plain = live[interval_run["recurring_run_id"]]
    assert plain.state is LiveState.PAUSED
    assert plain.cron is None
    assert plain.interval_seconds == 7200.0
    assert plain.group == "hand-made"
    assert plain.zenml_marks == frozenset()


def test_a_spec_without_zenmls_entrypoint_carries_no_mark(kfp: KubeflowEmulator) -> None:
    experiment = kfp.experiment_named("p")
    spec = {"deploymentSpec": {"executors": {"exec-a": {"container": {"image": "x", "command": ["python", "a.py"]}}}}}
    kfp.add_run(seed_recurring_run("p-1", experiment["experiment_id"], cron="0 0 * * * *", pipeline_spec=spec))
    [live] = target(kfp).list_schedules()
    assert live.zenml_marks == frozenset()


def test_runs_of_other_namespaces_are_not_listed(kfp: KubeflowEmulator) -> None:
    mine = kfp.experiment_named("p")
    theirs = kfp.experiment_named("p", namespace="team-x")
    kfp.add_run(seed_recurring_run("mine", mine["experiment_id"], cron="0 0 * * * *"))
    kfp.add_run(seed_recurring_run("theirs", theirs["experiment_id"], "team-x", cron="0 0 * * * *"))
    assert [s.name for s in target(kfp).list_schedules()] == ["mine"]
    assert [s.name for s in target(kfp, namespace="team-x").list_schedules()] == ["theirs"]


def test_pause_resume_delete_and_not_found(kfp: KubeflowEmulator) -> None:
    seed_many(kfp, 1)
    provider = target(kfp)
    [live] = provider.list_schedules()
    assert provider.pause(live.native_id) is True
    assert kfp.recurring_runs[live.native_id]["status"] == "DISABLED"
    paused = provider.get(live.native_id)
    assert paused is not None and paused.state is LiveState.PAUSED
    assert paused.group == "training_pipeline"
    assert provider.resume(live.native_id) is True
    assert kfp.recurring_runs[live.native_id]["status"] == "ENABLED"
    assert provider.delete(live.native_id) is True
    assert live.native_id not in kfp.recurring_runs
    assert provider.get(live.native_id) is None
    assert provider.delete(live.native_id) is False
    assert provider.pause(live.native_id) is False
    assert provider.resume(live.native_id) is False


def test_create_restores_a_deleted_run_from_its_snapshot(kfp: KubeflowEmulator) -> None:
    seed_many(kfp, 1)
    provider = target(kfp)
    [live] = provider.list_schedules()
    provider.pause(live.native_id)
    snapshot = provider.get(live.native_id)
    assert snapshot is not None
    provider.delete(live.native_id)
    restored = provider.create(snapshot.raw)
    assert restored.native_id != live.native_id
    assert restored.name == live.name
    assert restored.cron == live.cron
    assert restored.state is LiveState.PAUSED
    assert restored.zenml_marks == frozenset({"entrypoint"})
    stored = kfp.recurring_runs[restored.native_id]
    assert stored["experiment_id"] == snapshot.raw["experiment_id"]
    assert stored["pipeline_spec"] == snapshot.raw["pipeline_spec"]


def test_create_into_a_missing_experiment_fails_with_one_line(kfp: KubeflowEmulator) -> None:
    seed_many(kfp, 1)
    provider = target(kfp)
    [live] = provider.list_schedules()
    snapshot = provider.get(live.native_id)
    assert snapshot is not None
    raw = dict(snapshot.raw, experiment_id=str(uuid.uuid4()))
    with pytest.raises(KubeflowError) as raised:
        provider.create(raw)
    assert raised.value.status == 404
    assert "\n" not in str(raised.value)


def test_token_file_rotation_is_followed_between_calls(kfp: KubeflowEmulator, tmp_path: Path) -> None:
    seed_many(kfp, 3)
    kfp.tokens.update({"token-one", "token-two"})
    token_file = tmp_path / "token"
    token_file.write_text("token-one\n")
    provider = target(kfp, token_file=str(token_file))
    assert len(provider.list_schedules()) == 3
    assert set(kfp.tokens_seen) == {"token-one"}
    token_file.write_text("token-two\n")
    kfp.tokens_seen.clear()
    assert len(provider.list_schedules()) == 3
    assert kfp.tokens_seen == ["token-two", "token-two"]


def test_a_missing_token_file_is_a_listing_error_naming_the_file(kfp: KubeflowEmulator, tmp_path: Path) -> None:
    missing = tmp_path / "no-token"
    with pytest.raises(ListingError) as raised:
        target(kfp, token_file=str(missing)).list_schedules()
    assert str(missing) in str(raised.value)
    assert kfp.log.all() == []  # nothing was sent without credentials


def test_bearer_token_from_env_and_cookies_from_env(kfp: KubeflowEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_many(kfp, 2)
    kfp.tokens.add("env-token")
    monkeypatch.setenv("KFP_TOKEN", "env-token")
    assert len(target(kfp, token_env="KFP_TOKEN").list_schedules()) == 2
    kfp.tokens.clear()
    kfp.cookies.add("authservice_session=abc")
    monkeypatch.setenv("KFP_COOKIES", "authservice_session=abc")
    assert len(target(kfp, cookies_env="KFP_COOKIES").list_schedules()) == 2
    with pytest.raises(ListingError):
        target(kfp).list_schedules()


def test_401_is_a_listing_error_without_the_token(kfp: KubeflowEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_many(kfp, 2)
    kfp.tokens.add("the-right-token")
    monkeypatch.setenv("KFP_TOKEN", "wrong-secret-token-7f3c")
    recorder = Recorder()
    with pytest.raises(ListingError) as raised:
        target(kfp, recorder, token_env="KFP_TOKEN").list_schedules()
    message = str(raised.value)
    assert "401" in message
    assert "wrong-secret-token-7f3c" not in message
    assert "\n" not in message
    assert recorder.codes("list_schedules") == ["401"]  # not retried


def test_403_is_a_listing_error_with_a_clear_line(kfp: KubeflowEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_many(kfp, 2)
    monkeypatch.setenv("KFP_TOKEN", "secret-token-abc")
    kfp.faults.set("list_schedules", Fault(status=403))
    with pytest.raises(ListingError) as raised:
        target(kfp, token_env="KFP_TOKEN").list_schedules()
    message = str(raised.value)
    assert "403" in message and "kfp" in message
    assert "secret-token-abc" not in message
    assert "\n" not in message


def test_latency_within_the_timeout_is_fine(kfp: KubeflowEmulator) -> None:
    seed_many(kfp, 5)
    kfp.faults.set("list_schedules", Fault(latency=0.3))
    recorder = Recorder()
    assert len(target(kfp, recorder, timeout=5).list_schedules()) == 5
    assert recorder.codes("list_schedules") == ["200"]


def test_5xx_then_success_is_retried(kfp: KubeflowEmulator) -> None:
    seed_many(kfp, 5)
    kfp.faults.set("list_schedules", Fault(status=503, times=2))
    recorder = Recorder()
    assert len(target(kfp, recorder).list_schedules()) == 5
    assert recorder.codes("list_schedules") == ["503", "503", "200"]


def test_429_retry_after_is_honoured(kfp: KubeflowEmulator) -> None:
    seed_many(kfp, 5)
    kfp.faults.set("list_schedules", Fault(status=429, retry_after=0.2, times=1))
    recorder = Recorder()
    assert len(target(kfp, recorder, max_retries=1).list_schedules()) == 5
    assert recorder.codes("list_schedules") == ["429", "200"]


def test_a_hang_past_the_timeout_is_a_listing_error(kfp: KubeflowEmulator) -> None:
    seed_many(kfp, 5)
    kfp.faults.set("list_schedules", Fault(hang=5))
    recorder = Recorder()
    with pytest.raises(ListingError) as raised:
        target(kfp, recorder, timeout=0.5, max_retries=1).list_schedules()
    assert "no answer" in str(raised.value)
    assert recorder.codes("list_schedules") == ["timeout", "timeout"]


def test_a_malformed_page_is_a_listing_error(kfp: KubeflowEmulator) -> None:
    seed_many(kfp, 450)
    kfp.faults.set("list_schedules", Fault(malformed=True, after=1))
    with pytest.raises(ListingError) as raised:
        target(kfp).list_schedules()
    assert "not valid JSON" in str(raised.value)


def test_failure_on_page_two_fails_the_whole_listing(kfp: KubeflowEmulator) -> None:
    seed_many(kfp, 450)
    kfp.faults.set("list_schedules", Fault(status=500, after=1))
    recorder = Recorder()
    with pytest.raises(ListingError) as raised:
        target(kfp, recorder, max_retries=1).list_schedules()
    assert "HTTP 500" in str(raised.value)
    assert recorder.codes("list_schedules") == ["200", "500", "500"]
    assert kfp.log.mutations() == []


def test_a_refused_connection_is_a_listing_error(kfp: KubeflowEmulator) -> None:
    from tests.support.procs import free_port

    provider = KubeflowTarget(KubeflowConfig(type="kubeflow", name="kfp", host=f"http://127.0.0.1:{free_port()}",
                                             timeout=1, max_retries=1), Recorder())
    with pytest.raises(ListingError) as raised:
        provider.list_schedules()
    assert "cannot connect" in str(raised.value)


def test_check_reaches_and_authenticates(kfp: KubeflowEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    target(kfp).check()
    kfp.tokens.add("good")
    monkeypatch.setenv("KFP_TOKEN", "bad")
    with pytest.raises(ListingError):
        target(kfp, token_env="KFP_TOKEN").check()


def test_endpoint_never_carries_credentials() -> None:
    provider = KubeflowTarget(KubeflowConfig(type="kubeflow", name="kfp",
                                             host="https://user:pass@kfp.example.com/pipeline/?x=1"))
    assert provider.endpoint == "https://kfp.example.com/pipeline"
    assert provider.flavor == "kubeflow"
