"""The Airflow target against real Airflow servers: 3.x (/api/v2) and 2.x (/api/v1).

One server per major runs for the whole session (tests/support/airflow.py),
with the scenario's DAGs (tests/airflow_dags). Faults mid-paging come from a
loopback proxy in front of the real server that breaks the n-th request.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from providers.airflow import ZENML_DAG_ZIP_MARK, AirflowTarget
from reconciler.config import AirflowTarget as AirflowTargetConfig
from reconciler.model import ListingError, LiveState
from tests.airflow_dags import generate
from tests.support import airflow as airflow_support
from tests.support.procs import REPO
from tests.support.recorder import Recorder

pytestmark = pytest.mark.integration

STORES = REPO / "tests" / "zenml_stores" / "files"


@pytest.fixture(scope="session", params=[3, 2], ids=["airflow3", "airflow2"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[airflow_support.AirflowServer]:
    started = airflow_support.start(request.param, tmp_path_factory.mktemp(f"airflow{request.param}"))
    yield started
    started.stop()


@pytest.fixture()
def proxy(server: airflow_support.AirflowServer) -> Iterator[airflow_support.FaultProxy]:
    front = airflow_support.FaultProxy(server.url)
    yield front
    front.close()


def secret_files(server: airflow_support.AirflowServer, tmp_path: Path, password: str | None = None) -> dict[str, str]:
    user = tmp_path / "airflow-user"
    secret = tmp_path / "airflow-password"
    user.write_text(server.username + "\n")
    secret.write_text((password if password is not None else server.password) + "\n")
    return {"username_file": str(user), "password_file": str(secret)}


def target(server: airflow_support.AirflowServer, tmp_path: Path, recorder: Any = None, url: str | None = None,
           password: str | None = None, **overrides: Any) -> AirflowTarget:
    fields: dict[str, Any] = {
        "type": "airflow", "name": f"airflow{server.major}", "url": url or server.url,
        "api_version": "auto", "timeout": 10, "max_retries": 2, **secret_files(server, tmp_path, password),
    }
    fields.update(overrides)
    config = AirflowTargetConfig.model_validate(fields)
    return AirflowTarget(config, recorder or Recorder())


def seeds_by_id(server: airflow_support.AirflowServer) -> dict[str, generate.DagSeed]:
    return {s.dag_id: s for s in server.seeds}


def essence(live: Any) -> tuple[Any, ...]:
    return (live.name, live.state, live.cron, live.interval_seconds, live.stale, live.zenml_marks,
            dict(live.labels))


# Listing ---------------------------------------------------------------------------


def test_lists_every_dag_with_its_schedule_state_and_staleness(server, tmp_path) -> None:
    provider = target(server, tmp_path)
    live = {s.native_id: s for s in provider.list_schedules()}
    seeds = seeds_by_id(server)

    assert set(live) == set(seeds)
    for dag_id, seed in seeds.items():
        schedule = live[dag_id]
        assert schedule.name == dag_id
        assert schedule.cron == seed.cron, dag_id
        assert schedule.interval_seconds == seed.interval_seconds, dag_id
        assert schedule.state is (LiveState.PAUSED if seed.paused else LiveState.ENABLED), dag_id
        assert schedule.stale is (not seed.file_present), dag_id
        assert (ZENML_DAG_ZIP_MARK in schedule.zenml_marks) is seed.zenml, dag_id
        assert schedule.raw == {}  # a listing carries no API object (memory at scale)
    snapshot = provider.get("hand_written_dag")  # get() carries the API object, for audit snapshots
    assert snapshot is not None and snapshot.raw["dag_id"] == "hand_written_dag"
    assert live["hand_written_dag"].labels == {"team": "data"}
    assert live[generate.scenario.run_name("etl")].labels == {}
    # the scenario's 6 h interval and its stale DAG, spelled out
    assert live[generate.scenario.run_name("ingest")].interval_seconds == 21600.0
    assert live[generate.scenario.run_name("legacy")].stale is True
    provider.close()


def test_small_pages_give_the_same_listing(server, tmp_path) -> None:
    recorder = Recorder()
    whole = {s.native_id: essence(s) for s in target(server, tmp_path).list_schedules()}
    paged = {s.native_id: essence(s) for s in target(server, tmp_path, recorder, page_size=2).list_schedules()}

    # raw is left out: Airflow re-parses every 2 s and bumps last_parsed_time in between
    assert paged == whole
    assert recorder.codes("list_dags") == ["200"] * math.ceil(len(whole) / 2)


def test_auto_detects_the_api_version(server, tmp_path) -> None:
    recorder = Recorder()
    provider = target(server, tmp_path, recorder)
    provider.check()

    if server.major == 3:
        assert recorder.codes("version") == ["200"]  # /api/v2/version
        assert recorder.codes("auth_token") == ["201"]
    else:
        assert recorder.codes("version") == ["404", "200"]  # no /api/v2 on Airflow 2
        assert recorder.codes("auth_token") == []
    assert provider.api_version == ("v2" if server.major == 3 else "v1")
    provider.list_schedules()
    assert len(recorder.codes("version")) == (1 if server.major == 3 else 2)  # asked once, kept


def test_explicit_api_version_asks_nothing(server, tmp_path) -> None:
    recorder = Recorder()
    version = "v2" if server.major == 3 else "v1"
    schedules = target(server, tmp_path, recorder, api_version=version).list_schedules()
    assert recorder.codes("version") == []
    assert {s.native_id for s in schedules} == set(server.all_dags())  # the server's own answer, read directly


# Single DAGs -----------------------------------------------------------------------


def test_pause_resume_and_get(server, tmp_path) -> None:
    provider = target(server, tmp_path)
    dag_id = generate.SCRATCH_TOGGLE

    paused = provider.pause(dag_id)
    assert paused is not None and paused.state is LiveState.PAUSED
    assert provider.get(dag_id).state is LiveState.PAUSED
    assert server.raw("GET", f"/dags/{dag_id}").json()["is_paused"] is True

    resumed = provider.resume(dag_id)
    assert resumed is not None and resumed.state is LiveState.ENABLED
    assert server.raw("GET", f"/dags/{dag_id}").json()["is_paused"] is False

    fetched = provider.get(generate.scenario.run_name("report"))
    assert fetched is not None and fetched.cron == "0 7 * * 1"
    assert provider.get("no_such_dag") is None
    assert provider.pause("no_such_dag") is None


def test_delete_a_stale_dag(server, tmp_path) -> None:
    provider = target(server, tmp_path)
    dag_id = generate.SCRATCH_DELETE
    assert provider.get(dag_id).stale is True

    assert provider.delete(dag_id) is True
    assert provider.get(dag_id) is None
    assert server.raw("GET", f"/dags/{dag_id}").status_code == 404
    assert provider.delete(dag_id) is False  # already gone
    assert dag_id not in {s.native_id for s in provider.list_schedules()}


# Failures --------------------------------------------------------------------------


def test_wrong_password_is_a_clear_listing_error(server, tmp_path) -> None:
    wrong = "not-the-password-" + server.password[:4]
    provider = target(server, tmp_path, password=wrong)
    with pytest.raises(ListingError) as caught:
        provider.list_schedules()
    message = str(caught.value)
    assert "\n" not in message
    assert "401" in message
    assert wrong not in message and server.password not in message
    with pytest.raises(ListingError):
        provider.check()


def test_transient_500_mid_paging_is_retried(server, tmp_path, proxy) -> None:
    recorder = Recorder()
    proxy.arm(500, nth=2, path_prefix=f"{server.api_prefix}/dags")
    schedules = target(server, tmp_path, recorder, url=proxy.url, page_size=2).list_schedules()
    assert {s.native_id for s in schedules} == set(server.all_dags())  # the server's own answer, read directly
    assert recorder.codes("list_dags")[:3] == ["200", "500", "200"]


@pytest.mark.parametrize("fault", [500, 401, "timeout"])
def test_lasting_fault_mid_paging_is_a_listing_error(server, tmp_path, proxy, fault) -> None:
    recorder = Recorder()
    proxy.arm(fault, nth=2, path_prefix=f"{server.api_prefix}/dags", sticky=True)
    proxy.hold = 3.0
    provider = target(server, tmp_path, recorder, url=proxy.url, page_size=2, timeout=1, max_retries=1)
    with pytest.raises(ListingError) as caught:
        provider.list_schedules()
    message = str(caught.value)
    assert "\n" not in message and server.password not in message
    expected = {500: "HTTP 500", 401: "HTTP 401", "timeout": "timed out"}[fault]
    assert expected in message
    assert recorder.codes("list_dags")[0] == "200"  # the first page was fine: this failed part way


def test_one_401_mid_paging_logs_in_again_on_airflow3(server, tmp_path, proxy) -> None:
    recorder = Recorder()
    proxy.arm(401, nth=2, path_prefix=f"{server.api_prefix}/dags")
    provider = target(server, tmp_path, recorder, url=proxy.url, page_size=2)
    if server.major == 3:
        schedules = provider.list_schedules()
        assert {s.native_id for s in schedules} == set(server.all_dags())  # the server's own answer, read directly
        assert recorder.codes("auth_token") == ["201", "201"]  # a new token after the 401
    else:
        # Basic auth has nothing to refresh: a 401 means the credentials were refused.
        with pytest.raises(ListingError, match="HTTP 401"):
            provider.list_schedules()


def test_a_total_that_moves_while_paging_is_a_listing_error(server, tmp_path, proxy) -> None:
    proxy.arm("total+1", nth=2, path_prefix=f"{server.api_prefix}/dags")
    provider = target(server, tmp_path, url=proxy.url, page_size=2)
    with pytest.raises(ListingError, match="changed from"):
        provider.list_schedules()


def test_token_is_renewed_before_it_expires(server, tmp_path) -> None:
    recorder = Recorder()
    provider = target(server, tmp_path, recorder)
    provider.list_schedules()
    logins = len(recorder.codes("auth_token"))
    if server.major == 3:
        assert logins == 1
        provider._token_expires = time.time() + 5  # as if the token ran out within the renewal margin
        provider.list_schedules()
        assert len(recorder.codes("auth_token")) == 2
        assert "401" not in recorder.codes("list_dags")
    else:
        assert logins == 0


# End to end: the CLI's plan against the real Airflow ------------------------------


# 0.98.0 keeps deleted schedules as archived tombstones; 0.75.0 drops their rows.
@pytest.mark.parametrize("store", ["zenml-0.98.0.db", "zenml-0.75.0.db"])
def test_plan_reports_each_dags_drift_kind(server, tmp_path, store) -> None:
    store_file = STORES / store
    assert store_file.exists(), f"{store_file} is missing: tests/zenml_stores/generate.py writes it"
    username, password = tmp_path / "user", tmp_path / "password"
    username.write_text(server.username)
    password.write_text(server.password)
    config = {
        "registry": {"type": "zenml-sql", "url": f"sqlite:///{store_file}"},
        "targets": [{
            "name": "airflow", "type": "airflow", "url": server.url, "api_version": "auto",
            "username_file": str(username), "password_file": str(password),
            "components": ["airflow-orchestrator"],
        }],
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "log": {"format": "json", "level": "warning"},
    }
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))

    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "plan", "--config", str(config_file), "--output", "json"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert result.returncode == 1, result.stderr[-2000:]  # drift found
    report = json.loads(result.stdout)
    (airflow,) = report["targets"]
    assert airflow["status"] == "ok" and airflow["error"] is None

    by_live = {(d["kind"], d["live_name"] or d["schedule"]) for d in airflow["drift"]}
    run_name = generate.scenario.run_name
    assert by_live == {
        ("zenml_only", "train_hourly"),
        ("spec_mismatch", run_name("report")),
        ("state_mismatch", run_name("score")),
        ("orchestrator_only", run_name("cleanup")),
        ("orchestrator_only", run_name("legacy")),
    }
    named = {d["live_name"]: d for d in airflow["drift"] if d["live_name"]}
    assert named[run_name("report")]["schedule"] == "report_weekly"
    assert named[run_name("report")]["native_id"] == run_name("report")
    # in sync, so absent from the drift list; unmanaged, so never drift either
    reported = {d["live_name"] for d in airflow["drift"]}
    assert run_name("etl") not in reported and run_name("ingest") not in reported
    assert "hand_written_dag" not in reported
    assert airflow["counts"]["in_sync"] == 2
