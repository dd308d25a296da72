"""The diff: registry rows and live schedules of one target in, drift out. Pure.

Identity (binding a registry schedule R to a live schedule L), first rule that
applies (DESIGN.md §4):
  1. a native name stored in R's run metadata (Kubernetes `cron_job_name`);
  2. the flavor's naming rule, or the target's `name_template`, with tie-breaks:
     same spec first, then the live schedule created closest after R, then the
     oldest;
  3. the daemon's inventory of earlier bindings (so an edited cron still binds).
Every row of the target's components takes part, archived and ended ones too,
expected rows first: a live schedule bound to an archived or ended R is an
orphan that names R.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from reconciler.model import (
    Binding,
    Drift,
    DriftKind,
    LiveSchedule,
    LiveState,
    RegistrySchedule,
    RegistrySnapshot,
    TargetDiff,
)
from reconciler.scope import TargetScope, normalize_id
from reconciler.spec import same_spec, spec_differences

# `<pipeline>_<32 hex>`: how ZenML names KFP recurring runs and Airflow DAGs. Current
# ZenML turns underscores into dashes for KFP (`training-pipeline-<hex>`), so both
# separators are read and pipeline names are compared with `_` and `-` as one.
PIPELINE_HEX = re.compile(r"^(?P<pipeline>.+)[_-](?P<hex>[0-9a-f]{32})$")
# Run-metadata keys in which ZenML stores the live object's name, per flavor.
METADATA_NAME_KEYS = {"kubernetes": ("cron_job_name",)}
_NAMING_PIPELINE_HEX = {"airflow", "kubeflow"}
_KUBERNETES_NAME = re.compile(r"^(?:[a-z0-9-]*-)?[0-9a-f]{8}-(?P<pipeline>[a-z0-9-]+)$")
_KUBERNETES_TRUNCATED = 50  # a CronJob name this long may have had its pipeline part cut


def diff_target(
    scope: TargetScope,
    snapshot: RegistrySnapshot,
    live: Sequence[LiveSchedule],
    now: datetime,
    inventory: Mapping[str, str] | None = None,
) -> TargetDiff:
    """Compute one target's drift. `inventory` maps native ids to schedule ids bound before."""
    inventory = inventory or {}
    rows = [s for s in snapshot.schedules if s.orchestrator_id in scope.component_ids]
    expected = [s for s in rows if _is_expected(s, now)]
    expected_ids = {s.id for s in expected}
    # Expected rows claim first; within each group, oldest first for a stable result.
    ordered = sorted(rows, key=lambda s: (s.id not in expected_ids, s.created, s.id))
    pairs = _bind(scope, ordered, live, inventory)

    bound_live = {b.live.native_id for b in pairs}
    bound_rows = {b.schedule.id for b in pairs}
    drift: list[Drift] = []
    in_sync = 0
    for binding in pairs:
        if binding.schedule.id in expected_ids:
            mismatches = _mismatches(binding)
            drift.extend(mismatches)
            in_sync += not mismatches
        elif not (binding.live.state is LiveState.COMPLETED and binding.schedule.ended(now)
                  and not binding.schedule.archived):
            drift.append(Drift(DriftKind.ORCHESTRATOR_ONLY, binding.schedule, binding.live,
                               _gone_reason(binding.schedule, now)))
    for schedule in expected:
        if schedule.id not in bound_rows:
            if schedule.active:
                drift.append(Drift(DriftKind.ZENML_ONLY, schedule, None,
                                   f"no live schedule found for ZenML schedule {schedule.name!r}"))
            else:
                in_sync += 1  # inactive in ZenML and absent live: what ZenML asks for

    rest = [l for l in live if l.native_id not in bound_live]
    extras, rest = _extras(scope, pairs, rest, expected_ids)
    drift.extend(extras)
    owned_ids = {c.id for c in snapshot.components}
    # Pipeline names keyed as live names show them (`_` and `-` alike); the first in sort order wins.
    pipeline_keys = {p.replace("_", "-"): p for p in sorted(snapshot.pipelines, reverse=True)}
    managed = [b.live for b in pairs] + [d.live for d in extras if d.live is not None]
    unmanaged: list[LiveSchedule] = []
    for item in rest:
        evidence = _ownership_evidence(scope, item, pipeline_keys, owned_ids, inventory)
        if evidence is None:
            unmanaged.append(item)
            continue
        managed.append(item)
        drift.append(Drift(DriftKind.ORCHESTRATOR_ONLY, None, item,
                           f"no ZenML schedule for this live schedule (ZenML-made: {evidence})"))
    return TargetDiff(
        expected=tuple(expected),
        bindings=tuple(pairs),
        managed=tuple(managed),
        unmanaged=tuple(unmanaged),
        drift=tuple(drift),
        in_sync=in_sync,
    )


