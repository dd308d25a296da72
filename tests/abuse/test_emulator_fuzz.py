"""Hostile but API-valid objects, end to end: emulator → real client library → provider → diff → /metrics.

What this proves, per target (Vertex over gRPC and REST, KFP, Kubernetes, Airflow 3):
hypothesis stores a small batch of objects the API could hold (huge and unicode names,
label-injection names, exotic or invalid crons, time zones, intervals of zero or below,
missing optional fields) in the target's wire-level emulator; the real provider lists
them through the real client library, over pages, and

- does not crash, and returns exactly as many live schedules as were stored, none
  silently dropped (DESIGN.md §4: failure is never emptiness, and never fewer);
- every stored name and native id comes back unchanged;
- the real diff over the listing does not crash and accounts for every live schedule
  (managed + unmanaged = listed);
- the metrics exposition of that diff and its cleanup plan parses back with
  prometheus_client's own parser, every label value within LABEL_MAX, and
  `live_schedules` adds up to the number stored.

And where an item is malformed (a wrong type where the API has an object, a string or a
map), KFP and Kubernetes fail the whole listing with ListingError, wherever the item sits
among valid ones and across pages: the target is unknown, never shorter.

Each emulator is started once per module on 127.0.0.1, port 0, and emptied between examples.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from providers import build_target
from providers.base import TargetProvider
from providers.emulators.airflow import AirflowEmulator, Dag
from providers.emulators.kubeflow import KubeflowEmulator, seed_recurring_run
from providers.emulators.kubernetes import KubernetesEmulator, plain_cron_job, zenml_cron_job
from providers.emulators.vertex import VertexEmulator
from reconciler.config import CleanupConfig, TargetConfig
from reconciler.diff import diff_target
from reconciler.metrics import LABEL_MAX, PREFIX, Metrics
from reconciler.model import Component, ListingError, LiveSchedule, RegistrySchedule, RegistrySnapshot
from reconciler.policy import Guards, plan_candidates
from reconciler.report import TargetReport
from reconciler.scope import TargetScope
from tests.abuse.strategies import CRONS, crons, evil_text, fuzz, intervals, zones

NOW = datetime(2026, 11, 21, 10, tzinfo=timezone.utc)
COMPONENT = uuid.UUID("9b2f64c1-5c1e-4c3b-8d0a-2f1e6b7a9c30")
PROJECT, LOCATION = "fuzz-project", "europe-west4"
TOKEN = "fuzz-token-3c4d"
PAGE = 3  # small pages: a batch of up to 8 objects spans several
EXAMPLES = int(os.environ.get("SCHEDULE_RECONCILER_FUZZ_EXAMPLES", "20"))  # raise it for a longer hunt

utf8_text = evil_text.filter(lambda t: "\ud800" not in t)  # protobuf strings are UTF-8: no lone surrogates
utf8_crons = crons.filter(lambda t: "\ud800" not in t)
times = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(timezone.utc))


@dataclass
class Stored:
    """What the example put into the emulator: the ids and names the listing must give back."""

    native_id: str
    name: str


@dataclass
class Harness:
    flavor: str
    provider: TargetProvider
    config: TargetConfig


# -- emulators and providers, once per module ------------------------------------------------------


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz-secrets")
    (path / "token").write_text(TOKEN)
    (path / "user").write_text("fuzz-admin\n")
    (path / "password").write_text("fuzz-password-9a8b\n")
    return path


def _harness(config: dict[str, Any]) -> Harness:
    from pydantic import TypeAdapter

    parsed: TargetConfig = TypeAdapter(TargetConfig).validate_python(config)
    return Harness(parsed.type, build_target(parsed), parsed)


@pytest.fixture(scope="module")
def vertex() -> Iterator[tuple[VertexEmulator, dict[str, Harness]]]:
    emulator = VertexEmulator(project=PROJECT, location=LOCATION)
    emulator.start(0, 0)
    common = dict(type="vertex", project=PROJECT, location=LOCATION, credentials="anonymous", timeout=10,
                  max_retries=0, page_size=PAGE, components=[COMPONENT.hex])
    harnesses = {
        "grpc": _harness({**common, "name": "vx-grpc", "transport": "grpc",
                          "endpoint": f"http://{emulator.grpc_target}"}),
        "rest": _harness({**common, "name": "vx-rest", "transport": "rest", "endpoint": emulator.url}),
    }
    yield emulator, harnesses
    for harness in harnesses.values():
        harness.provider.close()
    emulator.stop()


@pytest.fixture(scope="module")
def kubeflow(secrets_dir: Path) -> Iterator[tuple[KubeflowEmulator, Harness]]:
    emulator = KubeflowEmulator(tokens=[TOKEN])
    emulator.start(0)
    harness = _harness(dict(type="kubeflow", name="kfp", host=emulator.url, namespace="kubeflow",
                            token_file=str(secrets_dir / "token"), timeout=10, max_retries=0, page_size=PAGE,
                            components=[COMPONENT.hex]))
    yield emulator, harness
    harness.provider.close()
    emulator.stop()


@pytest.fixture(scope="module")
def kubernetes(secrets_dir: Path) -> Iterator[tuple[KubernetesEmulator, Harness]]:
    emulator = KubernetesEmulator(tokens=[TOKEN])
    emulator.start(0)
    harness = _harness(dict(type="kubernetes", name="k8s", namespace="zenml", host=emulator.url,
                            token_file=str(secrets_dir / "token"), timeout=10, max_retries=0, page_size=PAGE,
                            components=[COMPONENT.hex]))
    yield emulator, harness
    harness.provider.close()
    emulator.stop()


@pytest.fixture(scope="module")
def airflow(secrets_dir: Path) -> Iterator[tuple[AirflowEmulator, Harness]]:
    emulator = AirflowEmulator("fuzz-admin", "fuzz-password-9a8b")
    emulator.start(0)
    harness = _harness(dict(type="airflow", name="af", url=emulator.url, api_version="v2",
                            username_file=str(secrets_dir / "user"), password_file=str(secrets_dir / "password"),
                            timeout=10, max_retries=0, page_size=PAGE, components=[COMPONENT.hex]))
    yield emulator, harness
    harness.provider.close()
    emulator.stop()


# -- the checks, common to every target -------------------------------------------------------------


def _registry(flavor: str, names: list[str], pipelines: list[str]) -> RegistrySnapshot:
    """ZenML rows named after some of the stored objects, so the diff binds as well as orphans."""
    rows = tuple(RegistrySchedule(
        id=f"{i + 1:032x}", name=name, original_name=name, project="default", pipeline=pipeline,
        orchestrator_id=COMPONENT.hex, active=i % 2 == 0, archived=i % 3 == 2, cron_expression=CRONS[i % len(CRONS)],
        interval_seconds=None, start_time=None, end_time=None, run_once_start_time=None, catchup=False,
        created=NOW, updated=NOW, metadata={"cron_job_name": name} if flavor == "kubernetes" else {})
        for i, (name, pipeline) in enumerate(zip(names, pipelines)))
    return RegistrySnapshot(rows, (Component(COMPONENT.hex, "orch", flavor),), frozenset(pipelines), NOW)


def _list_and_check(harness: Harness, stored: list[Stored], pipelines: list[str]) -> list[LiveSchedule]:
    live = harness.provider.list_schedules()  # raising here, ListingError or not, fails the example
    assert len(live) == len(stored), f"{len(stored)} stored, {len(live)} listed"
    assert sorted((l.native_id, l.name) for l in live) == sorted((s.native_id, s.name) for s in stored)
    assert len({l.native_id for l in live}) == len(live)

    snapshot = _registry(harness.flavor, [s.name for s in stored], pipelines)
    scope = TargetScope(harness.config.name, harness.flavor, frozenset({COMPONENT.hex}))
    diff = diff_target(scope, snapshot, live, NOW)
    assert len(diff.managed) + len(diff.unmanaged) == len(live)
    cleanup = CleanupConfig(enabled=True, approve=True, include=["orchestrator_only", "duplicate"])
    candidates = plan_candidates(diff, cleanup, harness.config, Guards(), {}, {}, NOW)

    metrics = Metrics(detail_series_limit=1000)
    metrics.set_targets([(harness.config.name, harness.flavor, harness.provider.endpoint)])
    metrics.observe_target(TargetReport(name=harness.config.name, flavor=harness.flavor,
                                        endpoint=harness.provider.endpoint, status="ok", diff=diff,
                                        candidates=tuple(candidates)))
    text = metrics.exposition().decode("utf-8")
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    assert all(s.name.startswith(PREFIX) for s in samples)
    assert all(len(v) <= LABEL_MAX for s in samples for v in s.labels.values())
    listed = sum(s.value for s in samples if s.name == PREFIX + "live_schedules")
    assert listed == len(stored)
    drift_info = [s for s in samples if s.name == PREFIX + "drift_info"]
    assert len(drift_info) <= len(diff.drift) and (not diff.drift or drift_info)
    return live


# -- Vertex AI ----------------------------------------------------------------------------------------

vertex_schedules = st.lists(st.fixed_dictionaries({
    "display_name": utf8_text,
    "cron": utf8_crons,
    "state": st.sampled_from(["ACTIVE", "PAUSED", "COMPLETED"]),
    "labels": st.dictionaries(utf8_text, utf8_text, max_size=3),
    "zenml": st.booleans(),
    "pipeline_name": st.one_of(st.none(), utf8_text),
    "create_time": st.one_of(st.none(), times),
    "start_time": st.one_of(st.none(), times),
    "end_time": st.one_of(st.none(), times),
}), max_size=8)


@fuzz(EXAMPLES)
@given(schedules=vertex_schedules, transport=st.sampled_from(["grpc", "rest"]))
def test_vertex_lists_every_hostile_schedule(vertex: tuple[VertexEmulator, dict[str, Harness]],
                                             schedules: list[dict[str, Any]], transport: str) -> None:
    emulator, harnesses = vertex
    emulator.reset()
    stored = [Stored(emulator.add_schedule(**s), s["display_name"]) for s in schedules]
    _list_and_check(harnesses[transport], stored, [s["pipeline_name"] or s["display_name"] for s in schedules])


# -- Kubeflow Pipelines -------------------------------------------------------------------------------

OPTIONAL_RUN_FIELDS = ["description", "runtime_config", "service_account", "max_concurrency", "no_catchup",
                       "updated_at", "status", "pipeline_spec"]

kfp_runs = st.lists(st.fixed_dictionaries({
    "id": st.uuids(),
    "display_name": evil_text,
    "cron": st.one_of(st.none(), crons),
    "interval": st.one_of(st.integers(-(2 ** 63), 2 ** 63 - 1), st.sampled_from([0, -1, 1, 86400])),
    "start_time": st.one_of(st.none(), times.map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"))),
    "end_time": st.one_of(st.none(), times.map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"))),
    "enabled": st.booleans(),
    "created_at": st.one_of(st.none(), times.map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"))),
    "experiment": st.integers(0, 2),  # 2: an experiment the server no longer has
    "drop": st.lists(st.sampled_from(OPTIONAL_RUN_FIELDS), unique=True, max_size=4),
    "tags": st.one_of(st.none(), st.dictionaries(evil_text, evil_text, max_size=2)),
}), max_size=8, unique_by=lambda r: r["id"])


def _run(i: int, display_name: str, **changes: Any) -> dict[str, Any]:
    return {"id": uuid.UUID(int=i + 1), "display_name": display_name, "cron": "0 0 9 * * *", "interval": 0,
            "start_time": None, "end_time": None, "enabled": True, "created_at": None, "experiment": 0, "drop": [],
            "tags": None, **changes}


@fuzz(EXAMPLES)
@given(runs=kfp_runs, experiment_names=st.lists(evil_text, min_size=2, max_size=2))
# Pinned: a lone surrogate (legal in JSON) and a huge name, each a ZenML schedule missing live and an orphan.
@example(runs=[_run(0, "bad\ud800name"), _run(1, 'a"} 1\nfoo{x="' * 90, cron=None, interval=-5, drop=["status"]),
               _run(2, "é" * 1200, experiment=2, drop=["pipeline_spec", "updated_at"])],
         experiment_names=["bad\ud800name", "x" * 300])
def test_kubeflow_lists_every_hostile_recurring_run(kubeflow: tuple[KubeflowEmulator, Harness],
                                                    runs: list[dict[str, Any]], experiment_names: list[str]) -> None:
    emulator, harness = kubeflow
    with emulator.lock:
        emulator.recurring_runs.clear()
        emulator.experiments.clear()
        emulator._version += 1
    experiments = [emulator.add_experiment(name)["experiment_id"] for name in experiment_names]
    experiments.append(str(uuid.UUID(int=7)))
    stored = []
    for run in runs:
        body = seed_recurring_run(
            run["display_name"], experiments[run["experiment"]], cron=run["cron"],
            interval_second=None if run["cron"] is not None else run["interval"], start_time=run["start_time"],
            end_time=run["end_time"], enabled=run["enabled"], created_at=run["created_at"])
        body["recurring_run_id"] = str(run["id"])
        for key in run["drop"]:
            body.pop(key, None)
        if run["tags"] is not None:
            body["tags"] = run["tags"]
        emulator.add_run(body)
        stored.append(Stored(str(run["id"]), run["display_name"]))
    _list_and_check(harness, stored, experiment_names + ["gone"])


# -- Kubernetes CronJobs ------------------------------------------------------------------------------

dns_names = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?\Z", fullmatch=True)
k8s_crons = crons.filter(lambda c: c.strip() != "")

cron_jobs = st.lists(st.fixed_dictionaries({
    "name": dns_names,
    "zenml": st.booleans(),
    "pipeline": evil_text,
    "schedule": k8s_crons,
    "time_zone": st.one_of(st.none(), zones.filter(bool)),
    "suspend": st.booleans(),
    "created": st.one_of(st.none(), times.map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"))),
    "annotation": st.one_of(st.none(), evil_text),
}), max_size=8, unique_by=lambda c: c["name"])


@fuzz(EXAMPLES)
@given(items=cron_jobs)
def test_kubernetes_lists_every_hostile_cron_job(kubernetes: tuple[KubernetesEmulator, Harness],
                                                 items: list[dict[str, Any]]) -> None:
    emulator, harness = kubernetes
    with emulator.lock:
        emulator.objects.clear()
        emulator._names_cache = None
    stored = []
    for item in items:
        # The API server refuses a timeZone beside a TZ=/CRON_TZ= prefix.
        zone = None if item["schedule"].lstrip().startswith(("TZ=", "CRON_TZ=")) else item["time_zone"]
        if item["zenml"]:
            obj = zenml_cron_job(item["pipeline"], str(COMPONENT), item["schedule"], "zenml", name=item["name"],
                                 suspend=item["suspend"], time_zone=zone, created=item["created"])
        else:
            obj = plain_cron_job(item["name"], item["schedule"], "zenml", suspend=item["suspend"])
            if zone:
                obj["spec"]["timeZone"] = zone
            if item["created"]:
                obj["metadata"]["creationTimestamp"] = item["created"]
        if item["annotation"] is not None:  # annotation values are free text
            obj["metadata"].setdefault("annotations", {})["example.com/note"] = item["annotation"]
        emulator.add("cronjobs", obj)
        stored.append(Stored(f"zenml/{item['name']}", item["name"]))
    _list_and_check(harness, stored, [i["pipeline"] for i in items])


# -- Airflow 3 ----------------------------------------------------------------------------------------

# Airflow's KEY_REGEX `^[\w.-]+$` (Unicode \w) up to 250 characters.
dag_ids = st.one_of(
    st.text(alphabet=st.characters(categories=["L", "N"], include_characters="_.-"), min_size=1, max_size=40),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "語", "_", "-"]), st.integers(100, 250)),
    st.builds(lambda p: f"{p}_{uuid.UUID(int=len(p)).hex}", st.text(alphabet="abc_-", min_size=1, max_size=10)),
)
summaries = st.one_of(st.none(), crons, intervals.map(str), st.sampled_from(
    ["6:00:00", "1 day, 0:00:00", "-1 day, 23:59:59", "999999999 days, 0:00:00", "0:00:00", "None", "Asset",
     "@once", "@continuous"]))
dags = st.lists(st.fixed_dictionaries({
    "dag_id": dag_ids,
    "summary": summaries,
    "is_paused": st.booleans(),
    "is_stale": st.booleans(),
    "tags": st.lists(evil_text, max_size=3),
    "zenml_zip": st.booleans(),
}), max_size=8, unique_by=lambda d: d["dag_id"])


@fuzz(EXAMPLES)
@given(items=dags)
def test_airflow_lists_every_hostile_dag(airflow: tuple[AirflowEmulator, Harness], items: list[dict[str, Any]]) -> None:
    emulator, harness = airflow
    with emulator.lock:
        emulator.dags.clear()
    for item in items:
        emulator.add(Dag(item["dag_id"], item["summary"], is_paused=item["is_paused"], is_stale=item["is_stale"],
                         tags=item["tags"], zenml_zip=item["zenml_zip"]))
    stored = [Stored(item["dag_id"], item["dag_id"]) for item in items]
    _list_and_check(harness, stored, [item["dag_id"].rsplit("_", 1)[0] for item in items])


# -- one malformed item among valid ones: the whole listing fails, it never comes back shorter ---------

MALFORMED_RUNS = [
    lambda run: run["trigger"].update({"periodic_schedule": {"interval_second": "every day"}}),
    lambda run: run["trigger"].update({"cron_schedule": {"cron": ["0", "9"]}}),
    lambda run: run.update({"trigger": [run["trigger"]]}),
]
MALFORMED_CRON_JOBS = [
    lambda obj: obj["metadata"].update({"labels": ["not", "a", "map"]}),
    lambda obj: obj["spec"].update({"schedule": {"cron": "0 9 * * *"}}),
    lambda obj: obj["metadata"].update({"annotations": "zenml.io/orchestrator"}),
]


@fuzz(max(5, EXAMPLES // 2))
@given(names=st.lists(evil_text, min_size=1, max_size=7), at=st.integers(0, 7), how=st.integers(0, 2))
def test_kubeflow_fails_the_whole_listing_on_one_malformed_run(kubeflow: tuple[KubeflowEmulator, Harness],
                                                               names: list[str], at: int, how: int) -> None:
    emulator, harness = kubeflow
    with emulator.lock:
        emulator.recurring_runs.clear()
        emulator._version += 1
    experiment = emulator.experiment_named("fuzz")["experiment_id"]
    for i, name in enumerate(names):
        run = seed_recurring_run(name, experiment, interval_second=3600)
        run["recurring_run_id"] = str(uuid.UUID(int=i + 1))
        if i == at % len(names):
            MALFORMED_RUNS[how](run)
        emulator.add_run(run)
    with pytest.raises(ListingError):
        harness.provider.list_schedules()


@fuzz(max(5, EXAMPLES // 2))
@given(names=st.lists(dns_names, min_size=1, max_size=7, unique=True), at=st.integers(0, 7), how=st.integers(0, 2))
def test_kubernetes_fails_the_whole_listing_on_one_malformed_cron_job(kubernetes: tuple[KubernetesEmulator, Harness],
                                                                      names: list[str], at: int, how: int) -> None:
    emulator, harness = kubernetes
    with emulator.lock:
        emulator.objects.clear()
        emulator._names_cache = None
    for i, name in enumerate(names):
        obj = zenml_cron_job("p", str(COMPONENT), "0 9 * * *", "zenml", name=name)
        if i == at % len(names):
            MALFORMED_CRON_JOBS[how](obj)
        emulator.add("cronjobs", obj)
    with pytest.raises(ListingError):
        harness.provider.list_schedules()
