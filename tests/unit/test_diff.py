"""The diff, by example for each drift kind and by property over random worlds."""

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.diff import diff_target
from reconciler.model import DriftKind, LiveState
from tests.support.builders import NOW, T0, component, dag_name, live, scope, schedule, snapshot

AIRFLOW = component("airflow-orchestrator", "airflow")
VERTEX = component("vertex-orchestrator", "vertex", project="p", location="us-central1")
K8S = component("k8s-orchestrator", "kubernetes")


def kinds(diff):
    return sorted(((d.kind.value, d.schedule.name if d.schedule else None, d.live.name if d.live else None)
                   for d in diff.drift), key=lambda k: tuple(v or "" for v in k))


def sorted_kinds(items):
    return sorted(items, key=lambda k: tuple(v or "" for v in k))


def test_airflow_every_kind():
    rows = [
        schedule("etl_daily", AIRFLOW.id, "etl"),
        schedule("train_hourly", AIRFLOW.id, "train", cron="0 * * * *"),
        schedule("report_weekly", AIRFLOW.id, "report", cron="0 6 * * 1"),
        schedule("score_nightly", AIRFLOW.id, "score", cron="30 2 * * *", active=False),
        schedule("cleanup_old_1234", AIRFLOW.id, "cleanup", archived=True, active=False, original_name="cleanup_old"),
        schedule("campaign", AIRFLOW.id, "campaign", end=NOW - timedelta(days=30)),
    ]
    dags = [
        live(dag_name("etl")),
        live(dag_name("etl", 2)),  # same spec as etl_daily: a duplicate
        live(dag_name("report"), cron="0 7 * * 1"),
        live(dag_name("score"), cron="30 2 * * *"),
        live(dag_name("cleanup"), state=LiveState.PAUSED),
        live(dag_name("campaign")),
        live(dag_name("legacy"), stale=True),  # pipeline unknown to ZenML: not ZenML's
        live("hand_written_dag"),
    ]
    diff = diff_target(scope("airflow", AIRFLOW), snapshot(rows, [AIRFLOW], {"legacy_x"} | {r.pipeline for r in rows}),
                       dags, NOW)
    assert kinds(diff) == sorted_kinds([
        ("zenml_only", "train_hourly", None),
        ("spec_mismatch", "report_weekly", dag_name("report")),
        ("state_mismatch", "score_nightly", dag_name("score")),
        ("orchestrator_only", "cleanup_old_1234", dag_name("cleanup")),
        ("orchestrator_only", "campaign", dag_name("campaign")),
        ("duplicate", "etl_daily", dag_name("etl", 2)),
    ])
    assert {l.name for l in diff.unmanaged} == {"hand_written_dag", dag_name("legacy")}
    assert diff.in_sync == 1  # etl_daily only
    # 4 expected, plus the managed live schedules bound to none of them: the duplicate and two orphans.
    assert diff.items == 7 and diff.in_sync_ratio == 1 / 7


def test_unbound_orphan_is_managed_only_with_evidence():
    rows = [schedule("etl_daily", AIRFLOW.id, "etl")]
    orphan = live(dag_name("gone_pipeline"))
    diff = diff_target(scope("airflow", AIRFLOW), snapshot(rows, [AIRFLOW], {"etl", "gone_pipeline"}),
                       [live(dag_name("etl")), orphan], NOW)
    assert kinds(diff) == [("orchestrator_only", None, dag_name("gone_pipeline"))]
    # The same DAG when ZenML has never heard of its pipeline: unmanaged, never an orphan.
    diff = diff_target(scope("airflow", AIRFLOW), snapshot(rows, [AIRFLOW], {"etl"}),
                       [live(dag_name("etl")), orphan], NOW)
    assert kinds(diff) == [] and diff.unmanaged == (orphan,)


def test_tie_breaks_spec_then_time():
    first = schedule("a", AIRFLOW.id, "etl", cron="0 1 * * *", created=T0)
    second = schedule("b", AIRFLOW.id, "etl", cron="0 2 * * *", created=T0 + timedelta(days=1))
    dags = [live(dag_name("etl", 1), cron="0 2 * * *", created=T0 + timedelta(days=1)),
            live(dag_name("etl", 2), cron="0 1 * * *", created=T0)]
    diff = diff_target(scope("airflow", AIRFLOW), snapshot([first, second], [AIRFLOW]), dags, NOW)
    assert {(b.schedule.name, b.live.name) for b in diff.bindings} == {("a", dag_name("etl", 2)),
                                                                      ("b", dag_name("etl", 1))}
    assert diff.drift == ()


