"""The cleanup policy: which drift is a candidate, and how far along DESIGN.md §5 it got. Pure.

The rules run in §5's order and the first that stops a candidate is its stage
and reason: enabled → guards → protection → dry-run evidence → approval →
budget. A candidate that passes them all is `ready`; acting on it (re-read,
act, verify, audit) is `reconciler/cleanup.py`'s job, not this module's.

`blocked_by` is a short, fixed code per rule: it is the `reason` label of
`cleanup_blocked`, so that metric keeps a handful of series whatever the
human-readable reason says.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Literal

from reconciler.config import CleanupConfig, Protect, TargetConfig
from reconciler.model import DriftKind, LiveSchedule, LiveState, TargetDiff

Stage = Literal["dry_run", "ready", "protected", "blocked", "done"]
Action = Literal["delete", "pause"]


@dataclass(frozen=True)
class Evidence:
    """How long a candidate has been reported as a dry-run action, unchanged (persisted)."""

    fingerprint: str
    live_name: str
    kind: str
    action: str
    first_seen: float  # epoch seconds of its first dry-run cycle
    last_seen: float
    cycles_seen: int


@dataclass(frozen=True)
class Guards:
    """What the guards of rule 2 know about this cycle, for one target."""

    registry_problem: tuple[str, str] | None = None  # (code, reason) when the registry may mislead
    target_problem: tuple[str, str] | None = None  # (code, reason) when the target may mislead
    leader: bool = True
    enforce_leader: bool = True  # `plan` shows what the leader would do


@dataclass(frozen=True)
class Candidate:
    native_id: str
    live_name: str
    kind: DriftKind
    schedule_id: str | None
    action: Action
    stage: Stage
    reason: str
    blocked_by: str | None = None  # the rule's code when stage is `blocked`
    fingerprint: str = ""
    live: LiveSchedule | None = None  # None when carried over from an earlier cycle's evidence
    passed_protection: bool = False  # earns dry-run evidence this cycle
    approved: bool = False  # passed rule 5: acted on unless the budget blocks it


def registry_problem(schedules: int | None, error: str | None, last_good: int | None,
                     cleanup: CleanupConfig) -> tuple[str, str] | None:
    """Rule 2's registry guard: unreadable, empty, or sharply shrunk since the last good read."""
    if schedules is None:
        return "registry_unavailable", f"registry read failed: {error or 'unknown error'}"
    if cleanup.allow_empty_registry:
        return None
    if schedules == 0:
        return "registry_empty", "the registry is empty (set cleanup.allow_empty_registry to allow)"
    if last_good and schedules < last_good * (1 - cleanup.registry_drop_guard):
        return ("registry_shrunk", f"the registry shrank from {last_good} to {schedules} schedules, more than "
                f"registry_drop_guard {cleanup.registry_drop_guard:g}")
    return None


def plan_candidates(diff: TargetDiff, cleanup: CleanupConfig, target: TargetConfig, guards: Guards,
                    evidence: Mapping[str, Evidence], restored: Mapping[str, int], now: datetime,
                    acting: bool = True) -> list[Candidate]:
    """Every candidate of one target with its stage and reason (rules 1-6 of §5)."""
    kinds = {DriftKind(k) for k in cleanup.include}
    staged: list[Candidate] = []
    for drift in diff.drift:
        if drift.kind not in kinds or drift.live is None:
            continue
        live = drift.live
        candidate = Candidate(
            native_id=live.native_id, live_name=live.name, kind=drift.kind,
            schedule_id=drift.schedule.id if drift.schedule else None,
            action=action_for(live, cleanup, target), stage="dry_run", reason="", live=live,
        )
        candidate = replace(candidate, fingerprint=fingerprint(candidate, live))
        staged.append(_stage(candidate, live, cleanup, target, guards, evidence, restored, now, acting))
    return _budget(staged, cleanup, len(diff.managed), acting)


def carried_over(evidence: Mapping[str, Evidence], code: str, reason: str) -> list[Candidate]:
    """Last known candidates of a target whose drift is unknown this cycle: all blocked by the guard."""
    return [Candidate(native_id=native_id, live_name=e.live_name, kind=DriftKind(e.kind), schedule_id=None,
                      action="pause" if e.action == "pause" else "delete", stage="blocked", reason=reason,
                      blocked_by=code, fingerprint=e.fingerprint)
            for native_id, e in sorted(evidence.items())]


def action_for(live: LiveSchedule, cleanup: CleanupConfig, target: TargetConfig) -> Action:
    action = target.action or ("pause" if target.type == "airflow" else cleanup.action)
    # Airflow brings a deleted DAG back on the next parse while its file exists (§5).
    if action == "delete" and target.type == "airflow" and not live.stale:
        return "pause"
    return action


