"""Which drift is a cleanup candidate, and how far along the safety chain it is. Pure.

DESIGN.md §5 orders the rules; the first that stops a candidate is its reason.
This version decides the stages it can decide without the state store: cleanup
disabled, protected, and otherwise dry run. Dry-run evidence, the approval
flag, budgets and actions come with the cleanup work (see the README).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Literal

from reconciler.config import CleanupConfig, Protect, TargetConfig
from reconciler.model import DriftKind, LiveSchedule, TargetDiff

Stage = Literal["dry_run", "ready", "protected", "blocked", "done"]


@dataclass(frozen=True)
class Candidate:
    live: LiveSchedule
    kind: DriftKind
    schedule_id: str | None
    action: Literal["delete", "pause"]
    stage: Stage
    reason: str


def plan_candidates(diff: TargetDiff, cleanup: CleanupConfig, target: TargetConfig) -> list[Candidate]:
    kinds = {DriftKind(k) for k in cleanup.include}
    action = target.action or ("pause" if target.type == "airflow" else cleanup.action)
    out: list[Candidate] = []
    for drift in diff.drift:
        if drift.kind not in kinds or drift.live is None:
            continue
        live = drift.live
        # Airflow brings a deleted DAG back on the next parse while its file exists.
        chosen = "pause" if action == "delete" and target.type == "airflow" and not live.stale else action
        stage, reason = _stage(live, cleanup, target)
        out.append(Candidate(live, drift.kind, drift.schedule.id if drift.schedule else None, chosen, stage, reason))
    return out


def _stage(live: LiveSchedule, cleanup: CleanupConfig, target: TargetConfig) -> tuple[Stage, str]:
    if not cleanup.enabled:
        return "blocked", "cleanup is disabled (report only)"
    protected_by = protection(live, cleanup.protect) or protection(live, target.protect)
    if protected_by:
        return "protected", protected_by
    return "dry_run", "dry run: this version reports candidates and never acts"


def protection(live: LiveSchedule, protect: Protect) -> str | None:
    for pattern in protect.names:
        if fnmatch.fnmatchcase(live.name, pattern) or fnmatch.fnmatchcase(live.native_id, pattern):
            return f"protected by name pattern {pattern!r}"
    for key, value in protect.labels.items():
        if live.labels.get(key) == value:
            return f"protected by label {key}={value}"
    return None
