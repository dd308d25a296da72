"""The "no wrong action" oracle: hostile worlds through the real diff and the real cleanup policy.

What this proves: hypothesis builds a world for each flavor (Vertex, KFP, Airflow,
Kubernetes) out of ZenML schedules with hostile names, crons, intervals and time
zones, and live schedules of four kinds that the generator itself labels:

- bound: ZenML made it and a live (expected) registry row owns it, by the flavor's
  naming rule, by Kubernetes' `cron_job_name` metadata, or only by the daemon's
  inventory (a renamed object);
- orphan: ZenML made it (with the flavor's ownership evidence of DESIGN.md §4: the
  step entrypoint, the CronJob annotation, `<pipeline>_<32 hex>` with the
  registry's pipeline (and, on KFP, its experiment), or an inventory entry) and no
  live row owns it: the row is deleted, archived or ended;
- unmanaged: not made by ZenML. Most carry a name no naming rule can match; the
  adversarial ones carry a ZenML-looking name without the ownership evidence: a
  deleted schedule's exact name (Vertex), an archived row's stored `<name>_<uuid>`
  name, `<pipeline>-<hex>` of a registry pipeline in another experiment (KFP), of a
  pipeline unknown to the registry (Airflow, KFP), a CronJob named after an
  in-scope pipeline but annotated by another ZenML orchestrator (Kubernetes);
- protected: any of the above on a protect list (cleanup or per-target name
  globs, the protect label, an operator's restore).

Then the real `diff_target` and `plan_candidates` run with cleanup enabled and
approved, dry-run evidence earned for every live schedule (even the ones that must
never be candidates), and a budget that cannot block. Checked against the
generator's labels, never against a recomputation with reconciler code: every
approved candidate is an unprotected orphan, and every unprotected orphan is
approved (so the oracle is not vacuous); nothing bound, unmanaged or protected is
ever approved, which is what `reconciler/cleanup.py` acts on.
"""

from __future__ import annotations

import glob
import os
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from reconciler.config import (
    AirflowTarget,
    CleanupConfig,
    KubeflowTarget,
    KubernetesTarget,
    Protect,
    TargetConfig,
    VertexTarget,
)
from reconciler.diff import diff_target, sanitize_kubernetes_name
from reconciler.model import Component, DriftKind, LiveSchedule, LiveState, RegistrySchedule, RegistrySnapshot
from reconciler.policy import Candidate, Evidence, Guards, fingerprint, plan_candidates
from reconciler.scope import TargetScope
from tests.abuse.strategies import crons, evil_text, fuzz, intervals, zones

NOW = datetime(2026, 11, 21, 10, tzinfo=timezone.utc)
T0 = NOW - timedelta(days=30)
COMPONENT = "c" * 32  # the target's ZenML orchestrator component
OTHER = "d" * 32  # another ZenML orchestrator, not fed to this target
PROTECT_LABEL = ("schedule-reconciler/protect", "true")
FOREIGN = "~foreign~"  # no naming rule matches a name that starts (and ends) with `~`

TARGETS: dict[str, TargetConfig] = {
    "vertex": VertexTarget(type="vertex", name="vx", project="p", location="l"),
    "kubeflow": KubeflowTarget(type="kubeflow", name="kfp", host="http://127.0.0.1:1"),
    "airflow": AirflowTarget(type="airflow", name="af", url="http://127.0.0.1:1"),
    "kubernetes": KubernetesTarget(type="kubernetes", name="k8s", namespace="zenml"),
}
EXAMPLES = int(os.environ.get("SCHEDULE_RECONCILER_FUZZ_EXAMPLES", "100"))  # raise it for a longer hunt
FATES = ["expected", "inactive", "renamed", "archived", "ended", "deleted", "no_live"]


@dataclass
class World:
    flavor: str
    rows: list[RegistrySchedule] = field(default_factory=list)
    pipelines: set[str] = field(default_factory=set)
    live: list[LiveSchedule] = field(default_factory=list)
    inventory: dict[str, str] = field(default_factory=dict)
    truth: dict[str, str] = field(default_factory=dict)  # native id -> bound | orphan | unmanaged
    protected: set[str] = field(default_factory=set)  # native ids the generator protected
    protect_names: list[str] = field(default_factory=list)  # cleanup.protect.names
    target_protect: list[str] = field(default_factory=list)  # the target's protect.names
    restored: dict[str, int] = field(default_factory=dict)

    def add(self, item: LiveSchedule, kind: str) -> None:
        assert item.native_id not in self.truth, "the generator made two objects with one native id"
        self.live.append(item)
        self.truth[item.native_id] = kind