def fingerprint(candidate: Candidate, live: LiveSchedule) -> str:
    """What must not change between the dry runs and the action (evidence resets when it does).

    Only what the operator reviewed: the live schedule's identity, spec, state and
    labels, and the drift. Not the API object's run counters or next-run times.
    """
    fields = {
        "native_id": live.native_id, "name": live.name, "state": live.state.value, "cron": live.cron,
        "interval": live.interval_seconds, "start": _iso(live.start_time), "end": _iso(live.end_time),
        "labels": dict(sorted(live.labels.items())), "kind": candidate.kind.value,
        "schedule_id": candidate.schedule_id, "action": candidate.action,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def next_evidence(candidates: Sequence[Candidate], previous: Mapping[str, Evidence],
                  now: float) -> dict[str, Evidence]:
    """The evidence after this cycle: one more dry-run cycle for each candidate that earned one.

    A candidate that changed starts over; one that left is forgotten; one held back
    by a guard keeps what it had (a guard is no reason to forget, nor to count).
    """
    out: dict[str, Evidence] = {}
    for c in candidates:
        before = previous.get(c.native_id)
        same = before is not None and before.fingerprint == c.fingerprint
        if c.passed_protection and c.stage != "done":
            if same and before is not None:
                out[c.native_id] = replace(before, last_seen=now, cycles_seen=before.cycles_seen + 1)
            else:
                out[c.native_id] = Evidence(c.fingerprint, c.live_name, c.kind.value, c.action, now, now, 1)
        elif c.stage == "blocked" and c.blocked_by in GUARD_CODES and same and before is not None:
            out[c.native_id] = before
    return out


GUARD_CODES = frozenset({"registry_unavailable", "registry_empty", "registry_shrunk", "target_unavailable",
                         "not_leader", "audit_pending"})


def _stage(c: Candidate, live: LiveSchedule, cleanup: CleanupConfig, target: TargetConfig, guards: Guards,
           evidence: Mapping[str, Evidence], restored: Mapping[str, int], now: datetime,
           acting: bool) -> Candidate:
    # 1. enabled
    if not cleanup.enabled:
        return replace(c, stage="blocked", blocked_by="disabled", reason="cleanup is disabled (report only)")
    # 2. guards
    for problem in (guards.registry_problem, guards.target_problem):
        if problem is not None:
            return replace(c, stage="blocked", blocked_by=problem[0], reason=problem[1])
    if guards.enforce_leader and not guards.leader:
        return replace(c, stage="blocked", blocked_by="not_leader", reason="this replica is not the leader")
    # 3. protection
    protected_by = (_restored(live, restored) or protection(live, cleanup.protect)
                    or protection(live, target.protect))
    if protected_by:
        return replace(c, stage="protected", reason=protected_by)
    if c.action == "pause" and live.state is not LiveState.ENABLED:
        return replace(c, stage="done", reason=f"already {live.state.value}")
    c = replace(c, passed_protection=True)
    # 4. dry-run evidence, from earlier cycles only
    before = evidence.get(c.native_id)
    seen = before.cycles_seen if before is not None and before.fingerprint == c.fingerprint else 0
    if seen < cleanup.dry_run_cycles:
        return replace(c, stage="dry_run", reason=f"{seen} of {cleanup.dry_run_cycles} dry-run cycles seen")
    assert before is not None
    waited = now.timestamp() - before.first_seen
    if waited < cleanup.grace_period:
        until = datetime.fromtimestamp(before.first_seen + cleanup.grace_period, timezone.utc)
        return replace(c, stage="dry_run", reason=f"grace period until {_iso(until)}")
    # 5. the approval flag
    if not cleanup.approve:
        return replace(c, stage="ready", reason="waiting for approval (cleanup.approve is false)")
    if cleanup.approve_only and live.name not in cleanup.approve_only and live.native_id not in cleanup.approve_only:
        return replace(c, stage="ready", reason="waiting for approval (not in cleanup.approve_only)")
    verb = "will" if acting else "would"
    return replace(c, stage="ready", approved=True, reason=f"approved: the leader {verb} {c.action} it")


def _budget(candidates: list[Candidate], cleanup: CleanupConfig, managed: int, acting: bool) -> list[Candidate]:
    """Rule 6: over budget blocks every approved action of the target this cycle; never a truncation."""
    approved = [c for c in candidates if c.approved]
    allowed = min(cleanup.max_actions_per_cycle, math.floor(cleanup.max_fraction * managed))
    if len(approved) <= allowed:
        return candidates
    reason = (f"over budget: {len(approved)} approved actions, {allowed} allowed (max_actions_per_cycle "
              f"{cleanup.max_actions_per_cycle}, max_fraction {cleanup.max_fraction:g} of {managed} managed)")
    over = {id(c) for c in approved}
    return [replace(c, stage="blocked", blocked_by="over_budget", reason=reason, approved=False) if id(c) in over else c
            for c in candidates]


def protection(live: LiveSchedule, protect: Protect) -> str | None:
    for pattern in protect.names:
        if fnmatch.fnmatchcase(live.name, pattern) or fnmatch.fnmatchcase(live.native_id, pattern):
            return f"protected by name pattern {pattern!r}"
    for key, value in protect.labels.items():
        if live.labels.get(key) == value:
            return f"protected by label {key}={value}"
    return None


def _restored(live: LiveSchedule, restored: Mapping[str, int]) -> str | None:
    record = restored.get(live.native_id)
    return None if record is None else f"restored by an operator (audit record {record})"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
