"""Small factories for the core's model, for tests of the pure diff and policy."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

from reconciler.model import Component, LiveSchedule, LiveState, RegistrySchedule, RegistrySnapshot
from reconciler.scope import TargetScope

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
_ids = itertools.count(1)


def hex_id(n: int | None = None) -> str:
    return f"{next(_ids) if n is None else n:032x}"


def component(name: str = "orch", flavor: str = "airflow", cid: str | None = None, **configuration: Any) -> Component:
    return Component(cid or hex_id(), name, flavor, configuration)


def schedule(name: str, component_id: str | None, pipeline: str | None = None, *, cron: str | None = "0 9 * * *",
             interval: float | None = None, active: bool = True, archived: bool = False,
             created: datetime = T0, end: datetime | None = None, run_once: datetime | None = None,
             start: datetime | None = None, metadata: dict[str, Any] | None = None, sid: str | None = None,
             original_name: str | None = None) -> RegistrySchedule:
    return RegistrySchedule(
        id=sid or hex_id(), name=name, original_name=original_name or name, project="default",
        pipeline=pipeline if pipeline is not None else name, orchestrator_id=component_id, active=active,
        archived=archived, cron_expression=None if interval is not None else cron, interval_seconds=interval,
        start_time=start, end_time=end, run_once_start_time=run_once, catchup=False, created=created,
        updated=created, metadata=metadata or {},
    )


def live(name: str, *, cron: str | None = "0 9 * * *", interval: float | None = None,
         state: LiveState = LiveState.ENABLED, created: datetime | None = None, native_id: str | None = None,
         marks: frozenset[str] = frozenset(), group: str | None = None, labels: dict[str, str] | None = None,
         component_id: str | None = None, stale: bool = False) -> LiveSchedule:
    return LiveSchedule(
        native_id=native_id or name, name=name, state=state, cron=None if interval is not None else cron,
        interval_seconds=interval, created=created, group=group, labels=labels or {}, zenml_marks=marks,
        component_id=component_id, stale=stale,
    )


def snapshot(schedules: list[RegistrySchedule], components: list[Component],
             pipelines: set[str] | None = None) -> RegistrySnapshot:
    names = pipelines if pipelines is not None else {s.pipeline for s in schedules if s.pipeline}
    return RegistrySnapshot(tuple(schedules), tuple(components), frozenset(names), NOW)


def scope(flavor: str, *components: Component, **kwargs: Any) -> TargetScope:
    return TargetScope("t", flavor, frozenset(c.id for c in components), **kwargs)


def dag_name(pipeline: str, n: int = 1) -> str:
    return f"{pipeline}_{n:032x}"


ONE_DAY = timedelta(days=1)
