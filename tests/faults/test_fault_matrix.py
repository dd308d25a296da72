"""The fault matrix (issue 6, item 1): every fault that applies, on each emulated target, on a
real Airflow 3 server, on the SQL registry and on the REST registry (a real ZenML server), with
cleanup enabled, approved and its dry-run evidence earned.

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

The real Airflow column (`airflow-real`): the daemon's Airflow target talks to a real Airflow 3
server (started once for the module) through `FaultProxy`, which breaks the chosen requests;
"no mutation" is checked on the proxy's request log and on the DAGs' paused state read from the
real server directly. The REST registry rows: the daemon reads a real ZenML server (started once)
through `SpoilingProxy`; that server serves a copy of the same store file, so its schedules match
the emulators' live schedules exactly as the SQL registry's do.

The outcomes go to tests/faults/results.json and RESULTS.md (`matrix_table.py`), from
which the README's "Fault matrix" section is copied.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
from tests.support import airflow as airflow_support
from tests.support.spoiling import Late, SpoilingProxy, Verdict
from tests.support.zenml_server import ZenmlServer, zenml_server  # noqa: F401 - the session fixture

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

# The real Airflow 3 server's column. In the daemon's config it is still the target named "airflow"
# (then served by the real server through a FaultProxy instead of the emulator).
REAL = "airflow-real"
REAL_LISTING = "/api/v2/dags"  # the listing's path (a DAG's own path starts with it too)
# A real server on two cores shared with other work can take a second or more for one answer (a login
# more): its limits are wider than the emulators', and the faults that must outlast them last longer.
REAL_TIMEOUT, REAL_LIST_DEADLINE, REAL_PAGE_SIZE = 5.0, 10.0, 1  # nine DAGs (tests/airflow_dags): nine pages
REAL_HANG = REAL_TIMEOUT + 1.5
REAL_SLOW = 1.5  # nine pages of 1.5s overrun the 10s deadline; a healthy listing takes about one second
# The DAGs ZenML made on the real server whose registry rows are gone (tests/airflow_dags): its orphans.
REAL_ORPHANS = {"cleanup_d51607f06930f87c7ac52243271c0d82", "legacy_6d916fbf247c3abe0abf911cbf705382"}

# The REST registry: the server caps pages at 5 (tests/support/zenml_server.py), so the schedules of a
# project span pages; asking for exactly that spares the 422-then-adopt round trip.
REST_PAGE_SIZE = 5
REST_SCHEDULES = "/api/v1/schedules"
# A healthy read through the proxy takes about two seconds (a login and a dozen requests to the real
# server), but ZenML's login alone took over 2s under load: the REST registry gets the real servers' limits.
REST_TIMEOUT, REST_READ_DEADLINE = 5.0, 15.0
REST_HANG = REST_TIMEOUT + 1.5
REST_SLOW = 3.0  # within the timeout; a dozen requests of 3s overrun the 15s read deadline

RESULTS: list[Outcome] = []


# -- the harness -------------------------------------------------------------------------------------------


class Matrix:
    """One daemon over the four targets, its config file (reloaded before every cycle) and its registry.

    With `proxy`, the target "airflow" is the real Airflow server behind that FaultProxy (the Airflow
    emulator idles); with `registry_proxy`, the registry is the real ZenML server's REST API behind it.
    """

    def __init__(self, tmp: Path, airflow: airflow_support.AirflowServer | None = None,
                 proxy: airflow_support.FaultProxy | None = None) -> None:
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
        self.airflow = airflow
        self.proxy = proxy
        if airflow is not None and proxy is not None:
            user, password = tmp / "real-airflow-user", tmp / "real-airflow-password"
            user.write_text(airflow.username + "\n")
            password.write_text(airflow.password + "\n")
            self.target("airflow").update(url=proxy.url, username_file=str(user), password_file=str(password),
                                          timeout=REAL_TIMEOUT, list_deadline=REAL_LIST_DEADLINE,
                                          page_size=REAL_PAGE_SIZE)
        self.registry_proxy: SpoilingProxy | None = None
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

    def is_real(self, target: str) -> bool:
        return target == "airflow" and self.proxy is not None

    def cycle(self) -> CycleReport:
        assert self.daemon is not None
        report = self.daemon.run_cycle()
        assert report is not None, "the cycle crashed (run_cycle returned None)"
        return report

    def clear_logs(self) -> None:
        for target in TARGETS:
            self.emulator(target).log.clear()
        if self.proxy is not None:
            self.proxy.clear()

    def mutations(self, target: str) -> list[tuple[str, str]]:
        if self.is_real(target):
            assert self.proxy is not None
            return self.proxy.mutations()  # every mutating request that reached the proxy, faulted or not
        return [(m.operation, m.path) for m in self.emulator(target).log.mutations()]

    def paused(self) -> dict[str, bool]:
        """The real Airflow's DAGs and their paused state, read from the server directly (not via the proxy)."""
        assert self.airflow is not None
        return {d: bool(dag["is_paused"]) for d, dag in self.airflow.all_dags().items()}

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


