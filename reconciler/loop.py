"""The daemon: an APScheduler interval job around `Reconciler.cycle`, plus HTTP.

Never two cycles at once (max_instances=1 and a lock), misfires coalesced into
one run, jitter so that replicas do not hit the APIs in step. SIGTERM/SIGINT
stop the schedule, let a running cycle finish within a grace period, then exit 0.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import datetime, timezone
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from reconciler.config import Config
from reconciler.http import serve
from reconciler.metrics import Metrics
from reconciler.reconcile import Reconciler
from reconciler.report import CycleReport, to_json

log = structlog.get_logger("reconciler")

SHUTDOWN_GRACE = 20.0  # seconds a running cycle may take to finish after SIGTERM; Kubernetes gives 30


class Daemon:
    """The loop, and the StatusSource the HTTP endpoints read."""

    def __init__(self, config: Config, reconciler: Reconciler, metrics: Metrics) -> None:
        self.config = config
        self.reconciler = reconciler
        self.metrics = metrics
        self._cycle_lock = threading.Lock()
        self._stop = threading.Event()
        self._number = 0
        self._started = time.time()
        self._last_cycle_start: float | None = None
        self._latest: CycleReport | None = None

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
            try:
                report = self.reconciler.cycle(self._number, on_target=self.metrics.observe_target)
            except Exception:  # noqa: BLE001 - a bug in one cycle must not kill the loop
                log.exception("cycle crashed", cycle=self._number)
                self.metrics.cycles.labels(result="failed").inc()
                return None
            self.metrics.observe_cycle(report)
            self._latest = report
            return report
        finally:
            self._cycle_lock.release()

    # -- the daemon --------------------------------------------------------------------

    def run(self) -> int:
        server = serve(self, self.config.metrics.host, self.config.metrics.port)
        log.info("serving", address=f"{self.config.metrics.host}:{server.server_address[1]}",
                 endpoints=["/metrics", "/healthz", "/readyz", "/plan"])
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        scheduler = BackgroundScheduler(timezone=timezone.utc)
        scheduler.add_job(
            self.run_cycle,
            IntervalTrigger(seconds=self.config.interval, jitter=self.config.jitter or None),
            id="reconcile", max_instances=1, coalesce=True, misfire_grace_time=None,
            next_run_time=datetime.now(timezone.utc),
        )
        scheduler.start()
        log.info("started", interval_seconds=self.config.interval, jitter_seconds=self.config.jitter,
                 targets=[t.config.name for t in self.reconciler.targets])
        self._stop.wait()
        log.info("stopping: waiting for a running cycle to finish", grace_seconds=SHUTDOWN_GRACE)
        scheduler.shutdown(wait=False)
        finished = self._cycle_lock.acquire(timeout=SHUTDOWN_GRACE)
        if not finished:
            log.warning("stopping: abandoned the running cycle after the grace period")
        server.shutdown()
        self.reconciler.close()
        log.info("stopped")
        return 0

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
