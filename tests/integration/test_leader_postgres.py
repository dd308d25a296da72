"""The database lease on a real PostgreSQL (and, for the multi-process tests, on one SQLite file too).

The contention tests run separate processes that each loop acquire() and log
every term they believe they hold, as (identity, held_from, held_until) on the
clock the lease uses (PostgreSQL's, or the host's for SQLite); no two holders'
terms may overlap. Then a leader is SIGKILLed and another must take over within
the lease.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

import reconciler.leader
from reconciler.leader import DatabaseLease, Leadership
from reconciler.state import StateStore, leases
from tests.support.postgres import Postgres, postgres_server  # noqa: F401  (session fixture)
from tests.support.procs import REPO, Server, wait_until

pytestmark = pytest.mark.integration

_databases = itertools.count()


@pytest.fixture()
def pg_store(postgres_server: Postgres) -> Iterator[StateStore]:  # noqa: F811
    store = StateStore(postgres_server.create_database(f"lease_{os.getpid()}_{next(_databases)}"))
    yield store
    store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    server: Postgres = request.getfixturevalue("postgres_server")
    return server.create_database(f"lease_{os.getpid()}_{next(_databases)}")


def db_now(store: StateStore) -> float:
    with store.engine.connect() as conn:
        return float(conn.execute(sa.text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())


def lease_row(store: StateStore, name: str) -> dict[str, Any]:
    with store.engine.begin() as conn:
        return dict(conn.execute(sa.select(leases).where(leases.c.name == name)).mappings().one())


# -- the same semantics as on SQLite, on PostgreSQL's clock -----------------------------


def test_acquire_renew_and_follow(pg_store: StateStore) -> None:
    a = DatabaseLease(pg_store.engine, "basic", "a", 30.0)
    b = DatabaseLease(pg_store.engine, "basic", "b", 30.0)
    assert a.acquire() is True
    first = lease_row(pg_store, "basic")
    assert first["holder"] == "a" and first["transitions"] == 0
    assert first["expires_at"] == pytest.approx(first["renewed_at"] + 30.0)
    assert b.acquire() is False
    assert a.acquire() is True
    renewed = lease_row(pg_store, "basic")
    assert renewed["acquired_at"] == first["acquired_at"]
    assert renewed["renewed_at"] > first["renewed_at"]
    assert renewed["transitions"] == 0


def test_the_database_clock_is_used_not_the_replicas(pg_store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # This replica's clock is an hour behind: on PostgreSQL it must not matter.
    skewed = types.SimpleNamespace(time=lambda: time.time() - 3600, monotonic=time.monotonic)
    monkeypatch.setattr(reconciler.leader, "time", skewed)
    before = db_now(pg_store)
    a = DatabaseLease(pg_store.engine, "clock", "a", 30.0)
    assert a.acquire() is True
    after = db_now(pg_store)
    row = lease_row(pg_store, "clock")
    assert before <= row["renewed_at"] <= after
    assert a.last_term == (row["renewed_at"], row["expires_at"])


def test_expiry_takeover_release_and_transitions(pg_store: StateStore) -> None:
    a = DatabaseLease(pg_store.engine, "expiry", "a", 1.0)
    b = DatabaseLease(pg_store.engine, "expiry", "b", 1.0)
    c = DatabaseLease(pg_store.engine, "expiry", "c", 1.0)
    assert a.acquire() is True
    assert b.acquire() is False
    expires_at = lease_row(pg_store, "expiry")["expires_at"]
    wait_until(lambda: db_now(pg_store) > expires_at, timeout=10, what="the lease to expire", interval=0.1)
    assert b.acquire() is True
    assert a.acquire() is False  # lost while it was away
    assert c.acquire() is False
    assert lease_row(pg_store, "expiry")["transitions"] == 1
    b.release()
    released = lease_row(pg_store, "expiry")
    assert released["holder"] is None and released["expires_at"] <= db_now(pg_store)
    assert c.acquire() is True  # at once
    row = lease_row(pg_store, "expiry")
    assert row["holder"] == "c" and row["transitions"] == 2


def test_a_refused_connection_is_not_leadership_and_logs_no_password(postgres_server: Postgres) -> None:  # noqa: F811
    wrong = postgres_server.url().replace(postgres_server.password, "wrong-password-4c1d")
    store = StateStore(wrong, migrate=False)
    a = DatabaseLease(store.engine, "auth", "a", 5.0)
    with capture_logs() as logs:
        assert a.acquire() is False
        a.release()  # best effort, never raises
    store.close()
    errors = [entry["error"] for entry in logs if entry["log_level"] == "warning"]
    assert len(errors) == 2 and "password authentication failed" in errors[0]
    assert all("wrong-password-4c1d" not in error for error in errors)


def test_concurrent_first_inserts_elect_exactly_one(pg_store: StateStore) -> None:
    # Many electors racing for a lease row that does not exist yet: one insert wins.
    import threading

    electors = [DatabaseLease(pg_store.engine, f"race-{round_}", f"r{i}", 30.0)
                for round_ in range(10) for i in range(4)]
    results: dict[tuple[str, str], bool] = {}
    barrier = threading.Barrier(4)

    def run(elector: DatabaseLease) -> None:
        barrier.wait()
        results[(elector.name, elector.identity)] = elector.acquire()

    for round_ in range(10):
        threads = [threading.Thread(target=run, args=(e,)) for e in electors[round_ * 4:(round_ + 1) * 4]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    for round_ in range(10):
        winners = [identity for (name, identity), held in results.items() if name == f"race-{round_}" and held]
        assert len(winners) == 1
        assert lease_row(pg_store, f"race-{round_}")["holder"] == winners[0]


# -- many processes: never two holders, and a killed leader is replaced --------------------

LEASE = 0.5
ROUNDS = 200


def contend(url: str, name: str, identity: str, rounds: int, lease: float, out: str) -> None:
    """One replica: loop acquire(); log each term it holds, and when it gives the lease up."""
    store = StateStore(url)
    elector = DatabaseLease(store.engine, name, identity, lease)
    rng = random.Random(identity)
    with open(out, "a", encoding="utf-8") as log:
        for _ in range(rounds):
            if not elector.acquire():
                time.sleep(rng.uniform(0, lease / 4))
                continue
            # Believed from when acquire() returned (after its commit) until the expiry it wrote.
            held_from, held_until = _clock(store), (elector.last_term or (0.0, 0.0))[1]
            log.write(json.dumps(["hold", identity, held_from, held_until]) + "\n")
            log.flush()
            roll = rng.random()
            if roll < 0.15:
                # The holder stops believing it leads before it releases: its term ends here.
                log.write(json.dumps(["release", identity, _clock(store)]) + "\n")
                log.flush()
                elector.release()
                time.sleep(lease / 2)  # stepped down: give the others a chance
            elif roll < 0.2:
                time.sleep(lease * 1.3)  # a stalled replica: the lease lapses under it
            else:
                time.sleep(rng.uniform(0, lease / 4))
    store.close()


def hold(url: str, name: str, identity: str, lease: float) -> None:
    """One replica of the daemon: Leadership renewing in its thread until the process is killed."""
    store = StateStore(url)
    leadership = Leadership(DatabaseLease(store.engine, name, identity, lease), lease)
    leadership.start()
    print("started", flush=True)
    time.sleep(600)


def _clock(store: StateStore) -> float:
    return db_now(store) if store.dialect == "postgresql" else time.time()


def terms(lines: list[list[Any]]) -> list[tuple[str, float, float]]:
    """Each holder's terms; a release ends every term (renewal) of the holder that was still running."""
    result: list[tuple[str, float, float]] = []
    running: dict[str, list[int]] = {}
    for line in lines:
        if line[0] == "hold":
            running.setdefault(line[1], []).append(len(result))
            result.append((line[1], line[2], line[3]))
            continue
        for index in running.pop(line[1], []):
            identity, held_from, held_until = result[index]
            result[index] = (identity, held_from, min(held_until, line[2]))
    return result


