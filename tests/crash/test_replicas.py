"""Two and three replicas on one state store and one Lease, the leader SIGKILLed again and again.

Real `schedule-reconciler run` processes (cleanup approved, interval 1s) share
one state store and one lease: the coordination.k8s.io/v1 Lease in the
Kubernetes emulator (which is also a target), or the database lease on a
shared PostgreSQL store. Each round new orphans appear on Vertex and on
Kubernetes; at a random moment the current leader is SIGKILLed and started
again; a follower takes over. At the end:

- never two actors: every delete and pause that reached an emulator matches
  one audit record whose replica held the lease when the request went out
  (Kubernetes backend: read from the Lease writes the emulator logged - the
  last successful write before the request is that replica's, less than the
  lease duration before it; database backend: the record's cycle was a leader
  cycle of that replica); no two replicas' action intervals overlap;
- never a lost or duplicated audit record: one completed `succeeded` record per
  request, one request per orphan, no record pending, every orphan acted on.

The audit record's `replica` column is the lease identity of the replica that
acted (`<POD_NAME>-<pid>-<hex>`), which is how an operator tells them apart too.
`CRASH_ROUNDS=20` runs the long form (default: 3 rounds).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from providers.emulators.base import Fault, LoggedRequest
from providers.emulators.sandbox import Emulators
from reconciler.state import AuditRecord, StateStore
from tests.integration.cleanup_support import component_ids, emulated, k8s_orphan, vertex_orphan, write_config
from tests.support.postgres import Postgres, postgres_server  # noqa: F401 - the session fixture
from tests.support.procs import REPO

pytestmark = pytest.mark.integration

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "3"))
LEASE = 3.0  # seconds
LATENCY = 0.3  # seconds each delete or pause takes: widens the window a kill can land in
WAIT = 90.0
LEASE_NAME = "schedule-reconciler-crash"
CASES = [("kubernetes", 2, "sqlite"), ("kubernetes", 3, "sqlite"), ("database", 3, "postgresql")]


@dataclass
class Replica:
    name: str
    process: subprocess.Popen[bytes]

    @property
    def identity_prefix(self) -> str:
        return f"{self.name}-{self.process.pid}-"


@dataclass(frozen=True)
class Orphan:
    target: str
    native_id: str


class Cluster:
    def __init__(self, config: Path, tmp: Path, store: StateStore, emulators: Emulators, backend: str) -> None:
        self.config = config
        self.tmp = tmp
        self.store = store
        self.emulators = emulators
        self.backend = backend
        self.replicas: dict[str, Replica] = {}
        self.kills: list[tuple[str, float]] = []  # (identity prefix, when)

    def start(self, name: str) -> None:
        env = dict(os.environ, POD_NAME=name, SCHEDULE_RECONCILER__METRICS__PORT="0")
        env.pop("SCHEDULE_RECONCILER_FAILPOINTS", None)
        with open(self.tmp / f"{name}.log", "ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "reconciler", "run", "--config", str(self.config)],
                                       cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.replicas[name] = Replica(name, process)

    def holder(self) -> str | None:
        """The identity the lease names now, if it has not run out."""
        if self.backend == "kubernetes":
            lease = self.emulators.kubernetes.object("leases", "zenml", LEASE_NAME)
            return None if lease is None else (lease["spec"].get("holderIdentity") or None)
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.text("SELECT holder, expires_at FROM leases WHERE name = :n"),
                               {"n": LEASE_NAME}).first()
        return None if row is None or row[1] < time.time() else row[0]

    def leader(self) -> Replica | None:
        holder = self.holder()
        for replica in self.replicas.values():
            if holder and holder.startswith(replica.identity_prefix) and replica.process.poll() is None:
                return replica
        return None

    def wait_leader(self) -> Replica:
        deadline = time.monotonic() + WAIT
        while (leader := self.leader()) is None:
            assert time.monotonic() < deadline, "no leader"
            time.sleep(0.1)
        return leader

    def kill(self, replica: Replica) -> None:
        os.kill(replica.process.pid, signal.SIGKILL)  # only a process this test started
        assert replica.process.wait(30) == -signal.SIGKILL
        self.kills.append((replica.identity_prefix, time.time()))

    def stop_all(self) -> None:
        for replica in self.replicas.values():
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in self.replicas.values():
            try:
                replica.process.wait(30)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait(10)


def state_url_for(request: pytest.FixtureRequest, dialect: str, tmp: Path) -> str:
    if dialect == "sqlite":
        return f"sqlite:///{tmp}/shared-state.db"
    postgres: Postgres = request.getfixturevalue("postgres_server")
    return postgres.create_database(f"crash_replicas_{os.getpid()}_{int(time.time() * 1000)}")


@pytest.fixture(params=CASES, ids=[f"{b}-{n}-replicas-{d}" for b, n, d in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, int, str]:
    return request.param  # type: ignore[no-any-return]


def mutations(emulators: Emulators) -> list[tuple[str, LoggedRequest]]:
    """Every delete and pause that reached a target: (target, request)."""
    found = [("vertex", r) for r in emulators.vertex.log.mutations() if r.operation == "delete_schedule"]
    found += [("k8s", r) for r in emulators.kubernetes.log.mutations() if r.operation == "patch_schedule"]
    return found


def request_for(orphan: Orphan, request: LoggedRequest) -> bool:
    key = orphan.native_id.rsplit("/", 1)[-1]
    return (isinstance(request.body, dict) and request.body.get("name") == orphan.native_id) \
        or request.path.endswith(f"/{key}") or f"/{key}:" in request.path


def lease_writes(emulators: Emulators) -> list[tuple[float, str, float]]:
    """Successful writes of the Lease: (logged at, holder identity, lease duration)."""
    writes = []
    for r in emulators.kubernetes.log.all():
        if r.operation in ("create_lease", "replace_lease") and r.status in (200, 201) and LEASE_NAME in (
                r.path + json.dumps(r.body)):
            spec = r.body.get("spec") or {}
            writes.append((r.at, spec.get("holderIdentity") or "", float(spec.get("leaseDurationSeconds") or 0)))
    return sorted(writes)


@pytest.mark.timeout(max(600, 120 * ROUNDS))  # the long form runs past pytest's 600 s default
def test_replicas_one_actor_no_lost_or_duplicated_record(case: tuple[str, int, str], tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    backend, count, dialect = case
    seed_value = int(os.environ.get("CRASH_SEED") or int.from_bytes(os.urandom(4), "big"))
    rng = random.Random(seed_value)
    print(f"replicas seed {seed_value} (replay with CRASH_SEED={seed_value}): {backend} lease, {count} replicas, "
          f"{dialect} store, {ROUNDS} rounds")
    cleanup = {"approve": True, "dry_run_cycles": 1, "grace_period": "0s", "max_fraction": 1.0,
               "max_actions_per_cycle": 50}
    setup = write_config(tmp_path, cleanup=cleanup, actions={"kubernetes": "pause"}, targets=("vertex", "kubernetes"))
    state_url = state_url_for(request, dialect, tmp_path)
    setup.raw.update(interval="1s", jitter="0s", state={"url": state_url})
    for target in setup.raw["targets"]:
        target["list_deadline"] = "2s"
    ids = component_ids()
    with emulated(setup) as emulators:
        election: dict[str, Any] = {"enabled": True, "backend": backend, "lease_name": LEASE_NAME,
                                    "lease_duration": f"{LEASE}s"}
        if backend == "kubernetes":
            election.update(host=emulators.kubernetes.url, namespace="zenml")
        setup.raw["leader_election"] = election
        setup.write()
        # No scenario seed: the targets hold only this test's orphans, so every request is accounted for.
        store = StateStore(state_url)  # migrated once up front; each replica checks it again
        cluster = Cluster(setup.path, tmp_path, store, emulators, backend)
        orphans: list[Orphan] = []

        def fresh(tag: str) -> None:
            orphans.append(Orphan("vertex", vertex_orphan(emulators, f"vx_ha_{tag}")))
            orphans.append(Orphan("k8s", k8s_orphan(emulators, ids["k8s-orchestrator"], f"zenml-{tag[:8]}-ha-job")))

        def done(orphan: Orphan) -> bool:
            if orphan.target == "vertex":
                return orphan.native_id not in {s.name for s in emulators.vertex.schedules()}
            namespace, name = orphan.native_id.split("/")
            obj = emulators.kubernetes.object("cronjobs", namespace, name)
            return obj is not None and bool(obj["spec"]["suspend"])

        try:
            for i in range(count):
                cluster.start(f"replica-{chr(97 + i)}")
            cluster.wait_leader()
            for op, emulator in (("delete_schedule", emulators.vertex), ("patch_schedule", emulators.kubernetes)):
                emulator.faults.set(op, Fault(latency=LATENCY))
            takeovers = 0
            for round_ in range(ROUNDS):
                leader = cluster.wait_leader()
                fresh(f"{round_:02d}{rng.getrandbits(32):08x}")
                time.sleep(rng.uniform(0.0, 3.0))  # before, during or after this round's actions
                leader = cluster.leader() or leader
                cluster.kill(leader)
                cluster.start(leader.name)  # the same pod again, with a new identity
                successor = cluster.wait_leader()
                takeovers += successor.identity_prefix != leader.identity_prefix
            # The last leader finishes every orphan.
            deadline = time.monotonic() + WAIT
            while not (all(done(o) for o in orphans) and not store.pending_actions()):
                assert time.monotonic() < deadline, ([o for o in orphans if not done(o)], store.pending_actions())
                time.sleep(0.2)
            time.sleep(1.0)  # a follower's cycle or two more: it must not act either
        finally:
            cluster.stop_all()
            for emulator in emulators.all():
                emulator.faults.clear()

        records = [r for r in store.history(limit=1_000_000) if r.replica]
        try:
            assert store.pending_actions() == []
            reached = mutations(emulators)
            succeeded = [r for r in records if r.outcome == "succeeded"]
            for orphan in orphans:  # each orphan: one request, one completed success
                mine = [r for _, r in reached if request_for(orphan, r)]
                assert len(mine) == 1, (orphan, [(r.operation, r.at) for r in mine])
                ok = [r for r in succeeded if r.native_id == orphan.native_id]
                assert len(ok) == 1, (orphan, ok)
            assert len(reached) == len(orphans) == len(succeeded), (len(reached), len(orphans), len(succeeded))
            for target, request_ in reached:  # who sent it held the lease then
                (record,) = [r for r in succeeded if request_for(Orphan(target, r.native_id), request_)]
                assert record.requested_at is not None and record.requested_at <= request_.at, record
                assert_held(store, emulators, backend, record)
            assert_no_overlap(records, cluster.kills)
            actors = {r.replica for r in records}
        finally:
            store.close()
        figures = {"backend": backend, "replicas": count, "store": dialect, "rounds": ROUNDS, "kills": len(cluster.kills),
                   "takeovers": takeovers, "actions": len(reached), "audit_records": len(records),
                   "actors": len(actors), "lost": 0, "duplicated": 0, "seed": seed_value}
        print("replica figures " + json.dumps(figures, sort_keys=True))
        assert takeovers >= 1


def assert_held(store: StateStore, emulators: Emulators, backend: str, record: AuditRecord) -> None:
    """The record's replica held the lease when its request went out."""
    assert record.requested_at is not None
    if backend == "kubernetes":
        before = [w for w in lease_writes(emulators) if w[0] <= record.requested_at]
        assert before, record
        at, holder, duration = before[-1]
        assert holder == record.replica, (record.id, record.replica, holder)
        assert record.requested_at < at + duration, (record.id, record.requested_at - at)
        return
    with store.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT replica, leader FROM cycles WHERE id = :c"), {"c": record.cycle_id}).first()
    assert row is not None and row[0] == record.replica and bool(row[1]), (record, row)


def assert_no_overlap(records: list[AuditRecord], kills: list[tuple[str, float]]) -> None:
    """Actions of different replicas never overlap in time (a killed one's ends at its death)."""
    death = {prefix: at for prefix, at in kills}
    spans = []
    for r in records:
        end = r.finished_at or r.started_at
        for prefix, at in death.items():
            if r.replica.startswith(prefix):
                end = min(end, at)
        spans.append((r.started_at, end, r.replica, r.id))
    spans.sort()
    for (s1, e1, who1, id1), (s2, e2, who2, id2) in zip(spans, spans[1:]):
        if who1 != who2:
            assert e1 <= s2, f"records {id1} ({who1}) and {id2} ({who2}) overlap"
