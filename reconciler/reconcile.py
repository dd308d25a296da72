"""One reconcile cycle: read the registry, list every target at once, diff each.

`Reconciler.cycle()` returns a CycleReport and leaves metrics, retries across
cycles and scheduling to the loop around it. Targets are listed concurrently,
each in its own thread with its own deadline, so a slow or failing target never
delays or poisons another: each target's result is handed to `on_target` the
moment it is known. A listing still running from an earlier cycle is not
started twice; that target is unknown until it finishes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import structlog

from providers.base import RegistryProvider, TargetProvider
from reconciler.config import Config, TargetConfig
from reconciler.diff import diff_target
from reconciler.model import DriftKind, LiveSchedule, RegistrySnapshot
from reconciler.policy import Evidence, Guards, carried_over, plan_candidates, registry_problem
from reconciler.report import CycleReport, RegistryReport, TargetReport
from reconciler.scope import ScopeError, resolve_scope

log = structlog.get_logger("reconciler")

# Called with each target's report as soon as it is known; a report it returns replaces it
# in the cycle's report (the loop's cleaner returns the candidates' final stages).
TargetCallback = Callable[[TargetReport], "TargetReport | None"]


@dataclass
class _Listing:
    """A listing in flight; outlives its cycle if it hangs past the deadline."""

    done: threading.Event
    started: float
    items: list[LiveSchedule] | None = None
    error: str | None = None
    finished: float | None = None


@dataclass(frozen=True)
class Target:
    config: TargetConfig
    provider: TargetProvider


@dataclass(frozen=True)
class CleanupContext:
    """What the cleanup policy needs from outside the cycle: the state store's memory and the lease.

    The default is what `plan` on a fresh machine sees: no evidence, no inventory.
    """

    evidence: Mapping[str, Mapping[str, Evidence]] = field(default_factory=dict)  # target -> native id -> ...
    restored: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    inventory: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    registry_baseline: int | None = None  # the last good registry count, for the shrink guard
    leader: bool = True
    enforce_leader: bool = True  # False for `plan`: show what the leader would do
    acting: bool = True
    held_targets: Mapping[str, str] = field(default_factory=dict)  # target -> why its actions wait (recovery)


class Reconciler:
    def __init__(self, config: Config, registry: RegistryProvider, targets: Sequence[Target],
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.config = config
        self.registry = registry
        self.targets = list(targets)
        self._clock = clock
        self._in_flight: dict[str, _Listing] = {}
        self._fresh: RegistrySnapshot | None = None  # the registry read again before acting, once per cycle
        self._changed = threading.Condition()  # notified whenever a listing finishes

    def cycle(self, number: int, on_target: TargetCallback | None = None,
              context: CleanupContext | None = None) -> CycleReport:
        context = context or CleanupContext()
        started = time.monotonic()
        self._fresh = None
        cycle_log = log.bind(cycle=number)
        listings = {t.config.name: self._start_listing(t) for t in self.targets}
        registry_started = time.monotonic()
        snapshot, registry_report = self._read_registry(cycle_log)
        registry_seconds = time.monotonic() - registry_started
        now = self._clock()
        reports: dict[str, TargetReport] = {}
        pending = list(self.targets)
        while pending:
            with self._changed:  # checked under the lock, so no finish slips between check and wait
                ready = [t for t in pending
                         if listings[t.config.name].done.is_set() or self._overdue(t, listings)]
                if not ready:
                    self._changed.wait(max(0.01, min(self._time_left(t, listings) for t in pending)))
                    continue
            for target in ready:
                report = self._target_report(target, listings[target.config.name], snapshot, registry_report,
                                             now, context)
                self._log_target(cycle_log, report)
                if on_target is not None:
                    report = on_target(report) or report
                reports[target.config.name] = report
            pending = [t for t in pending if t not in ready]
        report = CycleReport(
            cycle=number,
            generated_at=now,
            registry=registry_report,
            targets=tuple(reports[t.config.name] for t in self.targets),
            duration_seconds=time.monotonic() - started,
            registry_seconds=registry_seconds,
        )
        cycle_log.info(
            "cycle finished", result=report.result, seconds=round(report.duration_seconds, 3),
            registry_seconds=round(registry_seconds, 3),
            registry=registry_report.status, registry_schedules=registry_report.schedules,
            targets_ok=sum(1 for t in report.targets if t.status == "ok"), targets=len(report.targets),
            drift=sum(len(t.diff.drift) for t in report.targets if t.diff is not None),
        )
        return report

    def _read_registry(self, cycle_log: structlog.BoundLogger) -> tuple[RegistrySnapshot | None, RegistryReport]:
        try:
            snapshot = self.registry.read()
        except Exception as exc:  # noqa: BLE001 - any failure is an unknown registry, never an empty one
            error = _one_line(exc)
            cycle_log.error("registry read failed", error=error)
            return None, RegistryReport("error", None, error)
        return snapshot, RegistryReport("ok", snapshot.schedule_count)

    def _start_listing(self, target: Target) -> _Listing:
        previous = self._in_flight.get(target.config.name)
        if previous is not None and not previous.done.is_set():
            return previous  # still hanging from an earlier cycle: report it, do not pile up
        listing = _Listing(done=threading.Event(), started=time.monotonic())

        def run() -> None:
            try:
                listing.items = target.provider.list_schedules()
            except Exception as exc:  # noqa: BLE001 - a failed listing is unknown drift
                listing.error = _one_line(exc)
            finally:
                listing.finished = time.monotonic()
                with self._changed:
                    listing.done.set()
                    self._changed.notify_all()

        self._in_flight[target.config.name] = listing
        threading.Thread(target=run, name=f"list-{target.config.name}", daemon=True).start()
        return listing

    def _time_left(self, target: Target, listings: Mapping[str, _Listing]) -> float:
        return target.config.list_deadline - (time.monotonic() - listings[target.config.name].started)

    def _overdue(self, target: Target, listings: Mapping[str, _Listing]) -> bool:
        return self._time_left(target, listings) <= 0

    def _target_report(self, target: Target, listing: _Listing, snapshot: RegistrySnapshot | None,
                       registry: RegistryReport, now: datetime, context: CleanupContext) -> TargetReport:
        config, provider = target.config, target.provider
        base = {"name": config.name, "flavor": config.type, "endpoint": provider.endpoint}
        evidence = context.evidence.get(config.name, {})
        seconds = None if listing.finished is None else listing.finished - listing.started
        error: str | None = None
        if not listing.done.is_set():
            waited = time.monotonic() - listing.started
            error = f"listing still running after {waited:.0f}s (deadline {config.list_deadline:g}s)"
        elif listing.error is not None or listing.items is None:
            error = listing.error or "listing failed"
        elif snapshot is None:
            error = f"registry unavailable: {registry.error}"
            held = carried_over(evidence, "registry_unavailable", f"registry read failed: {registry.error}")
            return TargetReport(**base, status="error", error=error, list_seconds=seconds, candidates=tuple(held))
        if error is not None:
            held = carried_over(evidence, "target_unavailable", f"target listing incomplete: {error}")
            return TargetReport(**base, status="error", error=error, list_seconds=seconds, candidates=tuple(held))
        assert snapshot is not None and listing.items is not None
        try:
            scope = resolve_scope(config, snapshot, [t.config for t in self.targets])
        except ScopeError as exc:
            return TargetReport(**base, status="error", error=str(exc), list_seconds=seconds)
        cpu_started = time.thread_time()
        diff = diff_target(scope, snapshot, listing.items, now, context.inventory.get(config.name, {}))
        held_reason = context.held_targets.get(config.name)
        guards = Guards(
            registry_problem=registry_problem(registry.schedules, registry.error, context.registry_baseline,
                                              self.config.cleanup),
            target_problem=None if held_reason is None else ("audit_pending", held_reason),
            leader=context.leader, enforce_leader=context.enforce_leader,
        )
        candidates = plan_candidates(diff, self.config.cleanup, config, guards, evidence,
                                     context.restored.get(config.name, {}), now, context.acting)
        return TargetReport(**base, status="ok", diff=diff, candidates=tuple(candidates), list_seconds=seconds,
                            diff_cpu_seconds=time.thread_time() - cpu_started)

    def still_candidates(self, report: TargetReport, inventory: Mapping[str, str]) -> set[str] | None:
        """Rule 7's second look: the target's candidates against a registry read again now.

        The live side is the cycle's listing (the object itself is re-read by the
        caller); the registry is read once per cycle, at the first target that acts.
        None when the registry cannot be read: then nothing is acted on.
        """
        if report.diff is None:
            return None
        if self._fresh is None:
            try:
                self._fresh = self.registry.read()
            except Exception as exc:  # noqa: BLE001 - unknown registry: act on nothing
                log.error("registry re-read before acting failed", error=_one_line(exc))
                return None
        target = next(t for t in self.targets if t.config.name == report.name)
        try:
            scope = resolve_scope(target.config, self._fresh, [t.config for t in self.targets])
        except ScopeError:
            return None
        items = [*report.diff.managed, *report.diff.unmanaged]
        diff = diff_target(scope, self._fresh, items, self._clock(), inventory)
        kinds = {DriftKind(k) for k in self.config.cleanup.include}
        return {d.live.native_id for d in diff.drift if d.kind in kinds and d.live is not None}

    def _log_target(self, cycle_log: structlog.BoundLogger, report: TargetReport) -> None:
        target_log = cycle_log.bind(target=report.name, flavor=report.flavor)
        blocked: dict[str, int] = {}
        for candidate in report.candidates:
            if candidate.blocked_by not in (None, "disabled"):  # disabled is the default, not news
                blocked[candidate.blocked_by] = blocked.get(candidate.blocked_by, 0) + 1
        if blocked:
            target_log.warning("cleanup blocked", blocked=blocked,
                               reasons=sorted({c.reason for c in report.candidates if c.blocked_by})[:5])
        if report.diff is None:
            target_log.warning("target unknown", error=report.error, list_seconds=_round(report.list_seconds))
            return
        kinds: dict[str, int] = {}
        for drift in report.diff.drift:
            kinds[drift.kind.value] = kinds.get(drift.kind.value, 0) + 1
        target_log.info(
            "target reconciled", list_seconds=_round(report.list_seconds),
            diff_cpu_seconds=_round(report.diff_cpu_seconds), expected=len(report.diff.expected),
            managed=len(report.diff.managed), unmanaged=len(report.diff.unmanaged),
            in_sync_ratio=round(report.diff.in_sync_ratio, 4), drift=kinds,
        )

    def close(self) -> None:
        for target in self.targets:
            try:
                target.provider.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self.registry.close()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:500]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