def overlaps(all_terms: list[tuple[str, float, float]]) -> list[tuple[Any, Any]]:
    """Pairs of terms of different holders that overlap in time."""
    found = []
    latest: dict[str, tuple[str, float, float]] = {}
    for term in sorted(all_terms, key=lambda t: t[1]):
        for other, previous in latest.items():
            if other != term[0] and previous[2] > term[1]:
                found.append((previous, term))
        if term[0] not in latest or term[2] > latest[term[0]][2]:
            latest[term[0]] = term
    return found


def test_the_overlap_check_can_see_an_overlap() -> None:
    assert overlaps([("a", 0.0, 1.0), ("b", 0.5, 1.5)]) != []
    assert overlaps([("a", 0.0, 1.0), ("a", 0.5, 1.5), ("b", 1.5, 2.0)]) == []
    assert terms([["hold", "a", 0.0, 1.0], ["hold", "a", 0.2, 1.2], ["release", "a", 0.4], ["hold", "a", 2.0, 3.0],
                  ["hold", "b", 0.5, 1.5]]) == [("a", 0.0, 0.4), ("a", 0.2, 0.4), ("a", 2.0, 3.0), ("b", 0.5, 1.5)]


def _python(call: str) -> list[str]:
    return [sys.executable, "-c", f"from tests.integration.test_leader_postgres import *; {call}"]


