"""The fault matrix (issue 6, item 1): every fault that applies, on each emulated target and on
the SQL registry, with cleanup enabled, approved and its dry-run evidence earned.

Each case is a fresh daemon (in process, stepped cycle by cycle the way
tests/integration/test_cleanup.py steps it) over the four emulators seeded with the
sandbox scenario, and a copy of the ZenML store file real ZenML wrote:

1. a clean cycle: every orphan is reported as a dry run (no mutation anywhere), which
   earns the evidence (`dry_run_cycles: 1`, `grace_period: 0s`, `approve: true`);
2. the fault cycle: without the fault it would act on every target. The faulty target
   must be unknown (`target_up` 0, its drift gauges and `last_success` unchanged) and
   receive no mutating request; the other targets are reconciled and acted on. For a
   registry fault: `registry_up` 0, every target unknown, no mutation anywhere;
3. the fault is lifted and a healthy cycle runs: the target is up again,
   `last_success` advances, and its orphan is acted on.

The outcomes go to tests/faults/results.json and RESULTS.md (`matrix_table.py`), from
which the README's "Fault matrix" section is copied.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from providers.emulators.base import Fault, Request, Response
from providers.emulators.kubernetes import plain_cron_job
from providers.emulators.sandbox import Emulators, default_store, seed
from reconciler.cli import build_daemon
from reconciler.loop import Daemon
from reconciler.report import CycleReport, to_json
from tests.faults import matrix_table
from tests.faults.matrix_table import Outcome
from tests.integration.cleanup_support import component_ids, emulated, write_config
from tests.support.procs import free_port

pytestmark = pytest.mark.integration

TARGETS = ("vertex", "kfp", "k8s", "airflow")  # the sandbox's target names
EMULATOR = {"vertex": "vertex", "kfp": "kubeflow", "k8s": "kubernetes", "airflow": "airflow"}
LIST_OPERATION = {"vertex": "list_schedules", "kfp": "list_schedules", "k8s": "list_schedules",
                  "airflow": "list_dags"}
ENDPOINT_KEY = {"vertex": "endpoint", "kfp": "host", "k8s": "host", "airflow": "url"}

# Short enough to keep the module fast on two shared cores; every listing pages one item at a time,
# so "half way" and "past the deadline" have pages to fail on.
TIMEOUT, LIST_DEADLINE, MAX_RETRIES, PAGE_SIZE = 2.0, 4.0, 1, 1
SLOW = 1.5  # each page answers within the timeout, but three pages overrun the list deadline
HANG = TIMEOUT + 1.5  # held past the per-request timeout, then the connection is dropped

# Gauges that must keep their values while a target is unknown.
KEPT_GAUGES = ("drift_schedules", "registry_schedules", "live_schedules", "in_sync_ratio",
               "last_success_timestamp_seconds")

RESULTS: list[Outcome] = []


# -- the harness -------------------------------------------------------------------------------------------


class Matrix:
    """One daemon over the four emulators, its config file (reloaded before every cycle) and its registry."""

    def __init__(self, tmp: Path) -> None:
        self.setup = write_config(tmp, cleanup={
            "enabled": True, "approve": True, "dry_run_cycles": 1, "grace_period": "0s",
            "max_actions_per_cycle": 10, "max_fraction": 1.0})
        self.registry = tmp / "zenml.db"
        shutil.copy(default_store(), self.registry)
        self.raw = self.setup.raw
        self.raw["registry"]["url"] = f"sqlite:///{self.registry}"
        self.raw["log"] = {"format": "json", "level": "warning"}
        for target in self.raw["targets"]:
            target.update(timeout=TIMEOUT, list_deadline=LIST_DEADLINE, max_retries=MAX_RETRIES, page_size=PAGE_SIZE)
        self.write()
        self.daemon: Daemon | None = None
        self.emulators: Emulators | None = None

    def write(self) -> None:
        """A new file swapped in (a new inode, as a ConfigMap update gives): the daemon reloads it."""
        staging = self.setup.path.with_suffix(".tmp")
        staging.write_text(yaml.safe_dump(self.raw), encoding="utf-8")
        os.replace(staging, self.setup.path)

    def target(self, name: str) -> dict[str, Any]:
        return next(t for t in self.raw["targets"] if t["name"] == name)

    def emulator(self, target: str) -> Any:
        assert self.emulators is not None
        return getattr(self.emulators, EMULATOR[target])

    def cycle(self) -> CycleReport:
        assert self.daemon is not None
        report = self.daemon.run_cycle()
        assert report is not None, "the cycle crashed (run_cycle returned None)"
        return report

    def clear_logs(self) -> None:
        for target in TARGETS:
            self.emulator(target).log.clear()

    def mutations(self, target: str) -> list[tuple[str, str]]:
        return [(m.operation, m.path) for m in self.emulator(target).log.mutations()]

    def series(self, name: str, **labels: str) -> dict[str, float]:
        """Every series of one metric with these labels, by its label text."""
        assert self.daemon is not None
        found = {}
        for line in self.daemon.metrics.exposition().decode().splitlines():
            if line.startswith(f"schedule_reconciler_{name}{{") or line.startswith(f"schedule_reconciler_{name} "):
                head, value = line.rsplit(" ", 1)
                if all(f'{k}="{v}"' in head for k, v in labels.items()):
                    found[head] = float(value)
        return found

    def value(self, name: str, **labels: str) -> float | None:
        found = self.series(name, **labels)
        assert len(found) <= 1, found
        return next(iter(found.values()), None)

    def kept(self, target: str) -> dict[str, float]:
        """The gauges of one target that an unknown cycle must leave as they were."""
        return {k: v for name in KEPT_GAUGES for k, v in self.series(name, target=target).items()}


@pytest.fixture()
def matrix(tmp_path: Path) -> Iterator[Matrix]:
    m = Matrix(tmp_path)
    with emulated(m.setup) as emulators:
        m.emulators = emulators
        seed(emulators, component_ids())
        _pad_kubernetes(emulators)
        m.daemon = build_daemon(m.setup.config, m.setup.path)
        m.daemon.leadership.start()
        try:
            yield m
        finally:
            m.daemon.reconciler.close()
            m.daemon.store.close()
            # Stopped together: each HTTP server's shutdown waits out its poll interval (`emulated` stops
            # them one by one after this; stopping twice is a no-op).
            stoppers = [threading.Thread(target=e.stop) for e in emulators.all()]
            for stopper in stoppers:
                stopper.start()
            for stopper in stoppers:
                stopper.join()


def _pad_kubernetes(emulators: Emulators) -> None:
    """Two more CronJobs that ZenML did not make (no annotation: unmanaged, never touched), so the
    Kubernetes listing has pages enough (four at one item a page) to fail half way or overrun its deadline."""
    for number in (1, 2):
        emulators.kubernetes.add("cronjobs", plain_cron_job(f"ops-backup-{number}", f"{number} 3 * * *"))


@pytest.fixture(scope="module", autouse=True)
def table() -> Iterator[None]:
    RESULTS.clear()
    # Cells where a fault cannot happen are not test cases (nothing to assert); they are in the table.
    RESULTS.extend(Outcome("target", f.name, t, "n/a", None, why)
                   for f in TARGET_FAULTS for t, why in f.not_applicable.items())
    yield
    expected = (len(TARGET_FAULTS) + len(REGISTRY_FAULTS)) * len(TARGETS)
    if len(RESULTS) == expected:  # a partial run (-k, a crash) does not overwrite the published table
        matrix_table.write(sorted(RESULTS, key=_order))


def _order(o: Outcome) -> tuple[int, int, int]:
    faults = [f.name for f in TARGET_FAULTS] + [f.name for f in REGISTRY_FAULTS]
    return (0 if o.group == "target" else 1, faults.index(o.fault), TARGETS.index(o.target))


# -- target faults ----------------------------------------------------------------------------------------

Undo = Callable[[], None]


@dataclass(frozen=True)
class TargetFault:
    name: str  # the table's row
    inject: Callable[[Matrix, str], Undo | None]  # sets the fault up for the next cycle; returns how to lift it
    min_seen: int = 1  # requests of the listing the fault must have met (proof that it was hit)
    not_applicable: dict[str, str] = field(default_factory=dict)  # target -> why


def _on_listing(fault: Fault) -> Callable[[Matrix, str], Undo | None]:
    def inject(m: Matrix, target: str) -> Undo | None:
        m.emulator(target).faults.set(LIST_OPERATION[target], fault)
        return None
    return inject


def _refused(m: Matrix, target: str) -> Undo:
    """The target's endpoint changed (config reload) to a port where nothing listens."""
    key = ENDPOINT_KEY[target]
    old = m.target(target)[key]
    m.target(target)[key] = f"http://127.0.0.1:{free_port()}"
    m.write()

    def undo() -> None:
        m.target(target)[key] = old
        m.write()
    return undo


