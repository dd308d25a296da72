"""Hostile ZenML registry input: fuzzed rows in a real ZenML store file, fuzzed REST JSON.

What this proves: whatever a `schedule` row holds (huge or unicode or injection-like names,
crons of any shape, intervals of zero, below zero or huge, times with and without zones,
wrong types in any column, NULLs), the SQL registry either returns a snapshot whose
records have the model's types (so the diff can never crash on them) or raises
RegistryError: it never crashes otherwise and never reads a live row as archived. The
REST registry's JSON parsing, item by item and as a whole page, likewise either maps a
schedule with the model's types or reports the page malformed.
"""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers import zenml_rest
from providers.emulators.sandbox import default_store
from providers.zenml_sql import ZenmlSqlRegistry
from reconciler.config import RegistryConfig
from reconciler.model import RegistryError, RegistrySchedule
from tests.abuse.strategies import (
    MISSING,
    crons,
    drop_missing,
    evil_text,
    fuzz,
    intervals,
    json_values,
    maybe,
    naive_times,
    time_text,
    aware_times,
)


def assert_model_types(schedule: RegistrySchedule) -> None:
    """What the diff relies on: the dataclass's declared types, nothing else."""
    assert isinstance(schedule.id, str) and len(schedule.id) == 32
    assert isinstance(schedule.name, str) and isinstance(schedule.original_name, str)
    assert schedule.cron_expression is None or isinstance(schedule.cron_expression, str)
    assert schedule.interval_seconds is None or type(schedule.interval_seconds) is float
    for value in (schedule.start_time, schedule.end_time, schedule.run_once_start_time):
        assert value is None or (isinstance(value, datetime) and value.utcoffset() is not None)
    assert isinstance(schedule.created, datetime) and schedule.created.utcoffset() is not None
    assert isinstance(schedule.updated, datetime) and schedule.updated.utcoffset() is not None
    for flag in (schedule.active, schedule.archived, schedule.catchup):
        assert type(flag) is bool
    assert schedule.pipeline is None or isinstance(schedule.pipeline, str)
    assert schedule.orchestrator_id is None or isinstance(schedule.orchestrator_id, str)


# -- the SQL store ------------------------------------------------------------------------------------

# Column values as a ZenML store may hold them after a bad migration, a hand edit or another
# writer: SQLite keeps whatever type it is given in any column.
sql_any = st.one_of(st.none(), st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1),
                    st.floats(allow_nan=True), st.binary(max_size=12),
                    evil_text.filter(lambda t: "\ud800" not in t and "\x00" not in t))
sql_text = st.one_of(evil_text.filter(lambda t: "\ud800" not in t), crons.filter(lambda t: "\ud800" not in t))
sql_time = st.one_of(st.none(), naive_times.map(lambda d: d.isoformat(" ")),
                     aware_times.map(lambda d: d.isoformat(" ")), time_text.filter(lambda t: "\ud800" not in t))
sql_flag = st.one_of(st.sampled_from([0, 1, None, 2, -1, "0", "1", "true", "false", "", b"\x01", 0.5]))

valid_time = st.one_of(st.none(), naive_times.map(lambda d: d.isoformat(" ")))
valid_rows = st.fixed_dictionaries({
    "name": sql_text.filter(bool),
    "active": st.sampled_from([0, 1]),
    "cron_expression": st.one_of(st.none(), sql_text),
    "interval_second": st.one_of(st.none(), intervals.filter(lambda v: not isinstance(v, int) or abs(v) < 2 ** 63)),
    "start_time": valid_time,
    "end_time": valid_time,
    "run_once_start_time": valid_time,
    "catchup": st.sampled_from([0, 1]),
    "is_archived": st.sampled_from([0, 1]),
    "created": naive_times.map(lambda d: d.isoformat(" ")),
})
# Up to two columns of a valid row replaced by a value of the wrong type or shape.
wrong_values = {
    "name": sql_any, "active": sql_flag, "cron_expression": sql_any, "interval_second": sql_any,
    "start_time": st.one_of(sql_time, sql_any), "end_time": st.one_of(sql_time, sql_any),
    "run_once_start_time": st.one_of(sql_time, sql_any), "catchup": sql_flag, "is_archived": sql_flag,
    "created": st.one_of(sql_time, sql_any),
}
overrides = st.lists(st.sampled_from(sorted(wrong_values)), max_size=2, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: wrong_values[k] for k in keys}))
rows = st.tuples(valid_rows, overrides).map(lambda pair: {**pair[0], **pair[1]})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("zenml") / "zenml.db"
    shutil.copy(default_store(), path)
    yield path