@contextmanager
def _running(m: Matrix) -> Iterator[Matrix]:
    with emulated(m.setup, airflow=m.proxy is None) as emulators:
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


@pytest.fixture()
def matrix(tmp_path: Path) -> Iterator[Matrix]:
    with _running(Matrix(tmp_path)) as m:
        yield m


@pytest.fixture(scope="module")
def real_airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[airflow_support.AirflowServer]:
    server = airflow_support.start(3, tmp_path_factory.mktemp("airflow-faults"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def real_matrix(tmp_path: Path, real_airflow: airflow_support.AirflowServer) -> Iterator[Matrix]:
    proxy = airflow_support.FaultProxy(real_airflow.url)
    before = {d: bool(dag["is_paused"]) for d, dag in real_airflow.all_dags().items()}
    assert not any(before[d] for d in REAL_ORPHANS), "the real server's orphans must start unpaused"
    try:
        with _running(Matrix(tmp_path, real_airflow, proxy)) as m:
            yield m
    finally:
        proxy.close()
        # Put the real server back as the scenario seeded it, for the next case.
        for dag_id, dag in real_airflow.all_dags().items():
            if dag_id in before and bool(dag["is_paused"]) != before[dag_id]:
                real_airflow.raw("PATCH", f"/dags/{dag_id}", json={"is_paused": before[dag_id]}).raise_for_status()


@pytest.fixture()
def rest_matrix(tmp_path: Path, zenml_server: ZenmlServer) -> Iterator[Matrix]:  # noqa: F811 - the fixture
    proxy = SpoilingProxy(zenml_server.url)
    key = tmp_path / "zenml-api-key"
    key.write_text(zenml_server.api_key + "\n", encoding="utf-8")
    m = Matrix(tmp_path)
    m.raw["registry"] = {"type": "zenml-rest", "url": proxy.url, "api_key_file": str(key), "timeout": REST_TIMEOUT,
                         "max_retries": MAX_RETRIES, "page_size": REST_PAGE_SIZE,
                         "read_deadline": REST_READ_DEADLINE}
    m.registry_proxy = proxy
    m.write()
    try:
        with _running(m):
            yield m
    finally:
        proxy.close()


def _pad_kubernetes(emulators: Emulators) -> None:
    """Two more CronJobs that ZenML did not make (no annotation: unmanaged, never touched), so the
    Kubernetes listing has pages enough (four at one item a page) to fail half way or overrun its deadline."""
    for number in (1, 2):
        emulators.kubernetes.add("cronjobs", plain_cron_job(f"ops-backup-{number}", f"{number} 3 * * *"))


GROUPS = ("target", "registry", "registry-rest")
COLUMNS = (*TARGETS, REAL)


@pytest.fixture(scope="module", autouse=True)
def table() -> Iterator[None]:
    RESULTS.clear()
    # Cells where a fault cannot happen are not test cases (nothing to assert); they are in the table.
    RESULTS.extend(Outcome("target", f.name, t, "n/a", None, why)
                   for f in TARGET_FAULTS for t, why in f.not_applicable.items())
    RESULTS.extend(Outcome("registry-rest", f.name, t, "n/a", None, f.not_applicable)
                   for f in REST_FAULTS if f.not_applicable for t in TARGETS)
    yield
    expected = (len(TARGET_FAULTS) * len(COLUMNS) + (len(REGISTRY_FAULTS) + len(REST_FAULTS)) * len(TARGETS))
    if len(RESULTS) == expected:  # a partial run (-k, a crash) does not overwrite the published table
        matrix_table.write(sorted(RESULTS, key=_order))


def _order(o: Outcome) -> tuple[int, int, int]:
    faults = {"target": [f.name for f in TARGET_FAULTS], "registry": [f.name for f in REGISTRY_FAULTS],
              "registry-rest": [f.name for f in REST_FAULTS]}
    return (GROUPS.index(o.group), faults[o.group].index(o.fault), COLUMNS.index(o.target))


# -- target faults ----------------------------------------------------------------------------------------

Undo = Callable[[], None]


@dataclass(frozen=True)
class TargetFault:
    name: str  # the table's row
    inject: Callable[[Matrix, str], Undo | None]  # sets the fault up for the next cycle; returns how to lift it
    # The same fault on the real Airflow, made by the FaultProxy in front of it; returns how to lift it.
    real: Callable[[airflow_support.FaultProxy], Undo] | None = None
    min_seen: int = 1  # requests of the listing the fault must have met (proof that it was hit)
    not_applicable: dict[str, str] = field(default_factory=dict)  # column -> why


def _on_listing(fault: Fault) -> Callable[[Matrix, str], Undo | None]:
    def inject(m: Matrix, target: str) -> Undo | None:
        m.emulator(target).faults.set(LIST_OPERATION[target], fault)
        return None
    return inject


def _refused(m: Matrix, target: str) -> Undo:
    """The target's endpoint changed (config reload) to a port where nothing listens: bound by this test
    and never listening, so the port stays refused and no other process can take it meanwhile."""
    key = ENDPOINT_KEY[target]
    old = m.target(target)[key]
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))
    m.target(target)[key] = f"http://127.0.0.1:{closed.getsockname()[1]}"
    m.write()

    def undo() -> None:
        m.target(target)[key] = old
        m.write()
        closed.close()
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