def _compacted_after_first_page(m: Matrix, target: str) -> Undo:
    """etcd compacts right after every first page: each continue token has expired when it is used,
    on the first listing and on every restart of it (410 Gone, reason Expired)."""
    emulator = m.emulator(target)
    route = next(r for r in emulator.routes if r.operation == "list_schedules" and r.method == "GET")
    original = route.handler

    def compacting(request: Request) -> Response:
        response = original(request)
        if not request.params.get("continue"):
            emulator.compact()
        return response

    route.handler = compacting

    def undo() -> None:
        route.handler = original
    return undo


NO_TOKEN = ("the Airflow REST API pages DAGs by offset and limit: there is no page token to expire; "
            "a listing failing half way is the row above")
TARGET_FAULTS = [
    TargetFault("connection refused (endpoint moved to a closed port by a config reload)", _refused, min_seen=0),
    TargetFault(f"timeout: every listing request hangs {HANG:g}s (> timeout {TIMEOUT:g}s), then drops",
                _on_listing(Fault(hang=HANG))),
    TargetFault("5xx: 503 on every listing request", _on_listing(Fault(status=503)), min_seen=MAX_RETRIES + 1),
    TargetFault("429 with Retry-After: 1 on every attempt (retries run out)",
                _on_listing(Fault(status=429, retry_after=1)), min_seen=MAX_RETRIES + 1),
    TargetFault("401 Unauthorized on the listing", _on_listing(Fault(status=401))),
    TargetFault("403 Forbidden on the listing", _on_listing(Fault(status=403))),
    TargetFault("malformed body (200, not JSON / not the message)", _on_listing(Fault(malformed=True))),
    TargetFault("listing fails half way (page 1 ok, then 500)", _on_listing(Fault(status=500, after=1)), min_seen=2),
    TargetFault("expired page / continue token (k8s: compacted after every first page, 410 Expired on "
                "each restart; Vertex, KFP: page 2 answered 400, token no longer valid)",
                lambda m, t: (_compacted_after_first_page(m, t) if t == "k8s"
                              else _on_listing(Fault(status=400, after=1))(m, t)),
                min_seen=0, not_applicable={"airflow": NO_TOKEN}),
    TargetFault(f"slow: every page takes {SLOW:g}s (< timeout), the listing overruns list_deadline {LIST_DEADLINE:g}s",
                _on_listing(Fault(latency=SLOW)), min_seen=2),
]