def _insert(path: Path, row: dict[str, Any]) -> str:
    """One schedule row, every value stored as given (no SQLAlchemy types in the way), into the
    project, pipeline and Vertex component real ZenML wrote."""
    conn = sqlite3.connect(path)
    try:
        template = conn.execute("SELECT project_id, user_id, pipeline_id FROM schedule LIMIT 1").fetchone()
        component = conn.execute("SELECT id FROM stack_component WHERE flavor='vertex'").fetchone()[0]
        schedule_id = uuid.uuid4().hex
        values = {"id": schedule_id, "updated": row["created"], "project_id": template[0], "user_id": template[1],
                  "pipeline_id": template[2], "orchestrator_id": component, **row}
        columns = ", ".join(values)
        conn.execute(f"INSERT INTO schedule ({columns}) VALUES ({', '.join('?' * len(values))})",
                     list(values.values()))
        conn.commit()
        return schedule_id
    finally:
        conn.close()


def _delete(path: Path, schedule_id: str) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("DELETE FROM schedule WHERE id = ?", (schedule_id,))
        conn.commit()
    finally:
        conn.close()


@fuzz(80)
@given(row=rows)
def test_any_schedule_row_is_read_with_the_models_types_or_the_read_fails(store: Path, row: dict[str, Any]) -> None:
    try:
        schedule_id = _insert(store, row)
    except sqlite3.IntegrityError:
        return  # NOT NULL or UNIQUE refused it: ZenML's own schema keeps such a row out
    registry = ZenmlSqlRegistry(RegistryConfig(type="zenml-sql", url=f"sqlite:///{store}"))
    try:
        snapshot = registry.read()
    except RegistryError as exc:
        assert str(exc).startswith(f"ZenML store {store}:"), exc
        return
    finally:
        registry.close()
        _delete(store, schedule_id)
    fuzzed = [s for s in snapshot.schedules if s.id == schedule_id]
    assert len(fuzzed) == 1, "a row that is read must be in the snapshot, never dropped silently"
    for schedule in snapshot.schedules:
        assert_model_types(schedule)
    # Only what ZenML writes for "archived" (1 / true) may read as archived: anything else
    # read as archived would make the schedule's live object an orphan.
    if fuzzed[0].archived:
        assert type(row["is_archived"]) is int and row["is_archived"] == 1, row["is_archived"]
    assert len(snapshot.schedules) >= 20  # the committed store's own rows are all still there


# -- the REST API ------------------------------------------------------------------------------------

PIPELINE_ID = uuid.UUID(int=7)
COMPONENT_ID = uuid.UUID(int=9)

rest_schedules = st.fixed_dictionaries({
    "id": maybe(st.uuids().map(str)),
    "name": maybe(evil_text),
    "body": maybe(st.fixed_dictionaries({
        "active": maybe(st.booleans()),
        "is_archived": maybe(st.booleans()),
        "cron_expression": maybe(st.one_of(st.none(), crons)),
        "interval_second": maybe(st.one_of(st.none(), intervals, st.sampled_from(
            ["PT0S", "-PT1S", "P1Y35DT1H1M1.25S", "PT" + "9" * 30 + "S", "P" + "9" * 20 + "D", "PT1H", "6:00:00"]))),
        "start_time": maybe(st.one_of(st.none(), time_text)),
        "end_time": maybe(st.one_of(st.none(), time_text)),
        "run_once_start_time": maybe(st.one_of(st.none(), time_text)),
        "catchup": maybe(st.booleans()),
        "created": maybe(time_text),
        "updated": maybe(time_text),
    })),
    "metadata": maybe(st.fixed_dictionaries({
        "pipeline_id": maybe(st.one_of(st.none(), st.just(str(PIPELINE_ID)), evil_text)),
        "orchestrator_id": maybe(st.one_of(st.none(), st.just(str(COMPONENT_ID)), evil_text)),
        "run_metadata": maybe(st.dictionaries(st.text(max_size=10), json_values, max_size=3)),
    })),
}).map(drop_missing)


@fuzz(400)
@given(item=rest_schedules)
def test_any_rest_schedule_is_mapped_with_the_models_types_or_reported_malformed(item: dict[str, Any]) -> None:
    try:
        schedule = zenml_rest._schedule(item, "default", {PIPELINE_ID.hex: "training"})
    except zenml_rest._Malformed:
        return
    assert_model_types(schedule)
    body = item["body"]
    assert schedule.archived is (body.get("is_archived") is True)


@fuzz(100)
@given(page=st.one_of(json_values, st.fixed_dictionaries({
    "index": maybe(st.integers()), "max_size": maybe(st.integers()), "total_pages": maybe(st.integers()),
    "total": maybe(st.integers()), "items": maybe(st.lists(st.one_of(rest_schedules, json_values), max_size=3)),
}).map(drop_missing)))
def test_a_page_is_read_whole_or_reported_malformed(page: Any) -> None:
    """`_pages` over one fuzzed page answer: the items the page announces, or an error, never a part."""
    registry = zenml_rest.ZenmlRestRegistry(RegistryConfig(type="zenml-rest", url="http://127.0.0.1:9"))
    registry._page = lambda *args, **kwargs: page if isinstance(page, dict) else {}  # type: ignore[method-assign]
    try:
        items = registry._pages("/schedules", "schedules", {})
    except zenml_rest._Malformed:
        return
    if items is None:
        return  # the pages disagree: read again, then fail
    assert isinstance(page, dict) and items == page["items"] and len(items) == page["total"]
