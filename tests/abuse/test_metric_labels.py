"""Hostile names through the diff into the Prometheus exposition.

What this proves: whatever the registry and the target call their schedules (label
injection like `a"} 1\\nfoo{x="`, backslashes, newlines, lone surrogates, huge names),
/metrics stays parseable by Prometheus' own parser, every `drift_info` label value parses
back to the name capped at LABEL_MAX characters, and no series or label appears that the
daemon did not create. Checked across two observations, so a name that leaves takes its
series with it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from reconciler.diff import diff_target
from reconciler.metrics import LABEL_MAX, PREFIX, Metrics, _label
from reconciler.model import LiveSchedule, LiveState, RegistrySchedule, RegistrySnapshot
from reconciler.report import TargetReport
from reconciler.scope import TargetScope
from tests.abuse.strategies import evil_text, fuzz

NOW = datetime(2026, 11, 21, 10, tzinfo=timezone.utc)
COMPONENT = "c" * 32
LABELS = {"target", "kind", "schedule", "native_id", "ownership", "stage", "reason", "flavor", "endpoint",
          "result", "operation", "code", "action", "outcome", "version", "le"}


def _schedule(name: str) -> RegistrySchedule:
    return RegistrySchedule(
        id=uuid.uuid4().hex, name=name, original_name=name, project="p", pipeline="pipe",
        orchestrator_id=COMPONENT, active=True, archived=False, cron_expression="0 9 * * *",
        interval_seconds=None, start_time=None, end_time=None, run_once_start_time=None, catchup=False,
        created=NOW, updated=NOW)


def _report(registry_names: list[str], live_names: list[str]) -> TargetReport:
    """A Vertex target where every registry name is missing live (zenml_only) and every live
    one is ZenML-made with no record (orchestrator_only): each name becomes a drift_info series."""
    snapshot = RegistrySnapshot(tuple(_schedule(n) for n in registry_names), (), frozenset({"pipe"}), NOW)
    live = [LiveSchedule(native_id=f"{n}#{i}", name=f"live:{n}", state=LiveState.ENABLED, cron="0 9 * * *",
                         zenml_marks=frozenset({"entrypoint"})) for i, n in enumerate(live_names)]
    diff = diff_target(TargetScope("vx", "vertex", frozenset({COMPONENT})), snapshot, live, NOW)
    return TargetReport(name="vx", flavor="vertex", endpoint="http://127.0.0.1:1", status="ok", diff=diff)


def _parsed(metrics: Metrics) -> list[tuple[str, dict[str, str]]]:
    text = metrics.exposition().decode("utf-8")
    return [(sample.name, dict(sample.labels)) for family in text_string_to_metric_families(text)
            for sample in family.samples]


def _check(metrics: Metrics, registry_names: list[str], live_names: list[str]) -> None:
    samples = _parsed(metrics)
    for name, labels in samples:
        assert name.startswith(PREFIX), name  # no injected series
        assert set(labels) <= LABELS, labels  # no injected label
        assert all(len(value) <= LABEL_MAX for value in labels.values())
    drift_info = [labels for name, labels in samples if name == PREFIX + "drift_info"]
    want = ({("zenml_only", _label(n), "") for n in registry_names}
            | {("orchestrator_only", "", _label(f"{n}#{i}")) for i, n in enumerate(live_names)})
    assert {(l["kind"], l["schedule"], l["native_id"]) for l in drift_info} == want
    assert all(l["target"] == "vx" for l in drift_info)


@fuzz(150)
@given(first=st.tuples(st.lists(evil_text, max_size=4, unique=True), st.lists(evil_text, max_size=4)),
       second=st.tuples(st.lists(evil_text, max_size=4, unique=True), st.lists(evil_text, max_size=4)))
def test_hostile_names_parse_back_capped_and_inject_nothing(first: tuple[list[str], list[str]],
                                                            second: tuple[list[str], list[str]]) -> None:
    metrics = Metrics(detail_series_limit=1000)
    metrics.set_targets([("vx", "vertex", "http://127.0.0.1:1")])
    for registry_names, live_names in (first, second):
        metrics.observe_target(_report(registry_names, live_names))
        _check(metrics, registry_names, live_names)


def test_a_long_name_is_capped_and_a_lone_surrogate_does_not_break_the_scrape() -> None:
    metrics = Metrics()
    metrics.observe_target(_report(["x" * 5000, "bad\ud800name"], ['a"} 1\nfoo{x="' * 40]))
    values = [l["schedule"] or l["native_id"] for n, l in _parsed(metrics) if n == PREFIX + "drift_info"]
    assert sorted(len(v) for v in values) == [len("bad?name"), LABEL_MAX, LABEL_MAX]
    assert "bad?name" in values
