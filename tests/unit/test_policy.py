"""The cleanup policy (DESIGN.md §5): every rule, its order, and the never-truncating budget."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.config import AirflowTarget, CleanupConfig, VertexTarget
from reconciler.model import Drift, DriftKind, LiveState, TargetDiff
from reconciler.policy import (
    Candidate, Evidence, Guards, carried_over, fingerprint, next_evidence, plan_candidates, registry_problem,
)
from tests.support.builders import NOW, live

VERTEX = VertexTarget(type="vertex", name="vx", project="p", location="l")
AIRFLOW = AirflowTarget(type="airflow", name="af", url="http://127.0.0.1:1")
ON = CleanupConfig(enabled=True, approve=True, dry_run_cycles=2, grace_period=3600, max_actions_per_cycle=10,
                   max_fraction=1.0)


def cfg(**changes) -> CleanupConfig:
    return ON.model_copy(update=changes)


def diff_of(*lives, managed_extra: int = 0, kind=DriftKind.ORCHESTRATOR_ONLY) -> TargetDiff:
    drift = tuple(Drift(kind, None, l, "orphan") for l in lives)
    managed = tuple(lives) + tuple(live(f"m{i}") for i in range(managed_extra))
    return TargetDiff(expected=(), bindings=(), managed=managed, unmanaged=(), drift=drift, in_sync=0)


def seasoned(diff: TargetDiff, cleanup: CleanupConfig, target=VERTEX, cycles: int = 2,
             age: float = 7200) -> dict[str, Evidence]:
    """Evidence as if every candidate had been a dry run `cycles` times, the first `age` seconds ago."""
    first = plan_candidates(diff, cleanup, target, Guards(), {}, {}, NOW)
    start = NOW.timestamp() - age
    return {c.native_id: Evidence(c.fingerprint, c.live_name, c.kind.value, c.action, start, start, cycles)
            for c in first}


def stages(candidates: list[Candidate]) -> dict[str, tuple[str, str | None]]:
    return {c.native_id: (c.stage, c.blocked_by) for c in candidates}


def test_disabled_blocks_everything_first():
    diff = diff_of(live("a"))
    off = cfg(enabled=False)
    got = plan_candidates(diff, off, VERTEX, Guards(registry_problem=("registry_empty", "empty"), leader=False),
                          seasoned(diff, off), {}, NOW)
    assert stages(got) == {"a": ("blocked", "disabled")}


def test_guards_come_before_protection_and_name_their_rule():
    diff = diff_of(live("keep-me"))
    cleanup = cfg(protect=ON.protect.model_copy(update={"names": ["keep-*"]}))
    evidence = seasoned(diff, cleanup)
    for guards, code in [(Guards(registry_problem=("registry_empty", "x")), "registry_empty"),
                         (Guards(target_problem=("audit_pending", "x")), "audit_pending"),
                         (Guards(leader=False), "not_leader")]:
        assert stages(plan_candidates(diff, cleanup, VERTEX, guards, evidence, {}, NOW)) == \
            {"keep-me": ("blocked", code)}
    # `plan` shows what the leader would do.
    got = plan_candidates(diff, cleanup, VERTEX, Guards(leader=False, enforce_leader=False), evidence, {}, NOW)
    assert stages(got) == {"keep-me": ("protected", None)}


def test_protection_by_name_label_target_list_and_restore():
    a, b, c, d = live("a-prod"), live("b", labels={"schedule-reconciler/protect": "true"}), live("c"), live("d")
    diff = diff_of(a, b, c, d)
    cleanup = cfg(protect=ON.protect.model_copy(update={
        "names": ["*-prod"], "labels": {"schedule-reconciler/protect": "true"}}))
    target = VERTEX.model_copy(update={"protect": VERTEX.protect.model_copy(update={"names": ["c"]})})
    got = plan_candidates(diff, cleanup, target, Guards(), seasoned(diff, cleanup, target), {"d": 41}, NOW)
    assert {x.native_id: x.stage for x in got} == {"a-prod": "protected", "b": "protected", "c": "protected",
                                                   "d": "protected"}
    assert "audit record 41" in next(x.reason for x in got if x.native_id == "d")


def test_evidence_needs_enough_earlier_cycles_and_the_grace_period():
    diff = diff_of(live("a"))
    for cycles, age, stage, reason in [
        (0, 0, "dry_run", "0 of 2 dry-run cycles seen"),
        (1, 7200, "dry_run", "1 of 2 dry-run cycles seen"),
        (2, 600, "dry_run", "grace period until"),
        (2, 3600, "ready", "approved"),
    ]:
        evidence = seasoned(diff, ON, cycles=cycles, age=age) if cycles else {}
        (got,) = plan_candidates(diff, ON, VERTEX, Guards(), evidence, {}, NOW)
        assert (got.stage, got.approved) == (stage, stage == "ready"), (cycles, age)
        assert got.reason.startswith(reason), got.reason


def test_a_changed_candidate_starts_its_evidence_over():
    diff = diff_of(live("a", cron="0 9 * * *"))
    evidence = seasoned(diff, ON)
    changed = diff_of(live("a", cron="0 10 * * *"))
    (got,) = plan_candidates(changed, ON, VERTEX, Guards(), evidence, {}, NOW)
    assert (got.stage, got.reason) == ("dry_run", "0 of 2 dry-run cycles seen")
    after = next_evidence([got], evidence, NOW.timestamp())
    assert after["a"].cycles_seen == 1 and after["a"].first_seen == NOW.timestamp()


def test_without_the_approval_flag_candidates_stay_ready_and_unapproved():
    diff = diff_of(live("a"), live("b"))
    unapproved = cfg(approve=False)
    got = plan_candidates(diff, unapproved, VERTEX, Guards(), seasoned(diff, unapproved), {}, NOW)
    assert [(c.stage, c.approved) for c in got] == [("ready", False)] * 2
    assert all("cleanup.approve is false" in c.reason for c in got)
    only_b = cfg(approve_only=["b"])
    got = plan_candidates(diff, only_b, VERTEX, Guards(), seasoned(diff, only_b), {}, NOW)
    assert {c.native_id: c.approved for c in got} == {"a": False, "b": True}


def test_over_budget_blocks_every_approved_action_of_the_target_never_some():
    lives = [live(f"o{i}") for i in range(4)]
    diff = diff_of(*lives, managed_extra=6)  # 10 managed
    for cleanup, allowed in [(cfg(max_actions_per_cycle=3), 3), (cfg(max_fraction=0.3), 3),
                             (cfg(max_actions_per_cycle=4), 4)]:
        got = plan_candidates(diff, cleanup, VERTEX, Guards(), seasoned(diff, cleanup), {}, NOW)
        if allowed < 4:
            assert {(c.stage, c.blocked_by) for c in got} == {("blocked", "over_budget")}
            assert "4 approved actions, 3 allowed" in got[0].reason
        else:
            assert all(c.approved for c in got)


def test_airflow_pauses_unless_the_dag_is_stale_and_delete_is_configured():
    fresh, stale = live("f"), live("s", stale=True)
    diff = diff_of(fresh, stale)
    got = {c.native_id: c.action for c in plan_candidates(diff, ON, AIRFLOW, Guards(), {}, {}, NOW)}
    assert got == {"f": "pause", "s": "pause"}  # Airflow's default action is pause
    deleting = AIRFLOW.model_copy(update={"action": "delete"})
    got = {c.native_id: c.action for c in plan_candidates(diff, ON, deleting, Guards(), {}, {}, NOW)}
    assert got == {"f": "pause", "s": "delete"}


def test_a_paused_candidate_whose_action_is_pause_is_done():
    diff = diff_of(live("p", state=LiveState.PAUSED), live("e"))
    pausing = VERTEX.model_copy(update={"action": "pause"})
    got = {c.native_id: c.stage for c in plan_candidates(diff, ON, pausing, Guards(), {}, {}, NOW)}
    assert got == {"p": "done", "e": "dry_run"}


def test_duplicates_are_candidates_only_when_included():
    diff = diff_of(live("d"), kind=DriftKind.DUPLICATE)
    assert plan_candidates(diff, ON, VERTEX, Guards(), {}, {}, NOW) == []
    with_dupes = cfg(include=["orchestrator_only", "duplicate"])
    assert [c.kind for c in plan_candidates(diff, with_dupes, VERTEX, Guards(), {}, {}, NOW)] == [DriftKind.DUPLICATE]


def test_registry_guard():
    assert registry_problem(None, "boom", 10, ON)[0] == "registry_unavailable"
    assert registry_problem(0, None, None, ON)[0] == "registry_empty"
    assert registry_problem(0, None, 10, cfg(allow_empty_registry=True)) is None
    assert registry_problem(4, None, 10, ON)[0] == "registry_shrunk"  # default guard 0.5
    assert registry_problem(5, None, 10, ON) is None
    assert registry_problem(5, None, None, ON) is None


def test_evidence_is_kept_across_a_guard_and_forgotten_when_the_candidate_leaves():
    diff = diff_of(live("a"), live("b"))
    evidence = seasoned(diff, ON, cycles=1)
    blocked = plan_candidates(diff, ON, VERTEX, Guards(leader=False), evidence, {}, NOW)
    assert next_evidence(blocked, evidence, NOW.timestamp()) == evidence
    only_a = plan_candidates(diff_of(live("a")), ON, VERTEX, Guards(), evidence, {}, NOW)
    after = next_evidence(only_a, evidence, NOW.timestamp() + 60)
    assert set(after) == {"a"} and after["a"].cycles_seen == 2 and after["a"].first_seen == evidence["a"].first_seen


def test_carried_over_candidates_are_blocked_by_the_guard():
    evidence = seasoned(diff_of(live("a")), ON)
    (held,) = carried_over(evidence, "target_unavailable", "target listing incomplete: boom")
    assert (held.stage, held.blocked_by, held.native_id, held.approved) == ("blocked", "target_unavailable", "a", False)


def test_the_fingerprint_ignores_nothing_the_operator_reviewed():
    base = live("a", labels={"team": "x"})
    c = plan_candidates(diff_of(base), ON, VERTEX, Guards(), {}, {}, NOW)[0]
    for changed in [live("a", labels={"team": "y"}), live("a", cron="1 9 * * *"), live("a", state=LiveState.PAUSED),
                    replace(base, end_time=NOW + timedelta(days=1))]:
        assert fingerprint(c, changed) != c.fingerprint
    assert fingerprint(c, replace(base, raw={"nextRunTime": "later"})) == c.fingerprint


# -- the safety property, over arbitrary inputs ----------------------------------------------

configs = st.builds(
    CleanupConfig, enabled=st.booleans(), approve=st.booleans(), dry_run_cycles=st.integers(1, 4),
    grace_period=st.sampled_from([0.0, 600.0, 3600.0]), max_actions_per_cycle=st.integers(0, 6),
    max_fraction=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    approve_only=st.lists(st.sampled_from(["o0", "o1", "o2"]), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(configs, st.integers(1, 6), st.integers(0, 10), st.booleans(), st.booleans(),
       st.lists(st.tuples(st.integers(0, 5), st.sampled_from([0.0, 900.0, 7200.0])), min_size=6, max_size=6),
       st.sets(st.integers(0, 5)))
def test_an_approved_candidate_passed_every_rule_and_the_budget_is_all_or_nothing(
        cleanup, orphans, extra, leader, registry_bad, history, protected):
    lives = [live(f"o{i}", labels={"p": "1"} if i in protected else {}) for i in range(orphans)]
    cleanup = cleanup.model_copy(update={"protect": cleanup.protect.model_copy(update={"labels": {"p": "1"}})})
    diff = diff_of(*lives, managed_extra=extra)
    plain = plan_candidates(diff, cleanup, VERTEX, Guards(), {}, {}, NOW)
    evidence = {c.native_id: Evidence(c.fingerprint, c.live_name, c.kind.value, c.action,
                                      NOW.timestamp() - age, NOW.timestamp(), cycles)
                for c, (cycles, age) in zip(plain, history) if cycles}
    guards = Guards(registry_problem=("registry_empty", "x") if registry_bad else None, leader=leader)
    got = plan_candidates(diff, cleanup, VERTEX, guards, evidence, {}, NOW)
    assert len(got) == orphans
    approved = [c for c in got if c.approved]
    for c in approved:
        e = evidence[c.native_id]
        assert cleanup.enabled and cleanup.approve and leader and not registry_bad
        assert c.native_id.removeprefix("o") not in {str(p) for p in protected}
        assert e.cycles_seen >= cleanup.dry_run_cycles and NOW.timestamp() - e.first_seen >= cleanup.grace_period
        assert not cleanup.approve_only or c.native_id in cleanup.approve_only
    allowed = min(cleanup.max_actions_per_cycle, int(cleanup.max_fraction * len(diff.managed)))
    assert len(approved) <= allowed
    over = [c for c in got if c.blocked_by == "over_budget"]
    assert not (over and approved), "the budget truncated instead of blocking"


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.integers(0, 10), st.integers(0, 8), st.sampled_from([0.0, 0.2, 0.5, 1.0]),
       st.lists(st.booleans(), min_size=8, max_size=8))
def test_the_budget_never_truncates(orphans, extra, max_actions, max_fraction, seasoned_flags):
    cleanup = cfg(max_actions_per_cycle=max_actions, max_fraction=max_fraction, grace_period=0)
    diff = diff_of(*[live(f"o{i}") for i in range(orphans)], managed_extra=extra)
    full = seasoned(diff, cleanup)
    evidence = {k: v for (k, v), keep in zip(sorted(full.items()), seasoned_flags) if keep}
    got = plan_candidates(diff, cleanup, VERTEX, Guards(), evidence, {}, NOW)
    eligible = len(evidence)
    allowed = min(max_actions, int(max_fraction * len(diff.managed)))
    approved = sum(1 for c in got if c.approved)
    over = sum(1 for c in got if c.blocked_by == "over_budget")
    assert (approved, over) == ((eligible, 0) if eligible <= allowed else (0, eligible))