def test_edited_cron_binds_by_time_and_reports_spec_mismatch():
    row = schedule("a", AIRFLOW.id, "etl", cron="0 1 * * *", created=T0)
    near = live(dag_name("etl", 1), cron="0 5 * * *", created=T0 + timedelta(minutes=1))
    far = live(dag_name("etl", 2), cron="0 6 * * *", created=T0 + timedelta(days=10))
    diff = diff_target(scope("airflow", AIRFLOW), snapshot([row], [AIRFLOW]), [far, near], NOW)
    assert [b.live.name for b in diff.bindings] == [near.name]
    assert kinds(diff) == sorted_kinds([("spec_mismatch", "a", near.name), ("orchestrator_only", None, far.name)])


def test_vertex_binds_archived_by_original_name_and_counts_duplicates():
    rows = [schedule("vx_in_sync", VERTEX.id), schedule("vx_dup", VERTEX.id),
            schedule("vx_deleted_abc", VERTEX.id, archived=True, active=False, original_name="vx_deleted")]
    items = [live("vx_in_sync", native_id="s/1"), live("vx_dup", native_id="s/2"), live("vx_dup", native_id="s/3"),
             live("vx_deleted", native_id="s/4"), live("someone_elses_schedule", native_id="s/5")]
    diff = diff_target(scope("vertex", VERTEX), snapshot(rows, [VERTEX]), items, NOW)
    assert kinds(diff) == sorted_kinds([("duplicate", "vx_dup", "vx_dup"),
                                  ("orchestrator_only", "vx_deleted_abc", "vx_deleted")])
    assert [l.native_id for l in diff.unmanaged] == ["s/5"]


def test_inactive_and_absent_is_in_sync_and_ended_is_not_expected():
    rows = [schedule("off", VERTEX.id, active=False),
            schedule("once", VERTEX.id, cron=None, run_once=NOW - timedelta(hours=1))]
    diff = diff_target(scope("vertex", VERTEX), snapshot(rows, [VERTEX]), [], NOW)
    assert diff.drift == () and [s.name for s in diff.expected] == ["off"] and diff.in_sync_ratio == 1.0


def test_kubernetes_metadata_name_wins_and_other_components_are_not_ours():
    other = component("other-k8s", "kubernetes")
    row = schedule("k8s_nightly", K8S.id, "k8s_batch", metadata={"cron_job_name": "custom-name"})
    mine = live("custom-name", native_id="zenml/custom-name", component_id=K8S.id, marks=frozenset({"annotation"}))
    theirs = live("zenml-0a1b2c3d-k8s-batch", native_id="zenml/x", component_id=other.id, marks=frozenset({"annotation"}))
    orphan = live("zenml-4e5f6a7b-k8s-export", native_id="zenml/y", component_id=K8S.id, marks=frozenset({"annotation"}))
    diff = diff_target(scope("kubernetes", K8S), snapshot([row], [K8S, other]), [theirs, mine, orphan], NOW)
    assert [(b.rule, b.live.name) for b in diff.bindings] == [("metadata", "custom-name")]
    assert kinds(diff) == [("orchestrator_only", None, orphan.name)]
    assert diff.unmanaged == (theirs,)


def test_inventory_binds_what_naming_cannot():
    row = schedule("custom", AIRFLOW.id, "etl")
    dag = live("my_custom_dag_id")
    diff = diff_target(scope("airflow", AIRFLOW), snapshot([row], [AIRFLOW]), [dag], NOW, {"my_custom_dag_id": row.id})
    assert [(b.rule, b.live.name) for b in diff.bindings] == [("inventory", "my_custom_dag_id")]


def test_name_template_overrides_the_flavor_rule():
    row = schedule("nightly", AIRFLOW.id, "etl")
    diff = diff_target(scope("airflow", AIRFLOW, name_template="team-{pipeline}-*"), snapshot([row], [AIRFLOW]),
                       [live("team-etl-v2"), live(dag_name("etl"))], NOW)
    assert [b.live.name for b in diff.bindings] == ["team-etl-v2"]


def test_kubeflow_dashed_names_bind_like_underscored_ones():
    kfp = component("kfp", "kubeflow")
    row = schedule("nightly", kfp.id, "training_pipeline")
    dashed = live("training-pipeline-" + "ab" * 16, group="training_pipeline")
    orphan = live("old-pipeline-" + "cd" * 16, group="old_pipeline")
    diff = diff_target(scope("kubeflow", kfp), snapshot([row], [kfp], {"training_pipeline", "old_pipeline"}),
                       [dashed, orphan], NOW)
    assert [b.live.name for b in diff.bindings] == [dashed.name]
    assert kinds(diff) == [("orchestrator_only", None, orphan.name)]