def _is_expected(schedule: RegistrySchedule, now: datetime) -> bool:
    return not schedule.archived and not schedule.ended(now)


def _gone_reason(schedule: RegistrySchedule, now: datetime) -> str:
    if schedule.archived:
        return f"ZenML schedule {schedule.original_name!r} was deleted (archived)"
    if schedule.end_time is not None and schedule.end_time <= now:
        return f"ZenML schedule {schedule.name!r} ended at {schedule.end_time:%Y-%m-%dT%H:%M:%SZ}"
    return f"ZenML schedule {schedule.name!r} was a run-once whose time has passed"


def _mismatches(binding: Binding) -> list[Drift]:
    schedule, live = binding.schedule, binding.live
    found = [Drift(DriftKind.SPEC_MISMATCH, schedule, live, "; ".join(differences))
             for differences in [spec_differences(schedule, live)] if differences]
    if schedule.active != live.enabled:
        zenml = "active" if schedule.active else "inactive"
        found.append(Drift(DriftKind.STATE_MISMATCH, schedule, live, f"{zenml} in ZenML, {live.state.value} live"))
    return found


# -- identity ---------------------------------------------------------------------------


def _bind(scope: TargetScope, rows: list[RegistrySchedule], live: Sequence[LiveSchedule],
          inventory: Mapping[str, str]) -> list[Binding]:
    free = {l.native_id: l for l in live}
    by_name = _Groups()
    if METADATA_NAME_KEYS.get(scope.flavor):  # only rule 1 reads it: not built for 100,000s of names in vain
        for item in live:
            by_name.add(item.name, item)
    index = NamingIndex(scope, live)
    bound: dict[str, Binding] = {}  # schedule id -> binding

    def claim(schedule: RegistrySchedule, item: LiveSchedule, rule: str) -> None:
        bound[schedule.id] = Binding(schedule, item, rule)
        del free[item.native_id]

    # 1. The live object's own name, stored by ZenML in the schedule's metadata.
    for schedule in rows:
        for name in _metadata_names(scope.flavor, schedule):
            options = [l for l in by_name.get(name) + ([free[name]] if name in free else [])
                       if l.native_id in free]
            if options:
                claim(schedule, options[0], "metadata")
                break

    # 2. The naming rule: first only pairs whose spec agrees, then the rest by time.
    named = {s.id: index.candidates(s) for s in rows if s.id not in bound}
    for spec_must_match in (True, False):
        for schedule in rows:
            if schedule.id in bound:
                continue
            options = [l for l in named[schedule.id]
                       if l.native_id in free and (not spec_must_match or same_spec(schedule, l))]
            if len(options) > 1:
                options.sort(key=lambda l: _closeness(schedule, l))
            if options:
                claim(schedule, options[0], "naming")

    # 3. The inventory: bindings this daemon saw before.
    by_id = {s.id: s for s in rows}
    for native_id, schedule_id in sorted(inventory.items()):
        schedule = by_id.get(schedule_id)
        if schedule is not None and schedule.id not in bound and native_id in free:
            claim(schedule, free[native_id], "inventory")

    order = {s.id: i for i, s in enumerate(rows)}
    return sorted(bound.values(), key=lambda b: order[b.schedule.id])