def _proxy_down(proxy: airflow_support.FaultProxy) -> Undo:
    """The real server's address (the proxy) stops listening: every connection is refused."""
    proxy.down()
    return proxy.up


def _armed(fault: int | str, nth: int = 1, hold: float = 0.0, retry_after: int | None = None
           ) -> Callable[[airflow_support.FaultProxy], Undo]:
    """From the nth request of the DAG listing on, every one gets `fault` from the proxy."""
    def inject(proxy: airflow_support.FaultProxy) -> Undo:
        proxy.hold = hold
        proxy.arm(fault, nth=nth, path_prefix=REAL_LISTING, sticky=True, retry_after=retry_after)
        return proxy.disarm
    return inject


NO_TOKEN = ("the Airflow REST API pages DAGs by offset and limit: there is no page token to expire; "
            "a listing failing half way is the row above")
TARGET_FAULTS = [
    TargetFault("connection refused (endpoint moved to a closed port by a config reload; real Airflow: "
                "the server's address stops listening)", _refused, _proxy_down, min_seen=0),
    TargetFault(f"timeout: every listing request hangs {HANG:g}s (> timeout {TIMEOUT:g}s; real Airflow: "
                f"{REAL_HANG:g}s > {REAL_TIMEOUT:g}s), then drops",
                _on_listing(Fault(hang=HANG)), _armed("hang", hold=REAL_HANG)),
    TargetFault("5xx: 503 on every listing request", _on_listing(Fault(status=503)), _armed(503),
                min_seen=MAX_RETRIES + 1),
    TargetFault("429 with Retry-After: 1 on every attempt (retries run out)",
                _on_listing(Fault(status=429, retry_after=1)), _armed(429, retry_after=1), min_seen=MAX_RETRIES + 1),
    TargetFault("401 Unauthorized on the listing (real Airflow: the JWT refused, one new login, refused again)",
                _on_listing(Fault(status=401)), _armed(401)),
    TargetFault("403 Forbidden on the listing", _on_listing(Fault(status=403)), _armed(403)),
    TargetFault("malformed body (200, not JSON / not the message)", _on_listing(Fault(malformed=True)),
                _armed("malformed")),
    TargetFault("listing fails half way (page 1 ok, then 500)", _on_listing(Fault(status=500, after=1)),
                _armed(500, nth=2), min_seen=2),
    TargetFault("expired page / continue token (k8s: compacted after every first page, 410 Expired on "
                "each restart; Vertex, KFP: page 2 answered 400, token no longer valid)",
                lambda m, t: (_compacted_after_first_page(m, t) if t == "k8s"
                              else _on_listing(Fault(status=400, after=1))(m, t)),
                None, min_seen=0, not_applicable={"airflow": NO_TOKEN, REAL: NO_TOKEN}),
    TargetFault(f"slow: every page takes {SLOW:g}s (< timeout), the listing overruns list_deadline "
                f"{LIST_DEADLINE:g}s (real Airflow: {REAL_LIST_DEADLINE:g}s)",
                _on_listing(Fault(latency=SLOW)), _armed("slow", hold=REAL_SLOW), min_seen=2),
]


