"""Prometheus metrics (DESIGN.md §6), fed from reports.

A target's drift series change only when its listing succeeded: an unknown
target keeps its last values, shows `target_up 0` and does not advance
`last_success_timestamp_seconds`. Series of schedules and targets that vanish
are removed, so dashboards never show stale drift.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from providers.base import RequestRecorder
from reconciler import __version__
from reconciler.model import DriftKind
from reconciler.report import CycleReport, TargetReport

PREFIX = "schedule_reconciler_"
LABEL_MAX = 200  # label values are capped: names come from outside and may be huge
STAGES = ("dry_run", "ready", "protected", "blocked")
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def _label(value: str | None) -> str:
    text = value or ""
    if not text.isascii():
        # A lone surrogate (legal in JSON, e.g. a KFP display name) cannot be encoded as
        # UTF-8: left in, it would make every /metrics scrape fail.
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= LABEL_MAX else text[: LABEL_MAX - 1] + "…"


class Metrics:
    def __init__(self, detail_series_limit: int = 500) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.detail_series_limit = detail_series_limit
        self._lock = threading.Lock()
        self._drift_info: dict[str, set[tuple[str, str, str, str]]] = {}
        self._blocked: dict[str, set[tuple[str, str]]] = {}
        self._targets: set[str] = set()
        r = self.registry
        self.drift_schedules = Gauge(PREFIX + "drift_schedules", "Drifted schedules by kind", ["target", "kind"], registry=r)
        self.registry_schedules = Gauge(PREFIX + "registry_schedules", "ZenML schedules expected live on the target",
                                        ["target"], registry=r)
        self.live_schedules = Gauge(PREFIX + "live_schedules", "Live schedules on the target",
                                    ["target", "ownership"], registry=r)
        self.in_sync_ratio = Gauge(PREFIX + "in_sync_ratio", "In-sync share of expected and managed schedules",
                                   ["target"], registry=r)
        self.drift_info = Gauge(PREFIX + "drift_info", "One series per drifted schedule (capped per target)",
                                ["target", "kind", "schedule", "native_id"], registry=r)
        self.drift_info_dropped = Gauge(PREFIX + "drift_info_dropped", "Drifted schedules beyond the drift_info cap",
                                        ["target"], registry=r)
        self.target_up = Gauge(PREFIX + "target_up", "1 when the target's last listing was complete", ["target"], registry=r)
        self.registry_up = Gauge(PREFIX + "registry_up", "1 when the last registry read was complete", registry=r)
        self.target_info = Gauge(PREFIX + "target_info", "Configured targets", ["target", "flavor", "endpoint"], registry=r)
        self.last_success = Gauge(PREFIX + "last_success_timestamp_seconds",
                                  "When the target was last reconciled completely", ["target"], registry=r)
        self.cycles = Counter(PREFIX + "cycles", "Reconcile cycles by result", ["result"], registry=r)
        self.cycle_duration = Histogram(PREFIX + "cycle_duration_seconds", "Reconcile cycle duration",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.list_duration = Histogram(PREFIX + "list_duration_seconds", "Listing duration per target", ["target"],
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.api_requests = Counter(PREFIX + "api_requests", "Outside API requests", ["target", "operation", "code"],
                                    registry=r)
        self.cleanup_candidates = Gauge(PREFIX + "cleanup_candidates", "Cleanup candidates by stage",
                                        ["target", "stage"], registry=r)
        self.cleanup_actions = Counter(PREFIX + "cleanup_actions", "Cleanup actions by outcome",
                                       ["target", "action", "outcome"], registry=r)
        self.cleanup_blocked = Gauge(PREFIX + "cleanup_blocked", "Candidates blocked, by the rule's code",
                                     ["target", "reason"], registry=r)
        self.leader = Gauge(PREFIX + "leader", "1 when this replica may act", registry=r)
        self.build_info = Gauge(PREFIX + "build_info", "Build information", ["version"], registry=r)
        self.config_reloads = Counter(PREFIX + "config_reloads", "Config reloads by result", ["result"], registry=r)
        self.build_info.labels(version=__version__).set(1)
        for result in ("success", "partial", "failed"):
            self.cycles.labels(result=result)
        self.leader.set(0)  # until the leadership says otherwise

    # -- feeding -----------------------------------------------------------------------

    def recorder(self, target: str) -> RequestRecorder:
        def record(operation: str, code: str) -> None:
            self.api_requests.labels(target=target, operation=operation, code=code).inc()

        return record

    def set_targets(self, targets: Iterable[tuple[str, str, str]]) -> None:
        """(name, flavor, endpoint) of every configured target; forget the rest."""
        wanted = {name for name, _, _ in targets}
        with self._lock:
            for gone in self._targets - wanted:
                self._forget(gone)
            self._targets = set(wanted)
        self.target_info.clear()
        for name, flavor, endpoint in targets:
            self.target_info.labels(target=name, flavor=flavor, endpoint=_label(endpoint)).set(1)

    def observe_target(self, report: TargetReport) -> None:
        name = report.name
        with self._lock:
            self._targets.add(name)
        if report.list_seconds is not None:
            self.list_duration.labels(target=name).observe(report.list_seconds)
        self._count_actions(name, report)
        if report.diff is None:
            self.target_up.labels(target=name).set(0)
            if report.candidates:  # the last known candidates, held back by a guard: show why
                with self._lock:
                    self._replace_candidates(name, report)
            return
        diff = report.diff
        counts = {kind: 0 for kind in DriftKind}
        for drift in diff.drift:
            counts[drift.kind] += 1
        with self._lock:
            for kind, count in counts.items():
                self.drift_schedules.labels(target=name, kind=kind.value).set(count)
            self.registry_schedules.labels(target=name).set(len(diff.expected))
            self.live_schedules.labels(target=name, ownership="managed").set(len(diff.managed))
            self.live_schedules.labels(target=name, ownership="unmanaged").set(len(diff.unmanaged))
            self.in_sync_ratio.labels(target=name).set(diff.in_sync_ratio)
            self._replace_drift_info(name, report)
            self._replace_candidates(name, report)
            self.target_up.labels(target=name).set(1)
            self.last_success.labels(target=name).set(time.time())

    def observe_cycle(self, report: CycleReport) -> None:
        self.registry_up.set(1 if report.registry.status == "ok" else 0)
        if report.registry.status != "ok":
            for target in report.targets:
                self.target_up.labels(target=target.name).set(0)
        self.cycles.labels(result=report.result).inc()
        self.cycle_duration.observe(report.duration_seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # -- series bookkeeping ------------------------------------------------------------

    def _replace_drift_info(self, name: str, report: TargetReport) -> None:
        assert report.diff is not None
        wanted: set[tuple[str, str, str, str]] = set()
        for drift in report.diff.drift:
            schedule = drift.schedule.name if drift.schedule else ""
            native_id = drift.live.native_id if drift.live else ""
            wanted.add((name, drift.kind.value, _label(schedule), _label(native_id)))
        ordered = sorted(wanted)
        kept = set(ordered[: self.detail_series_limit])
        for labels in self._drift_info.get(name, set()) - kept:
            self.drift_info.remove(*labels)
        for labels in kept:
            self.drift_info.labels(*labels).set(1)
        self._drift_info[name] = kept
        self.drift_info_dropped.labels(target=name).set(len(ordered) - len(kept))

    def _replace_candidates(self, name: str, report: TargetReport) -> None:
        stages = {stage: 0 for stage in STAGES}
        reasons: dict[str, int] = {}
        for candidate in report.candidates:
            if candidate.stage in stages:
                stages[candidate.stage] += 1
            if candidate.stage == "blocked":
                code = candidate.blocked_by or "other"
                reasons[code] = reasons.get(code, 0) + 1
        for stage, count in stages.items():
            self.cleanup_candidates.labels(target=name, stage=stage).set(count)
        wanted = {(name, _label(reason)) for reason in reasons}
        for labels in self._blocked.get(name, set()) - wanted:
            self.cleanup_blocked.remove(*labels)
        for reason, count in reasons.items():
            self.cleanup_blocked.labels(target=name, reason=_label(reason)).set(count)
        self._blocked[name] = wanted

    def _count_actions(self, name: str, report: TargetReport) -> None:
        for action in report.actions:
            self.cleanup_actions.labels(target=name, action=action.action, outcome=action.outcome).inc()

    def _forget(self, name: str) -> None:
        for kind in DriftKind:
            _remove(self.drift_schedules, name, kind.value)
        for ownership in ("managed", "unmanaged"):
            _remove(self.live_schedules, name, ownership)
        for stage in STAGES:
            _remove(self.cleanup_candidates, name, stage)
        for labels in self._drift_info.pop(name, set()):
            self.drift_info.remove(*labels)
        for labels in self._blocked.pop(name, set()):
            self.cleanup_blocked.remove(*labels)
        for gauge in (self.registry_schedules, self.in_sync_ratio, self.target_up, self.last_success,
                      self.drift_info_dropped, self.list_duration):
            _remove(gauge, name)


def _remove(metric: Gauge, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass
