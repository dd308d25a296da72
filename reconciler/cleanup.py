"""Acting on the cleanup plan: rule 7 of DESIGN.md §5, the audit log, and crash recovery.

The policy (reconciler/policy.py) decides; this module does. For every `ready`,
approved candidate of a target whose listing was complete: re-read the object
and the registry, act only if the candidate is unchanged and still orphaned,
then verify. Each action is written to the audit log before it is made
(`pending`) and completed after; a record left `pending` by a crash is
completed at the next start from what the target shows then, so an action is
never left unrecorded and never made twice.

Every other candidate that earned dry-run evidence this cycle gets a dry-run
audit record, which is what `cleanup_actions_total{outcome="dry_run"}` counts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

from reconciler import failpoints
from reconciler.config import Config
from reconciler.model import LiveSchedule, LiveState
from reconciler.policy import Candidate, Evidence, fingerprint, next_evidence
from reconciler.report import ActionResult, TargetReport
from reconciler.state import AuditRecord, StateStore

log = structlog.get_logger("reconciler")

Recheck = Callable[[str], set[str] | None]  # target name -> native ids still candidates, None if unknown


@dataclass(frozen=True)
class CycleFacts:
    """What the cycle's actions are stamped with in the audit log."""

    cycle_id: int
    replica: str
    config: Config