def _earn_evidence(m: Matrix) -> None:
    report = m.cycle()
    assert report.result == "success", [(t.name, t.error) for t in report.targets]
    for target in TARGETS:
        assert m.mutations(target) == [], f"the dry-run cycle mutated {target}"
        assert m.value("target_up", target=target) == 1
    stages = {c["stage"] for t in to_json(report)["targets"] for c in t["candidates"]}
    assert stages == {"dry_run"}, stages


def _case_id(fault_name: str, target: str) -> str:
    return f'{fault_name.split(":")[0].split(" (")[0].replace(" ", "-")}-{target}'


@dataclass
class Injected:
    """One target fault in place: how to lift it, and what reached the target meanwhile."""

    undo: Undo
    seen: Callable[[], int]  # requests of the listing that met the fault
    reached: Callable[[], int]  # requests of any kind that reached the target (or its proxy)


def _inject_emulated(m: Matrix, fault: TargetFault, target: str) -> Injected:
    undo = fault.inject(m, target)
    emulator = m.emulator(target)

    def lift() -> None:
        if undo is not None:
            undo()
        emulator.faults.clear()
    return Injected(lift, lambda: emulator.faults.seen(LIST_OPERATION[target]), lambda: len(emulator.log.all()))


def _inject_real(m: Matrix, fault: TargetFault) -> Injected:
    assert fault.real is not None and m.proxy is not None
    proxy = m.proxy
    return Injected(fault.real(proxy), proxy.faulted, lambda: len(proxy.requests))


