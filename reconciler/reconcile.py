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
from dataclasses import dataclass
from datetime import datetime, timezone

import structlog

from providers.base import RegistryProvider, TargetProvider
from reconciler.config import Config, TargetConfig
from reconciler.diff import diff_target
from reconciler.model import LiveSchedule, RegistrySnapshot
from reconciler.policy import plan_candidates
from reconciler.report import CycleReport, RegistryReport, TargetReport
from reconciler.scope import ScopeError, resolve_scope

log = structlog.get_logger("reconciler")

TargetCallback = Callable[[TargetReport], None]


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


class Reconciler:
    def __init__(self, config: Config, registry: RegistryProvider, targets: Sequence[Target],
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.config = config
        self.registry = registry
        self.targets = list(targets)
        self._clock = clock
        self._in_flight: dict[str, _Listing] = {}
        self._changed = threading.Condition()  # notified whenever a listing finishes

    def cycle(self, number: int, on_target: TargetCallback | None = None,
              inventory: Mapping[str, Mapping[str, str]] | None = None) -> CycleReport:
        started = time.monotonic()
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
                                             now, (inventory or {}).get(target.config.name, {}))
                reports[target.config.name] = report
                self._log_target(cycle_log, report)
                if on_target is not None:
                    on_target(report)
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
                       registry: RegistryReport, now: datetime, inventory: Mapping[str, str]) -> TargetReport:
        config, provider = target.config, target.provider
        base = {"name": config.name, "flavor": config.type, "endpoint": provider.endpoint}
        if not listing.done.is_set():
            waited = time.monotonic() - listing.started
            return TargetReport(**base, status="error",
                                error=f"listing still running after {waited:.0f}s (deadline {config.list_deadline:g}s)")
        seconds = (listing.finished or listing.started) - listing.started
        if listing.error is not None or listing.items is None:
            return TargetReport(**base, status="error", error=listing.error or "listing failed", list_seconds=seconds)
        if snapshot is None:
            return TargetReport(**base, status="error", error=f"registry unavailable: {registry.error}",
                                list_seconds=seconds)
        try:
            scope = resolve_scope(config, snapshot, [t.config for t in self.targets])
        except ScopeError as exc:
            return TargetReport(**base, status="error", error=str(exc), list_seconds=seconds)
        cpu_started = time.thread_time()
        diff = diff_target(scope, snapshot, listing.items, now, inventory)
        candidates = tuple(plan_candidates(diff, self.config.cleanup, config))
        return TargetReport(**base, status="ok", diff=diff, candidates=candidates, list_seconds=seconds,
                            diff_cpu_seconds=time.thread_time() - cpu_started)

    def _log_target(self, cycle_log: structlog.BoundLogger, report: TargetReport) -> None:
        target_log = cycle_log.bind(target=report.name, flavor=report.flavor)
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