def test_kubernetes_name_without_prefix_binds():
    row = schedule("n", K8S.id, "k8s_batch")
    item = live("0a1b2c3d-k8s-batch", native_id="zenml/0a1b2c3d-k8s-batch")
    diff = diff_target(scope("kubernetes", K8S), snapshot([row], [K8S]), [item], NOW)
    assert [b.live.name for b in diff.bindings] == [item.name]


def test_kubeflow_name_mark_needs_the_experiment_too():
    kfp = component("kfp", "kubeflow")
    rows = [schedule("a", kfp.id, "kfp_etl")]
    stray = live(dag_name("kfp_other"), group=None)
    in_experiment = live(dag_name("kfp_other", 2), group="kfp_other")
    diff = diff_target(scope("kubeflow", kfp), snapshot(rows, [kfp], {"kfp_etl", "kfp_other"}),
                       [stray, in_experiment], NOW)
    assert [d.live.name for d in diff.drift if d.kind is DriftKind.ORCHESTRATOR_ONLY] == [in_experiment.name]
    assert stray in diff.unmanaged


# -- properties ---------------------------------------------------------------------------

PIPELINES = ["a", "b", "c"]
CRONS = ["0 1 * * *", "0 2 * * *", "0 0 1 * * *", "TZ=UTC 0 1 * * *"]


@st.composite
def worlds(draw):
    comp = AIRFLOW
    rows = []
    for i in range(draw(st.integers(0, 6))):
        ended = draw(st.booleans()) and draw(st.booleans())
        rows.append(schedule(
            f"s{i}", comp.id, draw(st.sampled_from(PIPELINES)), cron=draw(st.sampled_from(CRONS)),
            active=draw(st.booleans()), archived=draw(st.booleans()) and draw(st.booleans()),
            end=NOW - timedelta(days=1) if ended else None,
            created=T0 + timedelta(hours=draw(st.integers(0, 100))),
        ))
    items = []
    for j in range(draw(st.integers(0, 7))):
        if draw(st.integers(0, 4)) == 0:
            name = f"manual_{j}"
        else:
            name = dag_name(draw(st.sampled_from(PIPELINES + ["zz"])), j)
        items.append(live(name, cron=draw(st.sampled_from(CRONS)),
                          state=draw(st.sampled_from([LiveState.ENABLED, LiveState.PAUSED])),
                          created=T0 + timedelta(hours=draw(st.integers(0, 100)))))
    return rows, items, comp


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_every_expected_schedule_lands_in_exactly_one_place(world):
    rows, items, comp = world
    diff = diff_target(scope("airflow", comp), snapshot(rows, [comp], set(PIPELINES)), items, NOW)
    bound = {b.schedule.id: b for b in diff.bindings}
    for r in diff.expected:
        mine = [d for d in diff.drift if d.schedule is not None and d.schedule.id == r.id
                and d.kind is not DriftKind.DUPLICATE]
        zenml_only = any(d.kind is DriftKind.ZENML_ONLY for d in mine)
        mismatch = any(d.kind in (DriftKind.SPEC_MISMATCH, DriftKind.STATE_MISMATCH) for d in mine)
        in_sync = (r.id in bound and not mismatch) or (r.id not in bound and not r.active)
        assert [zenml_only, mismatch, in_sync].count(True) == 1, r
        assert zenml_only == (r.id not in bound and r.active)
    assert diff.in_sync <= diff.items


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_unmanaged_is_never_an_orphan_and_every_live_is_classified_once(world):
    rows, items, comp = world
    diff = diff_target(scope("airflow", comp), snapshot(rows, [comp], set(PIPELINES)), items, NOW)
    managed = {l.native_id for l in diff.managed}
    unmanaged = {l.native_id for l in diff.unmanaged}
    assert managed.isdisjoint(unmanaged)
    assert managed | unmanaged == {l.native_id for l in items}
    assert len(diff.managed) == len(managed)
    for drift in diff.drift:
        if drift.kind in (DriftKind.ORCHESTRATOR_ONLY, DriftKind.DUPLICATE):
            assert drift.live.native_id in managed
    assert all(l.name.startswith("manual_") is False for l in diff.managed)


@settings(max_examples=200, deadline=None)
@given(worlds(), st.randoms(use_true_random=False))
def test_input_order_does_not_change_the_result(world, rnd):
    rows, items, comp = world
    before = diff_target(scope("airflow", comp), snapshot(rows, [comp], set(PIPELINES)), items, NOW)
    shuffled_rows, shuffled_items = list(rows), list(items)
    rnd.shuffle(shuffled_rows)
    rnd.shuffle(shuffled_items)
    after = diff_target(scope("airflow", comp), snapshot(shuffled_rows, [comp], set(PIPELINES)), shuffled_items, NOW)
    assert kinds(before) == kinds(after)