def _target_case(m: Matrix, fault: TargetFault, target: str, column: str,
                 inject: Callable[[], Injected]) -> None:
    """One cell: the evidence earned, the fault cycle, the healthy cycle after it; the outcome recorded, then asserted."""
    others = [t for t in TARGETS if t != target]
    _earn_evidence(m)
    kept = m.kept(target)
    assert kept, "no gauges to keep: the clean cycle exported nothing for the target"
    last_success = {t: m.value("last_success_timestamp_seconds", target=t) for t in TARGETS}
    partial_before = m.value("cycles_total", result="partial") or 0.0
    paused_before = m.paused() if m.is_real(target) else {}
    m.clear_logs()

    injected = inject()
    report = m.cycle()  # the daemon survives the fault: a report, not a crash
    seen = injected.seen()
    reached = injected.reached()
    registry_up = m.value("registry_up")
    partial_after = m.value("cycles_total", result="partial")
    body = {t["name"]: t for t in to_json(report)["targets"]}
    up = m.value("target_up", target=target)
    actions = len(m.mutations(target))
    paused_during = m.paused() if m.is_real(target) else {}
    other_actions = {t: len(m.mutations(t)) for t in others}
    unknown = up == 0 and body[target]["status"] == "error" and m.kept(target) == kept
    others_ok = all(m.value("target_up", target=t) == 1 and body[t]["status"] == "ok"
                    and m.value("last_success_timestamp_seconds", target=t) > last_success[t]
                    and other_actions[t] > 0 for t in others)
    other_last_success = {t: m.value("last_success_timestamp_seconds", target=t) for t in others}
    other_up = {t: m.value("target_up", target=t) for t in others}

    injected.undo()
    m.clear_logs()
    recovery = m.cycle()
    recovered = (m.value("target_up", target=target) == 1
                 and m.value("last_success_timestamp_seconds", target=target) > last_success[target]
                 and bool(m.mutations(target)))
    if m.is_real(target):  # acted on for real: the real server's orphans are paused now, nothing else changed
        paused_after = m.paused()
        recovered = recovered and paused_after == {d: p or d in REAL_ORPHANS for d, p in paused_before.items()}
    cell = (f"{'unknown' if unknown else 'NOT unknown (up=%s)' % up}, {actions} action{'s' * (actions != 1)}, "
            f"{'recovered' if recovered else 'NOT recovered'}")
    if not others_ok:
        cell += ", other targets NOT reconciled"
    if paused_during != paused_before:
        cell += ", DAGs' paused state CHANGED"
    RESULTS.append(Outcome("target", fault.name, column, cell,
                           unknown and actions == 0 and recovered and others_ok and paused_during == paused_before))

    # The fault cycle.
    assert seen >= fault.min_seen, f"the fault met {seen} listing requests, expected >= {fault.min_seen}"
    if fault.inject is _refused:
        assert reached == 0, "the closed endpoint was still reached"
        # What the operator reads must name the cause: a refusal is not a timeout.
        assert "timed out" not in body[target]["error"], body[target]["error"]
    assert report.result == "partial", report.result
    assert partial_after == partial_before + 1
    assert up == 0
    assert body[target]["status"] == "error" and body[target]["error"]
    assert registry_up == 1
    assert actions == 0, f"mutating requests reached the unknown target {target}"
    assert paused_during == paused_before, "a real DAG's paused state changed while its listing was failing"
    assert unknown, "the unknown target's gauges changed"
    for other in others:
        assert body[other]["status"] == "ok", (other, body[other]["error"])
        assert other_up[other] == 1
        assert other_last_success[other] > last_success[other]
        assert other_actions[other] > 0, f"{other} was not acted on: the cycle would not have acted anywhere"
    # The healthy cycle after it.
    assert recovery.result == "success", [(t.name, t.error) for t in recovery.targets]
    assert recovered, f"{column} did not recover: up={m.value('target_up', target=target)}"


CASES = [(f, t) for f in TARGET_FAULTS for t in TARGETS if t not in f.not_applicable]
REAL_CASES = [f for f in TARGET_FAULTS if REAL not in f.not_applicable]


@pytest.mark.parametrize("fault, target", CASES, ids=[_case_id(f.name, t) for f, t in CASES])
def test_target_fault(matrix: Matrix, fault: TargetFault, target: str) -> None:
    _target_case(matrix, fault, target, target, lambda: _inject_emulated(matrix, fault, target))


@pytest.mark.parametrize("fault", REAL_CASES, ids=[_case_id(f.name, REAL) for f in REAL_CASES])
def test_real_airflow_fault(real_matrix: Matrix, fault: TargetFault) -> None:
    _target_case(real_matrix, fault, "airflow", REAL, lambda: _inject_real(real_matrix, fault))


# -- registry faults --------------------------------------------------------------------------------------


def _registry_case(m: Matrix, group: str, fault_name: str, inject: Callable[[], Undo],
                   hit: Callable[[], int] = lambda: 1) -> None:
    """One registry row: every target must be unknown with no action in the fault cycle, and recover after."""
    _earn_evidence(m)
    kept = {t: m.kept(t) for t in TARGETS}
    last_success = {t: m.value("last_success_timestamp_seconds", target=t) for t in TARGETS}
    m.clear_logs()

    undo = inject()
    report = m.cycle()
    hits = hit()
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
        RESULTS.append(Outcome(group, fault_name, target, cell,
                               unknown and actions == 0 and recovered and registry_up == 0))

    assert hits >= 1, "the fault was never met"
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
    _registry_case(matrix, "registry", fault.name, lambda: fault.inject(matrix.registry))