def _row(i: int, name: str, pipeline: str, cron: str | None, interval: float | None, *, component: str = COMPONENT,
         active: bool = True, archived: bool = False, end: datetime | None = None,
         metadata: dict[str, str] | None = None) -> RegistrySchedule:
    stored = f"{name}_{uuid.UUID(int=i + 1)}" if archived else name
    return RegistrySchedule(
        id=f"{i + 1:032x}", name=stored, original_name=name, project="default", pipeline=pipeline,
        orchestrator_id=component, active=active and not archived, archived=archived,
        cron_expression=cron, interval_seconds=interval, start_time=None, end_time=end,
        run_once_start_time=None, catchup=False, created=T0 + timedelta(minutes=i), updated=T0,
        metadata=metadata or {})


def _hex(i: int, salt: int) -> str:
    return f"{salt:08x}{i:024x}"


@st.composite
def worlds(draw: st.DrawFn, flavor: str) -> World:
    world = World(flavor)
    n = draw(st.integers(0, 5))
    for i in range(n):
        fate = draw(st.sampled_from(FATES))
        # Unique, prefix-free keys per ZenML schedule; the rest is hostile.
        name = f"s{i}.{draw(evil_text)}"
        pipeline = f"p{i}.{draw(evil_text)}".replace("\n", " ").replace("\r", " ")
        use_interval = draw(st.booleans())
        cron = None if use_interval else draw(crons)
        interval = draw(intervals) if use_interval else None
        interval = None if interval is None else float(interval)
        live_cron = draw(st.one_of(st.just(cron), crons, st.builds(lambda z, c: f"CRON_TZ={z} {c}", zones, crons)))
        live_interval = draw(st.one_of(st.just(interval), intervals.map(float))) if use_interval else None
        state = draw(st.sampled_from(list(LiveState))) if fate in ("expected", "inactive", "renamed") \
            else LiveState.ENABLED  # an enabled orphan: `pause` of a paused one is already done
        hex8 = f"{i:08x}"
        k8s_name = f"zenml-{hex8}-{sanitize_kubernetes_name(pipeline)}"[:52]
        metadata = {"cron_job_name": k8s_name} if flavor == "kubernetes" else {}
        if fate != "deleted":
            world.rows.append(_row(
                i, name, pipeline, cron, interval, active=fate != "inactive", archived=fate == "archived",
                end=NOW - timedelta(days=1) if fate == "ended" else None, metadata=metadata))
        if fate != "deleted" or draw(st.booleans()):
            world.pipelines.add(pipeline)
        if fate == "no_live":
            continue
        native = f"live-{i}"
        created = T0 + timedelta(minutes=i, seconds=30)
        marks: frozenset[str] = frozenset()
        group: str | None = None
        component_id: str | None = None
        if flavor == "vertex":
            live_name = name
            marks = frozenset({"entrypoint"})
            native = f"projects/p/locations/l/schedules/{i}"
        elif flavor == "kubeflow":
            live_name = f"{pipeline.replace('_', '-')}-{_hex(i, 0xabc)}"
            evidence = draw(st.sampled_from(["entrypoint", "experiment"])) if pipeline in world.pipelines \
                else "entrypoint"
            marks = frozenset({"entrypoint"}) if evidence == "entrypoint" else frozenset()
            group = pipeline if evidence == "experiment" else draw(st.sampled_from([None, "Default"]))
        elif flavor == "airflow":
            live_name = f"{pipeline}_{_hex(i, 0xaf)}"
            if pipeline not in world.pipelines or draw(st.booleans()):
                marks = frozenset({"zenml_dag_zip"})
            native = live_name
        else:
            live_name = k8s_name
            marks = frozenset({"annotation:zenml.io/orchestrator"})
            component_id = COMPONENT
            native = f"zenml/{k8s_name}"
        if fate == "renamed":  # only the inventory still ties it to its row
            live_name = f"{FOREIGN}renamed-{i}~"
            native = f"renamed/{i}" if flavor != "airflow" else live_name
            world.inventory[native] = f"{i + 1:032x}"
        kind = "bound" if fate in ("expected", "inactive", "renamed") else "orphan"
        world.add(LiveSchedule(native_id=native, name=live_name, state=state, cron=live_cron,
                               interval_seconds=live_interval, created=created, group=group,
                               labels=draw(st.dictionaries(evil_text, evil_text, max_size=2)), zenml_marks=marks,
                               component_id=component_id), kind)
        if flavor == "vertex" and fate == "deleted" and draw(st.booleans()):
            # A foreign schedule with the deleted schedule's exact display name, no entrypoint.
            world.add(LiveSchedule(native_id=f"projects/p/locations/l/schedules/f{i}", name=name,
                                   state=LiveState.ENABLED, cron=live_cron), "unmanaged")
        if fate == "archived" and draw(st.booleans()):
            # A foreign object named like the archived row as stored: `<name>_<uuid>`.
            stored = next(r.name for r in world.rows if r.id == f"{i + 1:032x}")
            world.add(LiveSchedule(native_id=f"foreign-archived-{i}", name=stored, state=LiveState.ENABLED,
                                   cron=live_cron), "unmanaged")
    # A registry pipeline with no schedule on this target: its ZenML-looking name proves nothing on KFP.
    lonely = f"q.{draw(evil_text)}".replace("\n", " ").replace("\r", " ")
    world.pipelines.add(lonely)
    world.rows.append(_row(90, "other-target", lonely, "0 9 * * *", None, component=OTHER))
    for j in range(draw(st.integers(0, 4))):
        adversarial = draw(st.sampled_from(["plain", "plain", "lookalike"]))
        name = f"{FOREIGN}{draw(evil_text)}~"
        component_id = None
        group = None
        marks = frozenset()
        labels: dict[str, str] = draw(st.dictionaries(evil_text, evil_text, max_size=2))
        if adversarial == "lookalike":
            if flavor == "kubeflow":
                pipeline = draw(st.sampled_from([lonely, f"unknown.{j}"]))
                name = f"{pipeline.replace('_', '-')}-{_hex(j, 0xf0)}"
                group = draw(st.sampled_from([None, "Default", f"{pipeline} "]))
            elif flavor == "airflow":
                name = f"Unknown.{j}_{_hex(j, 0xf1)}"  # `<pipeline>_<32 hex>` of no registry pipeline
            elif flavor == "kubernetes":
                in_scope = [r for r in world.rows if r.orchestrator_id == COMPONENT and r.pipeline]
                pipeline = draw(st.sampled_from(in_scope)).pipeline if in_scope else lonely
                assert pipeline is not None
                name = f"zenml-f{j:07x}-{sanitize_kubernetes_name(pipeline)}"[:52]
                # Made by ZenML, but by an orchestrator this target does not watch: the provider
                # maps its annotation to a ZenML mark and to the other component's id.
                component_id = OTHER
                labels = {"zenml.io/orchestrator": str(uuid.UUID(OTHER))}
                marks = frozenset({"annotation:zenml.io/orchestrator"})
        native = f"zenml/{name}" if flavor == "kubernetes" else (name if flavor == "airflow" else f"foreign-{j}")
        if native in world.truth:
            continue
        world.add(LiveSchedule(native_id=native, name=name, state=draw(st.sampled_from(list(LiveState))),
                               cron=draw(crons), created=NOW - timedelta(days=j), group=group, labels=labels,
                               zenml_marks=marks, component_id=component_id), "unmanaged")
    # Stale inventory entries: a schedule id that no row has, a native id that is not live.
    world.inventory[f"gone/{draw(st.integers(0, 9))}"] = "f" * 32
    # Protection, chosen by the generator.
    for item in list(world.live):
        how = draw(st.sampled_from(["none", "none", "none", "label", "cleanup_name", "target_id", "restored"]))
        if how == "none":
            continue
        world.protected.add(item.native_id)
        if how == "label":
            world.live[world.live.index(item)] = _with_label(item)
        elif how == "cleanup_name":
            world.protect_names.append(glob.escape(item.name))
        elif how == "target_id":
            world.target_protect.append(glob.escape(item.native_id))
        else:
            world.restored[item.native_id] = len(world.restored) + 1
    # A name or id on a protect list protects every live schedule that shows it.
    listed = set(world.protect_names) | set(world.target_protect)
    world.protected |= {l.native_id for l in world.live
                        if glob.escape(l.name) in listed or glob.escape(l.native_id) in listed}
    return world


