"""How the Airflow target reads DAG JSON and checks that pages add up (no server)."""

from __future__ import annotations

import base64
import json
import math
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers import airflow
from providers.airflow import AirflowTarget, _all_pages, _CallError, _live
from reconciler.config import AirflowTarget as AirflowTargetConfig
from reconciler.model import LiveState


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650)))
def test_a_timedelta_summary_is_its_interval(value: timedelta) -> None:
    # Airflow 3 shows a timedelta schedule as str(timedelta): "6:00:00", "1 day, 0:00:00".
    cron, interval = airflow._from_summary(str(value))
    assert cron is None
    assert interval is not None and math.isclose(interval, value.total_seconds(), abs_tol=1e-6)


@pytest.mark.parametrize(("summary", "expected"), [
    ("0 9 * * *", ("0 9 * * *", None)),
    ("*/15 1-5 * * MON-FRI", ("*/15 1-5 * * MON-FRI", None)),
    ("6:00:00", (None, 21600.0)),
    ("1 day, 0:00:00", (None, 86400.0)),
    ("2 days, 1:30:00.500000", (None, 2 * 86400 + 5400.5)),
    ("@once", (None, None)),
    ("@continuous", (None, None)),
    ("Asset", (None, None)),
    ("None", (None, None)),
    ("", (None, None)),
    (None, (None, None)),
])
def test_timetable_summary(summary: Any, expected: tuple[Any, Any]) -> None:
    assert airflow._from_summary(summary) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ({"__type": "CronExpression", "value": "0 7 * * 1"}, ("0 7 * * 1", None)),
    ({"type": "CronExpression", "value": "0 7 * * 1"}, ("0 7 * * 1", None)),  # the client's spelling
    ({"__type": "TimeDelta", "days": 0, "seconds": 21600, "microseconds": 0}, (None, 21600.0)),
    ({"__type": "TimeDelta", "days": 1, "seconds": 30, "microseconds": 500000}, (None, 86430.5)),
    ({"__type": "RelativeDelta", "months": 1}, (None, None)),
    (None, (None, None)),
])
def test_schedule_interval(value: Any, expected: tuple[Any, Any]) -> None:
    assert airflow._from_schedule_interval(value) == expected


def test_v2_dag_maps_to_a_live_schedule() -> None:
    dag = {
        "dag_id": "etl_9758551eb547b8730013e8a033369ed2", "is_paused": True, "is_stale": True,
        "timetable_summary": "0 9 * * *", "fileloc": "/dags/etl_9758551eb547b8730013e8a033369ed2.zip/dag.py",
        "tags": [{"name": "team=data", "dag_id": "x"}, {"name": "nightly"}, {"name": "schedule-reconciler/protect:true"}],
    }
    live = _live(dag, "v2")
    assert live.native_id == live.name == dag["dag_id"]
    assert live.state is LiveState.PAUSED
    assert live.cron == "0 9 * * *" and live.interval_seconds is None
    assert live.stale is True
    assert live.zenml_marks == {airflow.ZENML_DAG_ZIP_MARK}
    assert live.labels == {"team": "data", "nightly": "", "schedule-reconciler/protect": "true"}
    assert live.raw == dag


def test_v1_dag_maps_to_a_live_schedule() -> None:
    dag = {
        "dag_id": "hand_written_dag", "is_paused": False, "is_active": False,
        "schedule_interval": {"__type": "TimeDelta", "days": 0, "seconds": 3600, "microseconds": 0},
        "fileloc": "/dags/hand_written_dag.py", "tags": [],
    }
    live = _live(dag, "v1")
    assert live.state is LiveState.ENABLED
    assert live.interval_seconds == 3600.0 and live.cron is None
    assert live.stale is True  # is_active false: its file is gone
    assert live.zenml_marks == frozenset()


def test_only_a_zip_named_after_the_dag_is_zenmls_mark() -> None:
    assert airflow._zenml_zip("etl_1", "/dags/etl_1.zip/dag.py")
    assert not airflow._zenml_zip("etl_1", "/dags/other.zip/dag.py")
    assert not airflow._zenml_zip("etl_1", "/dags/etl_1.py")
    assert not airflow._zenml_zip("etl_1", None)


def pages_of(dags: list[dict[str, Any]], size: int, totals: list[int] | None = None):
    calls: list[int] = []

    def fetch(offset: int, limit: int, deadline: float) -> Any:
        calls.append(offset)
        total = totals[len(calls) - 1] if totals else len(dags)
        return {"dags": dags[offset:offset + limit], "total_entries": total}

    return fetch, calls


DAGS = [{"dag_id": f"d{i}"} for i in range(5)]


def test_pages_are_followed_to_the_total() -> None:
    fetch, calls = pages_of(DAGS, 2)
    assert [d["dag_id"] for d in _all_pages(fetch, 2, float("inf"))] == [d["dag_id"] for d in DAGS]
    assert calls == [0, 2, 4]


def test_a_moving_total_discards_the_listing() -> None:
    fetch, _ = pages_of(DAGS, 2, totals=[5, 6, 6])
    with pytest.raises(_CallError, match="changed from 5 to 6"):
        _all_pages(fetch, 2, float("inf"))


def test_a_repeated_dag_discards_the_listing() -> None:
    def fetch(offset: int, limit: int, deadline: float) -> Any:
        return {"dags": [{"dag_id": "d0"}, {"dag_id": "d1"}][: limit], "total_entries": 4}

    with pytest.raises(_CallError, match="came back twice"):
        _all_pages(fetch, 2, float("inf"))


def test_an_empty_page_before_the_total_discards_the_listing() -> None:
    fetch, _ = pages_of(DAGS[:3], 2, totals=[5, 5, 5])
    with pytest.raises(_CallError, match="empty"):
        _all_pages(fetch, 2, float("inf"))


@pytest.mark.parametrize("page", [[], {"dags": None, "total_entries": 1}, {"dags": [], "total_entries": "1"},
                                  {"dags": [{"no": "id"}], "total_entries": 1}])
def test_a_malformed_page_discards_the_listing(page: Any) -> None:
    with pytest.raises(_CallError):
        _all_pages(lambda offset, limit, deadline: page, 2, float("inf"))


def test_a_passed_deadline_stops_paging() -> None:
    fetch, _ = pages_of(DAGS, 2)
    with pytest.raises(_CallError, match="deadline"):
        _all_pages(fetch, 2, 0.0)


def token_with(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS512'})}.{part(claims)}.signature"


def test_jwt_expiry_is_read_from_the_exp_claim() -> None:
    assert airflow._jwt_expiry(token_with({"exp": 1_900_000_000, "sub": "x"})) == 1_900_000_000.0
    assert airflow._jwt_expiry(token_with({"sub": "x"})) == float("inf")
    assert airflow._jwt_expiry("not-a-jwt") == float("inf")


def test_the_endpoint_never_shows_credentials() -> None:
    config = AirflowTargetConfig.model_validate(
        {"type": "airflow", "name": "af", "url": "https://user:s3cret@airflow.example.com:8080/"})
    target = AirflowTarget(config)
    assert target.endpoint == "https://airflow.example.com:8080"
    assert (target.name, target.flavor) == ("af", "airflow")
    target.close()