# -- REST registry faults: a real ZenML server behind a SpoilingProxy ----------------------------------------

Spoil = Callable[[str, str, dict[str, list[str]]], Verdict]


@dataclass(frozen=True)
class RestFault:
    name: str
    spoil: Spoil | None  # None: the proxy goes down (connections refused)
    not_applicable: str = ""  # why the fault cannot happen; then `spoil` is unused


def _schedules(verdict: Verdict, from_page: int = 1) -> Spoil:
    """Every request for the schedules listing, from page `from_page` on, gets `verdict`."""
    def spoil(method: str, path: str, query: dict[str, list[str]]) -> Verdict:
        if path == REST_SCHEDULES and int(query.get("page", ["1"])[0]) >= from_page:
            return verdict
        return None
    return spoil


def _every_read(verdict: Verdict) -> Spoil:
    """Every GET of the read (the login aside) gets `verdict`."""
    def spoil(method: str, path: str, query: dict[str, list[str]]) -> Verdict:
        return verdict if method == "GET" else None
    return spoil


def _expired_token_and_key(method: str, path: str, query: dict[str, list[str]]) -> Verdict:
    """The session token expired (401 on the listing) and the API key was revoked (the new login 401s)."""
    if path == REST_SCHEDULES or path == "/api/v1/login":
        return 401, b'{"detail": ["CredentialsNotValid", "Authentication error: the token has expired"]}'
    return None


REST_FAULTS = [
    RestFault("connection refused (the server's address stops listening)", None),
    RestFault(f"timeout: every schedules request hangs {REST_HANG:g}s (> timeout {REST_TIMEOUT:g}s), then drops",
              _schedules(Late(REST_HANG, "drop"))),
    RestFault("5xx: 503 on every schedules request", _schedules((503, b'{"detail": "unavailable"}'))),
    RestFault("429 with Retry-After: 1 on every attempt (retries run out)",
              _schedules((429, b'{"detail": "slow down"}', {"Retry-After": "1"}))),
    RestFault("401 Unauthorized on the schedules listing (one new login, refused again)",
              _schedules((401, b'{"detail": ["CredentialsNotValid", "invalid token"]}'))),
    RestFault("expired token and revoked key (401 on the listing, then 401 on the new login)", _expired_token_and_key),
    RestFault("403 Forbidden on the schedules listing", _schedules((403, b'{"detail": ["IllegalOperationError"]}'))),
    RestFault("malformed body (200, not JSON)", _schedules((200, b"<html>upstream gone</html>"))),
    RestFault("listing fails half way (schedules page 1 ok, then 500)",
              _schedules((500, b'{"detail": "boom"}'), from_page=2)),
    RestFault("expired page token", None, not_applicable=(
        "ZenML pages by page number and size: there is no page token to expire (a page past the end after "
        "rows were deleted, ZenML's 400, makes the listing read again: tests/integration/test_zenml_rest.py)")),
    RestFault(f"slow: every request takes {REST_SLOW:g}s (< timeout), the read overruns read_deadline "
              f"{REST_READ_DEADLINE:g}s", _every_read(Late(REST_SLOW))),
]
REST_CASES = [f for f in REST_FAULTS if not f.not_applicable]


@pytest.mark.parametrize("fault", REST_CASES, ids=[_case_id(f.name, "rest") for f in REST_CASES])
def test_rest_registry_fault(rest_matrix: Matrix, fault: RestFault) -> None:
    proxy = rest_matrix.registry_proxy
    assert proxy is not None

    def inject() -> Undo:
        proxy.spoiled = 0
        if fault.spoil is None:
            proxy.down()
            return proxy.up

        proxy.spoil = fault.spoil

        def undo() -> None:
            proxy.spoil = lambda method, path, query: None
        return undo

    # Refused: proof is that the proxy was down during the cycle (nothing spoiled, nothing passed).
    _registry_case(rest_matrix, "registry-rest", fault.name, inject,
                   hit=lambda: 1 if fault.spoil is None else proxy.spoiled)
