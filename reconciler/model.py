"""The plain data the core works on.

Providers turn outside systems into these types; the diff and the policy are
functions of them. Everything here is immutable and free of I/O. Times are
timezone-aware UTC datetimes (ZenML stores naive UTC; providers attach the zone).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Component:
    """A ZenML orchestrator stack component (a row of `stack_component`)."""

    id: str  # 32 lowercase hex digits, no dashes
    name: str
    flavor: str  # vertex, kubeflow, airflow, kubernetes, sagemaker, ...
    configuration: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)  # slots: a cycle holds one per registry row
class RegistrySchedule:
    """One ZenML schedule record, as read from the registry (never written)."""

    id: str  # 32 lowercase hex digits, no dashes
    name: str  # as stored; an archived row carries a `_<uuid4>` suffix
    original_name: str  # `name` without the archive suffix
    project: str  # project (or, before 0.80, workspace) name
    pipeline: str | None  # pipeline name, None when the pipeline is gone
    orchestrator_id: str | None  # component id; None when the component was deleted
    active: bool
    archived: bool
    cron_expression: str | None
    interval_seconds: float | None
    start_time: datetime | None
    end_time: datetime | None
    run_once_start_time: datetime | None
    catchup: bool
    created: datetime
    updated: datetime
    metadata: Mapping[str, Any] = field(default_factory=dict)  # run metadata, key -> value

    def ended(self, now: datetime) -> bool:
        if self.end_time is not None and self.end_time <= now:
            return True
        return self.run_once_start_time is not None and self.run_once_start_time <= now


@dataclass(frozen=True)
class RegistrySnapshot:
    """Everything read from ZenML in one cycle, from one consistent read."""

    schedules: tuple[RegistrySchedule, ...]
    components: tuple[Component, ...]
    pipelines: frozenset[str]  # names of every pipeline in the registry
    read_at: datetime

    @property
    def schedule_count(self) -> int:
        """Non-archived schedule records: `registry.schedules` in `plan`."""
        return sum(1 for s in self.schedules if not s.archived)


class LiveState(str, enum.Enum):
    ENABLED = "enabled"
    PAUSED = "paused"
    COMPLETED = "completed"  # ran its course (Vertex COMPLETED); neither runs nor costs


@dataclass(frozen=True, slots=True)  # slots: a cycle holds one per live schedule of every target
class LiveSchedule:
    """One schedule as the target's API lists it right now."""

    native_id: str  # Vertex resource name, KFP recurring run id, DAG id, `namespace/name`
    name: str  # display name / DAG id / CronJob name: what the naming rule reads
    state: LiveState
    cron: str | None = None  # as the orchestrator shows it (KFP: 6 fields)
    interval_seconds: float | None = None
    start_time: datetime | None = None  # only where the API exposes it
    end_time: datetime | None = None
    created: datetime | None = None
    group: str | None = None  # KFP experiment name, when known
    labels: Mapping[str, str] = field(default_factory=dict)  # labels, tags, annotations
    # ZenML's own marks found by the provider, e.g. "annotation:zenml.io/orchestrator",
    # "entrypoint": what makes a live schedule ZenML-made beyond its name.
    zenml_marks: frozenset[str] = frozenset()
    component_id: str | None = None  # ZenML component named by the live object itself
    stale: bool = False  # Airflow: the DAG's file is gone
    raw: Mapping[str, Any] = field(default_factory=dict)  # the API object, for audit snapshots

    @property
    def enabled(self) -> bool:
        return self.state is LiveState.ENABLED


class ListingError(Exception):
    """A target's listing failed or stopped part way: its drift is unknown this cycle.

    Providers raise this (or let any exception escape); they never return a
    partial list. The message must be safe to log: no tokens, no passwords.
    """


class RegistryError(Exception):
    """The registry could not be read completely: drift is unknown everywhere."""


class DriftKind(str, enum.Enum):
    ZENML_ONLY = "zenml_only"
    ORCHESTRATOR_ONLY = "orchestrator_only"
    SPEC_MISMATCH = "spec_mismatch"
    STATE_MISMATCH = "state_mismatch"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Drift:
    kind: DriftKind
    schedule: RegistrySchedule | None  # the bound ZenML schedule, where there is one
    live: LiveSchedule | None  # None only for zenml_only
    detail: str


@dataclass(frozen=True)
class Binding:
    """A registry schedule bound to the live schedule that runs it."""

    schedule: RegistrySchedule
    live: LiveSchedule
    rule: str  # metadata | naming | inventory: which identity rule bound them


@dataclass(frozen=True)
class TargetDiff:
    """The drift of one target in one cycle: a pure function of its inputs."""

    expected: tuple[RegistrySchedule, ...]
    bindings: tuple[Binding, ...]
    managed: tuple[LiveSchedule, ...]
    unmanaged: tuple[LiveSchedule, ...]
    drift: tuple[Drift, ...]
    in_sync: int

    @property
    def items(self) -> int:
        """Expected R plus managed L bound to none of them: a bound pair counts once."""
        expected_ids = {s.id for s in self.expected}
        bound_live = {b.live.native_id for b in self.bindings if b.schedule.id in expected_ids}
        return len(expected_ids) + sum(1 for l in self.managed if l.native_id not in bound_live)

    @property
    def in_sync_ratio(self) -> float:
        items = self.items
        return 1.0 if items == 0 else self.in_sync / items