def _with_label(item: LiveSchedule) -> LiveSchedule:
    return replace(item, labels={**item.labels, PROTECT_LABEL[0]: PROTECT_LABEL[1]})


def _plan(world: World, cleanup: CleanupConfig) -> tuple[list[Candidate], int]:
    target = TARGETS[world.flavor]
    target = target.model_copy(update={"protect": Protect(names=world.target_protect)})
    snapshot = RegistrySnapshot(tuple(world.rows), (Component(COMPONENT, "orch", world.flavor),
                                                    Component(OTHER, "other", world.flavor)),
                                frozenset(world.pipelines), NOW)
    scope = TargetScope(target.name, world.flavor, frozenset({COMPONENT}))
    diff = diff_target(scope, snapshot, world.live, NOW, world.inventory)
    assert len(diff.managed) + len(diff.unmanaged) == len(world.live)
    # Evidence earned by every live schedule, as if each had been an orphan for long enough: the
    # policy must still only approve what the diff calls an orphan.
    first = plan_candidates(diff, cleanup, target, Guards(), {}, world.restored, NOW)
    start = NOW.timestamp() - 2 * cleanup.grace_period - 1
    evidence: dict[str, Evidence] = {}
    for item in world.live:
        fake = Candidate(item.native_id, item.name, DriftKind.ORCHESTRATOR_ONLY, None, "delete", "dry_run", "")
        evidence[item.native_id] = Evidence(fingerprint(fake, item), item.name, "orchestrator_only", "delete",
                                            start, start, cleanup.dry_run_cycles)
    for c in first:
        evidence[c.native_id] = Evidence(c.fingerprint, c.live_name, c.kind.value, c.action, start, start,
                                         cleanup.dry_run_cycles)
    return plan_candidates(diff, cleanup, target, Guards(), evidence, world.restored, NOW), len(diff.managed)