def _earn_evidence(m: Matrix) -> None:
    report = m.cycle()
    assert report.result == "success", [(t.name, t.error) for t in report.targets]
    for target in TARGETS:
        assert m.mutations(target) == [], f"the dry-run cycle mutated {target}"
        assert m.value("target_up", target=target) == 1
    stages = {c["stage"] for t in to_json(report)["targets"] for c in t["candidates"]}
    assert stages == {"dry_run"}, stages


def _case_id(fault: TargetFault, target: str) -> str:
    return f'{fault.name.split(":")[0].split(" (")[0].replace(" ", "-")}-{target}'


CASES = [(f, t) for f in TARGET_FAULTS for t in TARGETS if t not in f.not_applicable]


@pytest.mark.parametrize("fault, target", CASES, ids=[_case_id(f, t) for f, t in CASES])
def test_target_fault(matrix: Matrix, fault: TargetFault, target: str) -> None:
    m = matrix
    others = [t for t in TARGETS if t != target]
    _earn_evidence(m)
    kept = m.kept(target)
    assert kept, "no gauges to keep: the clean cycle exported nothing for the target"
    last_success = {t: m.value("last_success_timestamp_seconds", target=t) for t in TARGETS}
    partial_before = m.value("cycles_total", result="partial") or 0.0
    m.clear_logs()

    undo = fault.inject(m, target)
    report = m.cycle()  # the daemon survives the fault: a report, not a crash
    seen = m.emulator(target).faults.seen(LIST_OPERATION[target])
    reached = len(m.emulator(target).log.all())  # requests of any kind that reached the target
    registry_up = m.value("registry_up")
    partial_after = m.value("cycles_total", result="partial")
    body = {t["name"]: t for t in to_json(report)["targets"]}
    up = m.value("target_up", target=target)
    actions = len(m.mutations(target))
    other_actions = {t: len(m.mutations(t)) for t in others}
    unknown = up == 0 and body[target]["status"] == "error" and m.kept(target) == kept
    others_ok = all(m.value("target_up", target=t) == 1 and body[t]["status"] == "ok"
                    and m.value("last_success_timestamp_seconds", target=t) > last_success[t]
                    and other_actions[t] > 0 for t in others)
    other_last_success = {t: m.value("last_success_timestamp_seconds", target=t) for t in others}
    other_up = {t: m.value("target_up", target=t) for t in others}

    if undo is not None:
        undo()
    m.emulator(target).faults.clear()
    m.clear_logs()
    recovery = m.cycle()
    recovered = (m.value("target_up", target=target) == 1
                 and m.value("last_success_timestamp_seconds", target=target) > last_success[target]
                 and bool(m.mutations(target)))
    cell = (f"{'unknown' if unknown else 'NOT unknown (up=%s)' % up}, {actions} action{'s' * (actions != 1)}, "
            f"{'recovered' if recovered else 'NOT recovered'}")
    if not others_ok:
        cell += ", other targets NOT reconciled"
    RESULTS.append(Outcome("target", fault.name, target, cell, unknown and actions == 0 and recovered and others_ok))

    # The fault cycle.
    assert seen >= fault.min_seen, f"the fault met {seen} listing requests, expected >= {fault.min_seen}"
    if fault.inject is _refused:
        assert reached == 0, "the moved endpoint still reached the emulator"
    assert report.result == "partial", report.result
    assert partial_after == partial_before + 1
    assert up == 0
    assert body[target]["status"] == "error" and body[target]["error"]
    assert registry_up == 1
    assert actions == 0, f"mutating requests reached the unknown target {target}"
    assert unknown, "the unknown target's gauges changed"
    for other in others:
        assert body[other]["status"] == "ok", (other, body[other]["error"])
        assert other_up[other] == 1
        assert other_last_success[other] > last_success[other]
        assert other_actions[other] > 0, f"{other} was not acted on: the cycle would not have acted anywhere"
    # The healthy cycle after it.
    assert recovery.result == "success", [(t.name, t.error) for t in recovery.targets]
    assert recovered, f"{target} did not recover: up={m.value('target_up', target=target)}"