class Cleaner:
    def __init__(self, store: StateStore, replica: str, is_leader: Callable[[], bool],
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.replica = replica
        self.is_leader = is_leader
        self._clock = clock

    # -- crash recovery --------------------------------------------------------------

    def recover(self, providers: Mapping[str, Any], settle: Mapping[str, float]) -> set[str]:
        """Complete every audit record a crash left pending. Returns the targets still unresolved.

        The target is asked what it shows now: a delete whose object is gone, or a
        pause whose object is paused, did happen. One whose object is unchanged may
        still be in flight (a Vertex delete is a long-running operation), so its
        record stays pending and its target's actions wait, for up to the target's
        `settle` seconds (its list_deadline, what an action itself may wait) from
        when the action began; only then is it recorded as not done. A target that
        cannot answer keeps its record pending and its actions blocked.
        """
        unresolved: set[str] = set()
        for record in self.store.pending_actions():
            record_log = log.bind(target=record.target, schedule=record.native_id, audit_id=record.id)
            if record.dry_run:
                self.store.complete_action(record.id, "dry_run", None, self._clock())
                continue
            provider = providers.get(record.target)
            if provider is None:
                record_log.warning("pending audit record for a target no longer configured: left pending")
                continue
            try:
                now_live = provider.get(record.native_id)
            except Exception as exc:  # noqa: BLE001 - unknown: keep it pending, block the target
                record_log.error("recovery: target could not be read; its actions stay blocked", error=_one_line(exc))
                unresolved.add(record.target)
                continue
            outcome, error = _recovered_outcome(record, now_live)
            in_flight = record.requested_at is not None and self._clock() - record.requested_at < settle.get(
                record.target, 0.0)
            if outcome == "failed" and in_flight:
                record_log.warning("recovery: an interrupted action may still take effect; its target waits",
                                   action=record.action)
                unresolved.add(record.target)
                continue
            self.store.complete_action(record.id, outcome, error, self._clock())
            record_log.warning("recovered an action interrupted by a crash", action=record.action, outcome=outcome,
                               error=error)
        return unresolved

    # -- one target's cleanup ---------------------------------------------------------

    def finish_target(self, facts: CycleFacts, report: TargetReport, provider: Any,
                      evidence: Mapping[str, Evidence], recheck: Recheck) -> TargetReport:
        """Act on the approved candidates, write dry-run records and evidence; return the final report."""
        if report.diff is None or not facts.config.cleanup.enabled:
            return report  # unknown drift: evidence and the log stay as they were
        target_log = log.bind(cycle=facts.cycle_id, target=report.name)
        candidates: list[Candidate] = []
        results: list[ActionResult] = []
        still: set[str] | None = None
        for candidate in report.candidates:
            if candidate.stage in ("dry_run", "ready") and not candidate.approved:
                audit_id = self._dry_run(facts, report, candidate)
                results.append(ActionResult(candidate.native_id, candidate.live_name, candidate.action, "dry_run",
                                            audit_id))
                candidates.append(candidate)
                continue
            if not candidate.approved:
                candidates.append(candidate)
                continue
            if still is None:
                still = recheck(report.name)
            final, result = self._act(facts, report, candidate, provider, still, target_log)
            candidates.append(final)
            if result is not None:
                results.append(result)
        now = self._clock()
        self.store.replace_evidence(report.name, next_evidence(candidates, evidence, now), facts.cycle_id)
        return replace(report, candidates=tuple(candidates), actions=tuple(results))

    def _dry_run(self, facts: CycleFacts, report: TargetReport, c: Candidate) -> int:
        return self.store.record_dry_run(**self._stamp(facts, report, c, c.reason, snapshot_of(c.live)))

    def _act(self, facts: CycleFacts, report: TargetReport, c: Candidate, provider: Any, still: set[str] | None,
             target_log: structlog.BoundLogger) -> tuple[Candidate, ActionResult | None]:
        act_log = target_log.bind(schedule=c.live_name, native_id=c.native_id, action=c.action)
        if not self.is_leader():
            return _blocked(c, "not_leader", "leadership lost before acting"), None
        try:
            fresh = provider.get(c.native_id)
        except Exception as exc:  # noqa: BLE001 - no re-read, no action
            act_log.error("re-read before acting failed: not acting", error=_one_line(exc))
            return _blocked(c, "reread_failed", f"re-read before acting failed: {_one_line(exc)}"), None
        if fresh is None:
            audit_id = self._instant(facts, report, c, snapshot_of(c.live), "already_gone", None)
            act_log.info("already gone before acting", audit_id=audit_id)
            return replace(c, stage="done", reason="already gone"), ActionResult(
                c.native_id, c.live_name, c.action, "already_gone", audit_id)
        changed = _changed(c, fresh, still)
        if changed is not None:
            audit_id = self._instant(facts, report, c, snapshot_of(fresh), "skipped_changed", changed)
            act_log.warning("skipped: changed since the plan", why=changed, audit_id=audit_id)
            return _blocked(c, "changed", f"skipped: {changed}"), ActionResult(
                c.native_id, c.live_name, c.action, "skipped_changed", audit_id)
        if not self.is_leader():  # the re-read can outlast the lease; another replica may be acting now
            act_log.warning("leadership lost during the re-read: not acting")
            return _blocked(c, "not_leader", "leadership lost before acting"), None
        audit_id = self.store.begin_action(dry_run=False, **self._stamp(facts, report, c, c.reason, snapshot_of(fresh)))
        failpoints.hit("action.after_audit_begin")
        self.store.mark_requested(audit_id, self._clock())
        failpoints.hit("action.after_mark_requested")
        outcome, error = self._perform(c, provider)
        failpoints.hit("action.after_act")
        self.store.complete_action(audit_id, outcome, error, self._clock())
        failpoints.hit("action.after_audit_complete")
        act_log.info("cleanup action", outcome=outcome, error=error, audit_id=audit_id)
        result = ActionResult(c.native_id, c.live_name, c.action, outcome, audit_id, error)
        if outcome == "failed":
            return _blocked(c, "action_failed", f"{c.action} failed: {error}"), result
        done = "already gone" if outcome == "already_gone" else f"{c.action}d (audit record {audit_id})"
        return replace(c, stage="done", reason=done), result

    def _perform(self, c: Candidate, provider: Any) -> tuple[str, str | None]:
        try:
            existed = provider.delete(c.native_id) if c.action == "delete" else provider.pause(c.native_id)
        except Exception as exc:  # noqa: BLE001 - the outcome is recorded, the loop goes on
            return "failed", _one_line(exc)
        if not existed:
            return "already_gone", None
        try:
            after = provider.get(c.native_id)
        except Exception as exc:  # noqa: BLE001
            return "failed", f"acted, but could not verify: {_one_line(exc)}"
        if c.action == "delete" and after is not None:
            return "failed", "deleted, but the target still lists it"
        if c.action == "pause" and after is not None and after.state is LiveState.ENABLED:
            return "failed", "paused, but the target still shows it enabled"
        return "succeeded", None

    def _instant(self, facts: CycleFacts, report: TargetReport, c: Candidate, snapshot: Mapping[str, Any],
                 outcome: str, error: str | None) -> int:
        audit_id = self.store.begin_action(dry_run=False, **self._stamp(facts, report, c, c.reason, snapshot))
        self.store.complete_action(audit_id, outcome, error, self._clock())
        return audit_id

    def _stamp(self, facts: CycleFacts, report: TargetReport, c: Candidate, rule: str,
               snapshot: Mapping[str, Any]) -> dict[str, Any]:
        cleanup = facts.config.cleanup
        return dict(cycle_id=facts.cycle_id, replica=facts.replica, target=report.name, flavor=report.flavor,
                    native_id=c.native_id, live_name=c.live_name, kind=c.kind.value, action=c.action, rule=rule,
                    approved=cleanup.approve, approve_only=list(cleanup.approve_only) or None,
                    fingerprint=c.fingerprint, snapshot=snapshot, now=self._clock())


def snapshot_of(live: LiveSchedule | None) -> dict[str, Any]:
    """The audit snapshot: the API object when the provider kept it, else every field it mapped."""
    if live is None:
        return {}
    if live.raw:
        return {"object": dict(live.raw), "fields": _fields(live)}
    return {"object": None, "fields": _fields(live)}


def _fields(live: LiveSchedule) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in dataclasses.fields(live):
        if field.name == "raw":
            continue
        value = getattr(live, field.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, LiveState):
            value = value.value
        elif isinstance(value, frozenset):
            value = sorted(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        out[field.name] = value
    return out


def _changed(c: Candidate, fresh: LiveSchedule, still: set[str] | None) -> str | None:
    if fingerprint(c, fresh) != c.fingerprint:
        return "the live schedule changed between the plan and the action"
    if still is None:
        return "the registry could not be re-read before acting"
    if c.native_id not in still:
        return "no longer orphaned after re-reading the registry"
    return None


def _recovered_outcome(record: AuditRecord, now_live: LiveSchedule | None) -> tuple[str, str | None]:
    note = "completed at recovery after a crash"
    if record.requested_at is None:
        return "failed", f"{note}: interrupted before the request was sent; nothing was done"
    if record.action == "delete":
        if now_live is None:
            return "succeeded", f"{note}: the object is gone"
        return "failed", f"{note}: interrupted before the delete took effect"
    if record.action == "pause":
        if now_live is None:
            return "already_gone", f"{note}: the object is gone"
        if now_live.state is not LiveState.ENABLED:
            return "succeeded", f"{note}: the object is paused"
        return "failed", f"{note}: interrupted before the pause took effect"
    if record.action == "resume":
        if now_live is not None and now_live.state is LiveState.ENABLED:
            return "succeeded", f"{note}: the object is enabled"
        return "failed", f"{note}: the object is not enabled"
    return "failed", f"{note}: interrupted; check the target for a recreated copy"


def _blocked(c: Candidate, code: str, reason: str) -> Candidate:
    return replace(c, stage="blocked", blocked_by=code, reason=reason, approved=False)


def _one_line(exc: BaseException) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:500]