class NamingIndex:
    """Live schedules grouped by the key the naming rule compares, so that binding
    is a lookup per registry row rather than a scan of every live schedule.

    `candidates(R)` returns exactly the live schedules for which
    `names_match(scope, R, L)` holds. Live names the key cannot capture (a
    truncated CronJob name, any name under a `name_template` glob) are checked
    one by one.
    """

    def __init__(self, scope: TargetScope, live: Sequence[LiveSchedule]) -> None:
        self.scope = scope
        self.keyed = _Groups()
        self.unkeyed: list[LiveSchedule] = []
        for item in live:
            key = self._live_key(item)
            if key is None:
                self.unkeyed.append(item)
            elif key:
                self.keyed.add(key, item)

    def candidates(self, schedule: RegistrySchedule) -> list[LiveSchedule]:
        key = self._schedule_key(schedule)
        found = self.keyed.get(key) if key else []
        if self.scope.flavor == "kubernetes":  # the key narrows; the CronJob's component still decides
            found = [l for l in found if names_match(self.scope, schedule, l)]
        return [*found, *(l for l in self.unkeyed if names_match(self.scope, schedule, l))]

    def _live_key(self, item: LiveSchedule) -> str | None:
        """The key, "" for a name no rule can match, None when only a full check will do."""
        if self.scope.name_template:
            return None
        if self.scope.flavor == "vertex":
            return item.name
        if self.scope.flavor in _NAMING_PIPELINE_HEX:
            pipeline = live_pipeline(item)
            return pipeline.replace("_", "-") if pipeline else ""
        if self.scope.flavor == "kubernetes":
            match = _KUBERNETES_NAME.match(item.name)
            if match is None:
                return ""
            return None if len(item.name) >= _KUBERNETES_TRUNCATED else match.group("pipeline")
        return ""

    def _schedule_key(self, schedule: RegistrySchedule) -> str | None:
        if self.scope.flavor == "vertex":
            return schedule.original_name
        if schedule.pipeline is None:
            return None
        if self.scope.flavor in _NAMING_PIPELINE_HEX:
            return schedule.pipeline.replace("_", "-")
        if self.scope.flavor == "kubernetes":
            return sanitize_kubernetes_name(schedule.pipeline)
        return None


class _Groups:
    """Live schedules grouped by a string key, each group in the order added.

    Most keys have one live schedule: it sits in `first`, and only the rest of its
    group in a list in `more`. A list per key was most of the diff's memory at
    100,000 live schedules.
    """

    def __init__(self) -> None:
        self.first: dict[str, LiveSchedule] = {}
        self.more: dict[str, list[LiveSchedule]] = {}

    def add(self, key: str, item: LiveSchedule) -> None:
        if key in self.first:
            self.more.setdefault(key, []).append(item)
        else:
            self.first[key] = item

    def get(self, key: str) -> list[LiveSchedule]:
        if key not in self.first:
            return []
        return [self.first[key], *self.more.get(key, ())]


def _metadata_names(flavor: str, schedule: RegistrySchedule) -> Iterable[str]:
    for key in METADATA_NAME_KEYS.get(flavor, ()):
        value = schedule.metadata.get(key)
        if isinstance(value, str) and value:
            yield value


def names_match(scope: TargetScope, schedule: RegistrySchedule, item: LiveSchedule) -> bool:
    """Does the flavor's naming rule (or the target's template) tie R to L?"""
    if scope.name_template:
        values = {"pipeline": schedule.pipeline or "", "schedule": schedule.original_name,
                  "schedule_id": schedule.id}
        escaped = {k: re.sub(r"([*?\[\]])", r"[\1]", v) for k, v in values.items()}
        try:
            pattern = scope.name_template.format(**escaped)
        except (KeyError, IndexError, ValueError):
            return False
        return fnmatch.fnmatchcase(item.name, pattern)
    if scope.flavor == "vertex":
        return item.name == schedule.original_name
    if scope.flavor in _NAMING_PIPELINE_HEX:
        return schedule.pipeline is not None and _same_pipeline(live_pipeline(item), schedule.pipeline)
    if scope.flavor == "kubernetes":
        return _kubernetes_name_matches(schedule, item)
    return False


def live_pipeline(item: LiveSchedule) -> str | None:
    """The pipeline part of a `<pipeline>_<32 hex>` live name, if it has one."""
    # Not cached: a cache of every live name (up to 100,000s) outlived the cycle and
    # cost more memory than the few matches per live schedule cost time.
    match = PIPELINE_HEX.match(item.name)
    return match.group("pipeline") if match else None