def test_three_processes_never_hold_the_lease_at_once(store_url: str, tmp_path: Path) -> None:
    StateStore(store_url).close()  # migrated once up front: this test is about the lease
    logs = [tmp_path / f"replica-{i}.jsonl" for i in range(3)]
    workers = [Server(f"replica-{i}", _python(f"contend({store_url!r}, 'contended', 'replica-{i}', {ROUNDS}, "
                                             f"{LEASE}, {str(logs[i])!r})"), tmp_path / f"replica-{i}.log", cwd=REPO)
               for i in range(3)]
    try:
        for worker in workers:
            worker.process.wait(300)
        for worker in workers:
            assert worker.process.returncode == 0, worker.tail()
    finally:
        for worker in workers:
            worker.stop()
    lines = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
    all_terms = terms(lines)
    holders = {identity for identity, _, _ in all_terms}
    handovers = sum(1 for previous, term in zip(sorted(all_terms, key=lambda t: t[1]),
                                                sorted(all_terms, key=lambda t: t[1])[1:])
                    if previous[0] != term[0])
    assert holders == {"replica-0", "replica-1", "replica-2"}
    assert handovers >= 10  # real contention, not one replica holding throughout
    assert overlaps(all_terms) == []
    store = StateStore(store_url)
    try:
        assert lease_row(store, "contended")["transitions"] >= handovers
    finally:
        store.close()


def test_a_killed_leader_is_replaced_within_the_lease(store_url: str, tmp_path: Path) -> None:
    lease = 2.0
    StateStore(store_url).close()
    replicas = {f"replica-{i}": Server(f"replica-{i}", _python(f"hold({store_url!r}, 'killable', 'replica-{i}', "
                                                               f"{lease})"), tmp_path / f"replica-{i}.log", cwd=REPO)
                for i in range(3)}
    store = StateStore(store_url)
    observer = DatabaseLease(store.engine, "killable", "observer", lease)

    def current_holder() -> str | None:
        with store.engine.begin() as conn:
            row = conn.execute(sa.select(leases.c.holder, leases.c.expires_at)
                               .where(leases.c.name == "killable")).one_or_none()
        return row[0] if row is not None and row[1] > _clock(store) else None

    try:
        for server in replicas.values():
            wait_until(lambda s=server: "started" in s.log.read_text(), 60, f"{server.name} to start", server)
        leader = current_holder()
        assert leader in replicas
        os.kill(replicas[leader].pid, signal.SIGKILL)  # no release: the lease has to run out
        replicas[leader].process.wait(10)
        # At most lease_duration after the dead leader's last renew, plus one retry period.
        wait_until(lambda: current_holder() not in (None, leader), timeout=lease + lease / 3 + 1.0,
                   what="another replica to take over", interval=0.05)
        successor = current_holder()
        assert successor in replicas and successor != leader
        assert replicas[successor].alive()
        assert lease_row(store, "killable")["transitions"] == 1
        assert observer.acquire() is False
    finally:
        for server in replicas.values():
            server.stop()
        store.close()