def _check(world: World, cleanup: CleanupConfig) -> None:
    candidates, managed = _plan(world, cleanup)
    approved = {c.native_id for c in candidates if c.approved}
    for c in candidates:
        assert world.truth[c.native_id] == "orphan", f"a {world.truth[c.native_id]} live schedule is a candidate: {c}"
        assert c.approved == (c.stage == "ready"), c
    # Every orphan is a candidate, a protected one held at `protected`.
    assert {c.native_id for c in candidates} == {n for n, kind in world.truth.items() if kind == "orphan"}
    orphans = {n for n, kind in world.truth.items() if kind == "orphan"}
    assert {c.native_id for c in candidates if c.stage == "protected"} == world.protected & orphans
    wrong = {n: world.truth[n] for n in approved if world.truth[n] != "orphan" or n in world.protected}
    assert not wrong, f"approved but not an unprotected orphan: {wrong}"
    # Not vacuous: with evidence earned, approval on and room in the budget, every unprotected orphan is approved.
    wanted = {n for n, kind in world.truth.items() if kind == "orphan" and n not in world.protected}
    assert approved == wanted, (approved, wanted, managed)


def _cleanup(dry_run_cycles: int, grace: float, protect_names: list[str]) -> CleanupConfig:
    return CleanupConfig(enabled=True, approve=True, include=["orchestrator_only", "duplicate"],
                         dry_run_cycles=dry_run_cycles, grace_period=grace, max_actions_per_cycle=1000,
                         max_fraction=1.0, protect=Protect(names=protect_names, labels=dict([PROTECT_LABEL])))


def _run(world: World, dry_run_cycles: int, grace: float) -> None:
    _check(world, _cleanup(dry_run_cycles, grace, world.protect_names))


cycles = st.integers(1, 3)
graces = st.sampled_from([0.0, 60.0, 3600.0])


@fuzz(EXAMPLES)
@given(world=worlds("vertex"), dry_run_cycles=cycles, grace=graces)
def test_vertex_only_unprotected_zenml_orphans_are_approved(world: World, dry_run_cycles: int, grace: float) -> None:
    _run(world, dry_run_cycles, grace)


@fuzz(EXAMPLES)
@given(world=worlds("kubeflow"), dry_run_cycles=cycles, grace=graces)
def test_kubeflow_only_unprotected_zenml_orphans_are_approved(world: World, dry_run_cycles: int, grace: float) -> None:
    _run(world, dry_run_cycles, grace)


@fuzz(EXAMPLES)
@given(world=worlds("airflow"), dry_run_cycles=cycles, grace=graces)
def test_airflow_only_unprotected_zenml_orphans_are_approved(world: World, dry_run_cycles: int, grace: float) -> None:
    _run(world, dry_run_cycles, grace)


@fuzz(EXAMPLES)
@given(world=worlds("kubernetes"), dry_run_cycles=cycles, grace=graces)
def test_kubernetes_only_unprotected_zenml_orphans_are_approved(world: World, dry_run_cycles: int,
                                                                grace: float) -> None:
    _run(world, dry_run_cycles, grace)