def _same_pipeline(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.replace("_", "-") == b.replace("_", "-")


def _kubernetes_name_matches(schedule: RegistrySchedule, item: LiveSchedule) -> bool:
    # `[<prefix>-]<8 hex>-<sanitized pipeline>`, cut to the 52 characters a CronJob name may have.
    if schedule.pipeline is None or item.component_id not in (None, schedule.orchestrator_id):
        return False
    match = _KUBERNETES_NAME.match(item.name)
    if match is None:
        return False
    wanted = sanitize_kubernetes_name(schedule.pipeline)
    got = match.group("pipeline")
    return got == wanted or (len(item.name) >= _KUBERNETES_TRUNCATED and wanted.startswith(got))


def sanitize_kubernetes_name(value: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", value.lower())).strip("-")


def _closeness(schedule: RegistrySchedule, item: LiveSchedule) -> tuple[int, float, float, str]:
    """Sort key: created closest after R, then the oldest, then by id for stability."""
    if item.created is None:
        return (2, 0.0, 0.0, item.native_id)
    gap = (item.created - schedule.created).total_seconds()
    # A live object made a little before the row (clocks differ) still counts as after.
    if gap >= -timedelta(minutes=5).total_seconds():
        return (0, abs(gap), item.created.timestamp(), item.native_id)
    return (1, 0.0, item.created.timestamp(), item.native_id)


def _extras(scope: TargetScope, pairs: list[Binding], rest: list[LiveSchedule],
            expected_ids: set[str]) -> tuple[list[Drift], list[LiveSchedule]]:
    """Live schedules the naming rule also ties to an already bound R.

    Same spec as an expected R: a `duplicate` of it. Same spec as an archived or
    ended R: an orphan of that R. A different spec: an orphan of no R. Live
    schedules that no naming rule ties to a bound R are returned as they were.
    """
    drift: list[Drift] = []
    left: list[LiveSchedule] = []
    index = NamingIndex(scope, rest)
    owners_of: dict[str, list[RegistrySchedule]] = {}
    for binding in pairs:
        for item in index.candidates(binding.schedule):
            owners_of.setdefault(item.native_id, []).append(binding.schedule)
    for item in rest:
        owners = owners_of.get(item.native_id, [])
        twin = next((s for s in owners if same_spec(s, item)), None)
        if twin is not None and twin.id in expected_ids:
            drift.append(Drift(DriftKind.DUPLICATE, twin, item,
                               f"another live schedule for ZenML schedule {twin.name!r}"))
        elif twin is not None:
            drift.append(Drift(DriftKind.ORCHESTRATOR_ONLY, twin, item,
                               f"another live schedule for ZenML schedule {twin.original_name!r}, which is gone"))
        elif owners:
            drift.append(Drift(DriftKind.ORCHESTRATOR_ONLY, None, item,
                               f"named like ZenML schedule {owners[0].original_name!r}, which is bound to "
                               "another live schedule, but its spec differs"))
        else:
            left.append(item)
    return drift, left


# -- ownership --------------------------------------------------------------------------


def _ownership_evidence(scope: TargetScope, item: LiveSchedule, pipeline_keys: Mapping[str, str],
                        component_ids: set[str], inventory: Mapping[str, str]) -> str | None:
    """Why we believe ZenML made this unbound live schedule; None when unsure."""
    if item.component_id is not None:
        component = normalize_id(item.component_id)
        if component in component_ids and component not in scope.component_ids:
            return None  # made by another ZenML orchestrator that this target does not watch
    if item.native_id in inventory:
        return "seen bound to a ZenML schedule before"
    if item.zenml_marks:
        return ", ".join(sorted(item.zenml_marks))
    if scope.flavor in _NAMING_PIPELINE_HEX:
        named = live_pipeline(item)
        pipeline = pipeline_keys.get(named.replace("_", "-")) if named else None
        if pipeline is not None:
            if scope.flavor == "airflow":
                return f"name of ZenML pipeline {pipeline!r}"
            if _same_pipeline(item.group, pipeline):
                return f"name and experiment of ZenML pipeline {pipeline!r}"
    ownership = scope.ownership
    if ownership.labels and all(item.labels.get(k) == v for k, v in ownership.labels.items()):
        return "configured labels"
    for pattern in ownership.name_patterns:
        if re.search(pattern, item.name):
            return f"configured name pattern {pattern!r}"
    return None
