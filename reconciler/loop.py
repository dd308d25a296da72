"""The daemon: an APScheduler interval job around one cycle, plus HTTP.

A cycle here is: pick up a changed config file, complete audit records a crash
left pending, run `Reconciler.cycle` with what the state store remembers, and
hand each target's report to the cleaner (the leader's actions, dry-run
records, evidence) and then to the metrics. Never two cycles at once
(max_instances=1 and a lock), misfires coalesced into one run, jitter so that
replicas do not hit the APIs in step. SIGTERM/SIGINT stop the schedule, let a
running cycle finish within a grace period, release the lease, then exit 0.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Protocol

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from reconciler.cleanup import Cleaner, CycleFacts
from reconciler.config import Config, ConfigError
from reconciler.http import serve
from reconciler.logs import configure
from reconciler.metrics import Metrics
from reconciler.reconcile import CleanupContext, Reconciler
from reconciler.reload import ConfigWatcher, live_part
from reconciler.report import CycleReport, TargetReport, to_json
from reconciler.state import LAST_GOOD_REGISTRY, StateStore

log = structlog.get_logger("reconciler")

SHUTDOWN_GRACE = 20.0  # seconds a running cycle may take to finish after SIGTERM; Kubernetes gives 30
SHRUNK_SINCE = "registry.shrunk_since"


class Leadership(Protocol):
    identity: str

    def is_leader(self) -> bool: ...
    def on_change(self, callback: Callable[[bool], None]) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


class Daemon:
    """The loop, and the StatusSource the HTTP endpoints read."""

    def __init__(self, config: Config, reconciler: Reconciler, metrics: Metrics, store: StateStore,
                 leadership: Leadership, watcher: ConfigWatcher | None = None,
                 rebuild: Callable[[Config], Reconciler] | None = None) -> None:
        self.config = config
        self.reconciler = reconciler
        self.metrics = metrics
        self.store = store
        self.leadership = leadership
        self.cleaner = Cleaner(store, leadership.identity, leadership.is_leader)
        self._watcher = watcher
        self._rebuild = rebuild
        self._scheduler: BackgroundScheduler | None = None
        self._cycle_lock = threading.Lock()
        self._stop = threading.Event()
        self._number = 0
        self._started = time.time()
        self._last_cycle_start: float | None = None
        self._latest: CycleReport | None = None
        # Bindings seen before, per target: read from the store once, then kept in step with
        # what this replica writes (only a leader writes; a new leader reads them afresh).
        self._inventory: dict[str, dict[str, str]] = {}
        self._inventory_leader = False
        leadership.on_change(lambda leader: metrics.leader.set(1 if leader else 0))

    # -- one cycle ---------------------------------------------------------------------

    def run_cycle(self) -> CycleReport | None:
        if not self._cycle_lock.acquire(blocking=False):
            log.warning("cycle skipped: the previous one is still running")
            return None
        try:
            if self._stop.is_set():
                return None
            self._number += 1
            self._last_cycle_start = time.time()
            self._reload()
            try:
                report = self._cycle()
            except Exception:  # noqa: BLE001 - a bug in one cycle must not kill the loop
                log.exception("cycle crashed", cycle=self._number)
                self.metrics.cycles.labels(result="failed").inc()
                return None
            self.metrics.observe_cycle(report)
            self._latest = report
            return report
        finally:
            self._cycle_lock.release()

    def _cycle(self) -> CycleReport:
        config, store = self.config, self.store
        leader = self.leadership.is_leader()
        cycle_id = store.begin_cycle(self.leadership.identity, leader, time.time())
        targets = {t.config.name: t for t in self.reconciler.targets}
        held: dict[str, str] = {}
        if leader:
            providers = {n: t.provider for n, t in targets.items()}
            settle = {n: t.config.list_deadline for n, t in targets.items()}
            for name in self.cleaner.recover(providers, settle):
                held[name] = "an interrupted action's outcome is not known yet"
        context = CleanupContext(
            evidence={name: store.evidence(name) for name in targets},
            restored={name: store.restored(name) for name in targets},
            inventory=self._inventories(list(targets), leader),
            registry_baseline=self._registry_baseline(config),
            leader=leader, enforce_leader=True, acting=True, held_targets=held,
        )
        facts = CycleFacts(cycle_id, self.leadership.identity, config)

        def on_target(report: TargetReport) -> TargetReport:
            final = report
            if leader and report.diff is not None:
                inventory = context.inventory.get(report.name, {})
                final = self.cleaner.finish_target(
                    facts, report, targets[report.name].provider, context.evidence.get(report.name, {}),
                    lambda _name: self.reconciler.still_candidates(report, inventory))
                bindings = {b.live.native_id: b.schedule.id for b in report.diff.bindings}
                live_ids = {l.native_id for l in (*report.diff.managed, *report.diff.unmanaged)}
                store.update_inventory(report.name, inventory, bindings, live_ids, time.time())
                self._inventory[report.name] = {n: s for n, s in {**inventory, **bindings}.items() if n in live_ids}
            self.metrics.observe_target(final)
            return final

        report = self.reconciler.cycle(self._number, on_target=on_target, context=context)
        store.finish_cycle(cycle_id, report.result, report.registry.schedules, time.time())
        if leader:
            self._advance_registry_baseline(config, report.registry.schedules)
            store.prune_dry_runs(time.time() - config.state.dry_run_retention)
        return report

    def _inventories(self, names: list[str], leader: bool) -> dict[str, dict[str, str]]:
        if not (leader and self._inventory_leader):
            self._inventory = {}
        self._inventory_leader = leader
        for name in names:
            if name not in self._inventory:
                self._inventory[name] = self.store.inventory(name)
        return {name: self._inventory[name] for name in names}

    def _registry_baseline(self, config: Config) -> int | None:
        """The last good registry count; None once a shrink has lasted the grace period (accepted)."""
        baseline = self.store.mark(LAST_GOOD_REGISTRY)
        shrunk_since = self.store.mark(SHRUNK_SINCE)
        if shrunk_since is not None and time.time() - float(shrunk_since) >= config.cleanup.grace_period:
            return None
        return None if baseline is None else int(baseline)

    def _advance_registry_baseline(self, config: Config, schedules: int | None) -> None:
        if schedules is None:
            return
        baseline = self._registry_baseline(config)
        if baseline is not None and schedules < baseline * (1 - config.cleanup.registry_drop_guard):
            if self.store.mark(SHRUNK_SINCE) is None:
                self.store.set_mark(SHRUNK_SINCE, repr(time.time()))
            return
        if schedules > 0:
            self.store.set_mark(LAST_GOOD_REGISTRY, str(schedules))
        self.store.delete_mark(SHRUNK_SINCE)

    # -- live config reload ------------------------------------------------------------

    def _reload(self) -> None:
        if self._watcher is None:
            return
        try:
            new = self._watcher.poll()
        except ConfigError as exc:
            log.error("config reload rejected: keeping the running config", error=str(exc))
            self.metrics.config_reloads.labels(result="invalid").inc()
            return
        if new is None:
            return
        new, waiting = live_part(new, self.config)
        if waiting:
            log.warning("config reload: these sections change only at a restart", sections=waiting)
        old = self.config
        if (new.registry, new.targets) != (old.registry, old.targets) and self._rebuild is not None:
            try:
                rebuilt = self._rebuild(new)
            except ConfigError as exc:
                log.error("config reload rejected: keeping the running config", error=str(exc))
                self.metrics.config_reloads.labels(result="invalid").inc()
                return
            self.reconciler.close()
            self.reconciler = rebuilt
        else:
            self.reconciler.config = new
        self.config = new
        if new.log != old.log:
            configure(new.log.format, new.log.level)
        if (new.interval, new.jitter) != (old.interval, old.jitter) and self._scheduler is not None:
            self._scheduler.reschedule_job("reconcile", trigger=self._trigger())
        self.metrics.config_reloads.labels(result="success").inc()
        log.info("config reloaded", approve=new.cleanup.approve, cleanup_enabled=new.cleanup.enabled,
                 targets=[t.name for t in new.targets])

    # -- the daemon --------------------------------------------------------------------

    def run(self) -> int:
        server = serve(self, self.config.metrics.host, self.config.metrics.port)
        log.info("serving", address=f"{self.config.metrics.host}:{server.server_address[1]}",
                 endpoints=["/metrics", "/healthz", "/readyz", "/plan"])
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.leadership.start()
        scheduler = BackgroundScheduler(timezone=timezone.utc)
        scheduler.add_job(self.run_cycle, self._trigger(), id="reconcile", max_instances=1, coalesce=True,
                          misfire_grace_time=None, next_run_time=datetime.now(timezone.utc))
        self._scheduler = scheduler
        scheduler.start()
        log.info("started", interval_seconds=self.config.interval, jitter_seconds=self.config.jitter,
                 targets=[t.config.name for t in self.reconciler.targets], replica=self.leadership.identity)
        self._stop.wait()
        log.info("stopping: waiting for a running cycle to finish", grace_seconds=SHUTDOWN_GRACE)
        scheduler.shutdown(wait=False)
        finished = self._cycle_lock.acquire(timeout=SHUTDOWN_GRACE)
        if not finished:
            log.warning("stopping: abandoned the running cycle after the grace period")
        self.leadership.stop()
        server.shutdown()
        self.reconciler.close()
        self.store.close()
        log.info("stopped")
        return 0

    def _trigger(self) -> IntervalTrigger:
        return IntervalTrigger(seconds=self.config.interval, jitter=self.config.jitter or None)

    def stop(self) -> None:
        self._stop.set()

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.info("signal received", signal=signal.Signals(signum).name)
        self._stop.set()

    # -- what the HTTP endpoints read ----------------------------------------------------

    def metrics_text(self) -> bytes:
        return self.metrics.exposition()

    def healthy(self) -> tuple[bool, str]:
        limit = 3 * (self.config.interval + self.config.jitter)
        last = self._last_cycle_start or self._started
        age = time.time() - last
        if age > limit:
            return False, f"no cycle started for {age:.0f}s (limit {limit:.0f}s)"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if self._latest is None:
            return False, "the first cycle has not finished"
        return True, "ok"

    def plan(self) -> dict[str, Any] | None:
        return None if self._latest is None else to_json(self._latest)
