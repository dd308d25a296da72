"""The cycle around the pure diff: concurrency, failure as unknown, and metrics."""

import threading

from prometheus_client.parser import text_string_to_metric_families

from reconciler.config import Config
from reconciler.metrics import Metrics
from reconciler.reconcile import Reconciler, Target
from tests.support.builders import NOW, component, dag_name, live, schedule, snapshot
from tests.support.inmemory import StaticRegistry, StaticTarget

AIRFLOW = component("airflow-a", "airflow")
AIRFLOW_B = component("airflow-b", "airflow")


def world():
    rows = [schedule("etl", AIRFLOW.id, "etl"), schedule("train", AIRFLOW.id, "train"),
            schedule("b_etl", AIRFLOW_B.id, "b_etl")]
    registry = StaticRegistry(snapshot(rows, [AIRFLOW, AIRFLOW_B], {"etl", "train", "b_etl", "old"}))
    fast = StaticTarget("fast", "airflow", [live(dag_name("etl")), live(dag_name("old"))])
    slow = StaticTarget("slow", "airflow", [live(dag_name("b_etl"))])
    config = Config.model_validate({"targets": [
        {"name": "slow", "type": "airflow", "url": "http://x", "components": ["airflow-b"], "list_deadline": "5s"},
        {"name": "fast", "type": "airflow", "url": "http://y", "components": ["airflow-a"], "list_deadline": "5s"},
    ]})
    targets = [Target(config.targets[0], slow), Target(config.targets[1], fast)]
    return config, registry, fast, slow, Reconciler(config, registry, targets, clock=lambda: NOW)


def samples(metrics):
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_a_slow_target_does_not_hold_back_a_fast_one():
    config, registry, fast, slow, reconciler = world()
    fast_reported = threading.Event()
    slow.before_listing = lambda: fast_reported.wait(10)  # slow finishes only once fast was reported
    order = []

    def on_target(report):
        order.append(report.name)
        if report.name == "fast":
            fast_reported.set()

    report = reconciler.cycle(1, on_target=on_target)
    assert order == ["fast", "slow"]
    assert [t.status for t in report.targets] == ["ok", "ok"]  # config order in the report


def test_failed_listing_is_unknown_not_empty_and_recovers():
    config, registry, fast, slow, reconciler = world()
    metrics = Metrics()
    first = reconciler.cycle(1, on_target=metrics.observe_target)
    metrics.observe_cycle(first)
    before = samples(metrics)
    assert before[("schedule_reconciler_drift_schedules", (("kind", "zenml_only"), ("target", "fast")))] == 1
    last_success = before[("schedule_reconciler_last_success_timestamp_seconds", (("target", "fast"),))]

    fast.error = "GET /api/v2/dags: HTTP 500"
    second = reconciler.cycle(2, on_target=metrics.observe_target)
    metrics.observe_cycle(second)
    failed = next(t for t in second.targets if t.name == "fast")
    assert failed.status == "error" and failed.diff is None and "HTTP 500" in failed.error
    assert second.result == "partial" and second.exit_code == 2
    after = samples(metrics)
    assert after[("schedule_reconciler_target_up", (("target", "fast"),))] == 0
    assert after[("schedule_reconciler_target_up", (("target", "slow"),))] == 1
    # Unknown keeps the last values and does not advance last_success.
    assert after[("schedule_reconciler_drift_schedules", (("kind", "zenml_only"), ("target", "fast")))] == 1
    assert after[("schedule_reconciler_last_success_timestamp_seconds", (("target", "fast"),))] == last_success
    assert after[("schedule_reconciler_cycles_total", (("result", "partial"),))] == 1

    fast.error = None
    third = reconciler.cycle(3, on_target=metrics.observe_target)
    assert third.result == "success"
    assert samples(metrics)[("schedule_reconciler_target_up", (("target", "fast"),))] == 1


def test_registry_failure_makes_every_target_unknown():
    config, registry, fast, slow, reconciler = world()
    registry.error = "zenml.db: database is locked"
    metrics = Metrics()
    report = reconciler.cycle(1, on_target=metrics.observe_target)
    metrics.observe_cycle(report)
    assert report.result == "failed" and report.exit_code == 2
    assert all(t.diff is None and "registry unavailable" in t.error for t in report.targets)
    values = samples(metrics)
    assert values[("schedule_reconciler_registry_up", ())] == 0
    assert not any(name == "schedule_reconciler_drift_schedules" for name, _ in values)


def test_a_hanging_listing_is_reported_and_not_started_twice():
    config, registry, fast, slow, reconciler = world()
    release = threading.Event()
    slow.before_listing = lambda: release.wait(30)
    config.targets[0].__dict__["list_deadline"] = 0.2  # frozen model: set the deadline for this test only
    first = reconciler.cycle(1)
    assert first.targets[0].status == "error" and "still running" in first.targets[0].error
    assert first.targets[1].status == "ok"
    second = reconciler.cycle(2)
    assert second.targets[0].status == "error" and slow.calls == 1  # the hanging one was not started again
    release.set()
    # Let the released listing thread record its result; otherwise cycle 3 may still see it running.
    assert reconciler._in_flight["slow"].done.wait(10)
    fast_cycle = reconciler.cycle(3)  # the old listing finished meanwhile: its result is used, then a new one runs
    assert fast_cycle.targets[0].status == "ok"


def test_vanished_drift_series_are_removed_and_info_is_capped():
    config, registry, fast, slow, reconciler = world()
    metrics = Metrics(detail_series_limit=1)
    fast.items.append(live(dag_name("old", 2)))
    metrics.observe_target(next(t for t in reconciler.cycle(1).targets if t.name == "fast"))
    values = samples(metrics)
    info = [k for k in values if k[0] == "schedule_reconciler_drift_info" and ("target", "fast") in k[1]]
    assert len(info) == 1
    assert values[("schedule_reconciler_drift_info_dropped", (("target", "fast"),))] == 2

    fast.items[:] = [live(dag_name("etl"))]
    registry.snapshot = snapshot([schedule("etl", AIRFLOW.id, "etl")], [AIRFLOW, AIRFLOW_B], {"etl"})
    metrics.observe_target(next(t for t in reconciler.cycle(2).targets if t.name == "fast"))
    values = samples(metrics)
    assert not [k for k in values if k[0] == "schedule_reconciler_drift_info" and ("target", "fast") in k[1]]
    metrics.set_targets([("slow", "airflow", "memory://slow")])
    assert not [k for k in samples(metrics) if ("target", "fast") in k[1]]


def test_unknown_component_name_is_an_error_not_an_empty_scope():
    config, registry, fast, slow, reconciler = world()
    registry.snapshot = snapshot([], [AIRFLOW], set())
    report = reconciler.cycle(1)
    slow_report = report.targets[0]
    assert slow_report.status == "error" and "component 'airflow-b' is not an orchestrator" in slow_report.error