# -- registry faults --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryFault:
    name: str
    inject: Callable[[Path], Undo]


def _missing(path: Path) -> Undo:
    moved = path.with_suffix(".moved")
    path.rename(moved)
    return lambda: moved.rename(path)


def _corrupt(path: Path) -> Undo:
    good = path.read_bytes()
    with path.open("r+b") as handle:  # in place, as a bad disk would: same file, garbage bytes
        handle.write(b"\x13\x37garbage, not SQLite\x00" * (len(good) // 22))
    return lambda: path.write_bytes(good)


def _table_dropped(path: Path) -> Undo:
    good = path.read_bytes()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE schedule")
    db.close()
    return lambda: path.write_bytes(good)


REGISTRY_FAULTS = [
    RegistryFault("store file missing (moved away)", _missing),
    RegistryFault("store file corrupt (garbage bytes over it)", _corrupt),
    RegistryFault("`schedule` table dropped", _table_dropped),
]


@pytest.mark.parametrize("fault", REGISTRY_FAULTS, ids=["missing", "corrupt", "table-dropped"])
def test_registry_fault(matrix: Matrix, fault: RegistryFault) -> None:
    m = matrix
    _earn_evidence(m)
    kept = {t: m.kept(t) for t in TARGETS}
    last_success = {t: m.value("last_success_timestamp_seconds", target=t) for t in TARGETS}
    m.clear_logs()

    undo = fault.inject(m.registry)
    report = m.cycle()
    registry_up = m.value("registry_up")
    body = {t["name"]: t for t in to_json(report)["targets"]}
    outcome = {}
    for target in TARGETS:
        up = m.value("target_up", target=target)
        outcome[target] = (up == 0 and m.kept(target) == kept[target], up, len(m.mutations(target)))

    undo()
    m.clear_logs()
    recovery = m.cycle()
    for target in TARGETS:
        unknown, up, actions = outcome[target]
        recovered = (m.value("registry_up") == 1 and m.value("target_up", target=target) == 1
                     and m.value("last_success_timestamp_seconds", target=target) > last_success[target]
                     and bool(m.mutations(target)))
        cell = (f"{'unknown' if unknown else 'NOT unknown (up=%s)' % up}, {actions} action{'s' * (actions != 1)}, "
                f"{'recovered' if recovered else 'NOT recovered'}")
        if registry_up != 0:
            cell += f", registry_up={registry_up}"
        RESULTS.append(Outcome("registry", fault.name, target, cell,
                               unknown and actions == 0 and recovered and registry_up == 0))

    assert to_json(report)["registry"]["status"] == "error", to_json(report)["registry"]
    assert registry_up == 0
    for target in TARGETS:
        unknown, up, actions = outcome[target]
        assert actions == 0, f"mutating requests reached {target} while the registry was unreadable"
        assert up == 0, target
        assert unknown, f"{target}'s gauges changed while the registry was unreadable"
        assert body[target]["status"] == "error" or body[target]["candidates"] == [] or all(
            c["stage"] == "blocked" for c in body[target]["candidates"]), body[target]
    assert recovery.result == "success", [(t.name, t.error) for t in recovery.targets]
    assert m.value("registry_up") == 1
    for target in TARGETS:
        assert m.value("target_up", target=target) == 1
        assert m.value("last_success_timestamp_seconds", target=target) > last_success[target]
        assert m.mutations(target), f"{target}'s orphan was not acted on after the registry came back"
