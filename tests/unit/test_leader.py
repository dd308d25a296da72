"""The database lease on a SQLite state store, with a clock the tests move, and Leadership around it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from reconciler.leader import AlwaysLeader, DatabaseLease, Leadership, identity_for
from reconciler.state import StateStore, leases
from tests.support.procs import wait_until

LEASE = 10.0


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[StateStore]:
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield state
    state.close()


def lease_row(store: StateStore, name: str = "leader") -> dict[str, object]:
    with store.engine.begin() as conn:
        return dict(conn.execute(sa.select(leases).where(leases.c.name == name)).mappings().one())


def electors(store: StateStore, clock: Clock, *names: str) -> list[DatabaseLease]:
    return [DatabaseLease(store.engine, "leader", name, LEASE, clock=clock) for name in names]


def test_the_first_replica_creates_the_lease_and_renews_it(store: StateStore) -> None:
    clock = Clock()
    a, = electors(store, clock, "a")
    assert a.acquire() is True
    first = lease_row(store)
    assert first == {"name": "leader", "holder": "a", "acquired_at": clock.now, "renewed_at": clock.now,
                     "expires_at": clock.now + LEASE, "transitions": 0}
    assert a.last_term == (clock.now, clock.now + LEASE)
    clock.advance(4)
    assert a.acquire() is True
    renewed = lease_row(store)
    assert renewed["acquired_at"] == first["acquired_at"]
    assert renewed["renewed_at"] == clock.now
    assert renewed["expires_at"] == clock.now + LEASE
    assert renewed["transitions"] == 0


def test_a_follower_waits_while_the_lease_is_valid(store: StateStore) -> None:
    clock = Clock()
    a, b, c = electors(store, clock, "a", "b", "c")
    assert a.acquire() is True
    for _ in range(3):
        clock.advance(LEASE / 3)
        assert b.acquire() is False
        assert c.acquire() is False
        assert a.acquire() is True  # the leader keeps renewing, so the followers never get it
    assert b.last_term is None
    assert lease_row(store)["holder"] == "a"


def test_an_expired_lease_is_taken_over_once_and_the_old_holder_is_refused(store: StateStore) -> None:
    clock = Clock()
    a, b, c = electors(store, clock, "a", "b", "c")
    assert a.acquire() is True
    clock.advance(LEASE - 0.5)
    assert b.acquire() is False  # not expired yet
    clock.advance(1.0)
    assert b.acquire() is True
    assert c.acquire() is False  # b's fresh lease, not a's expired one
    assert a.acquire() is False  # the old holder cannot renew a lease it lost
    row = lease_row(store)
    assert row["holder"] == "b"
    assert row["acquired_at"] == clock.now
    assert row["transitions"] == 1


def test_release_hands_over_at_once(store: StateStore) -> None:
    clock = Clock()
    a, b = electors(store, clock, "a", "b")
    assert a.acquire() is True
    assert b.acquire() is False
    a.release()
    row = lease_row(store)
    assert row["holder"] is None
    assert row["expires_at"] == clock.now
    assert b.acquire() is True  # no clock movement needed
    assert lease_row(store)["transitions"] == 1
    assert a.acquire() is False


def test_release_by_a_follower_changes_nothing(store: StateStore) -> None:
    clock = Clock()
    a, b = electors(store, clock, "a", "b")
    assert a.acquire() is True
    before = lease_row(store)
    b.release()
    assert lease_row(store) == before
    assert b.acquire() is False


def test_transitions_count_every_change_of_holder(store: StateStore) -> None:
    clock = Clock()
    a, b, c = electors(store, clock, "a", "b", "c")
    assert a.acquire() is True
    a.release()
    assert b.acquire() is True  # 1
    clock.advance(LEASE + 1)
    assert c.acquire() is True  # 2
    c.release()
    assert c.acquire() is True  # 3: from nobody back to c
    assert b.acquire() is False
    assert lease_row(store)["transitions"] == 3


def test_two_leases_by_name_are_independent(store: StateStore) -> None:
    clock = Clock()
    a = DatabaseLease(store.engine, "one", "a", LEASE, clock=clock)
    b = DatabaseLease(store.engine, "two", "b", LEASE, clock=clock)
    assert a.acquire() is True
    assert b.acquire() is True
    assert lease_row(store, "one")["holder"] == "a"
    assert lease_row(store, "two")["holder"] == "b"


def test_a_failing_store_is_not_leader_and_is_logged_once_per_change(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    unmigrated = StateStore(url, migrate=False)  # no leases table yet: every acquire fails
    a = DatabaseLease(unmigrated.engine, "leader", "a", LEASE)
    with capture_logs() as logs:
        assert [a.acquire() for _ in range(3)] == [False, False, False]
        StateStore(url).close()  # the schema arrives
        assert [a.acquire() for _ in range(2)] == [True, True]
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1
    assert "no such table: leases" in warnings[0]["error"]
    assert "SELECT" not in warnings[0]["error"] and "UPDATE" not in warnings[0]["error"]
    assert [entry["event"] for entry in logs if entry["log_level"] == "info"] == [
        "leader election backend reachable again"]
    unmigrated.close()


# -- Leadership ---------------------------------------------------------------------------


def test_leadership_stops_acting_when_renewals_stall(store: StateStore) -> None:
    clock, monotonic = Clock(), Clock(100.0)
    a, = electors(store, clock, "a")
    leadership = Leadership(a, LEASE, margin=2.0, monotonic=monotonic)
    changes: list[bool] = []
    leadership.on_change(changes.append)
    assert changes == [False]
    assert leadership.tick() is True
    assert changes == [False, True]
    monotonic.advance(LEASE - 2.0 - 0.01)
    assert leadership.is_leader() is True
    monotonic.advance(0.02)  # no renew for lease_duration - margin: stop before anyone can take over
    assert leadership.is_leader() is False
    assert changes == [False, True, False]
    assert leadership.tick() is True  # the lease itself was still ours
    assert changes == [False, True, False, True]


def test_leadership_stops_at_once_when_a_renew_is_refused(store: StateStore) -> None:
    clock, monotonic = Clock(), Clock()
    a, b = electors(store, clock, "a", "b")
    leadership = Leadership(a, LEASE, monotonic=monotonic)
    assert leadership.tick() is True
    clock.advance(LEASE + 1)  # the database says the lease expired (a stalled process, say)
    assert b.acquire() is True
    assert leadership.tick() is False
    assert leadership.is_leader() is False


def test_leadership_counts_validity_from_the_start_of_the_acquire(store: StateStore) -> None:
    clock, monotonic = Clock(), Clock()
    a, = electors(store, clock, "a")

    class Slow:
        identity = "a"

        def acquire(self) -> bool:
            monotonic.advance(5.0)  # a renew call that took 5 s
            return a.acquire()

        def release(self) -> None:
            a.release()

    leadership = Leadership(Slow(), LEASE, margin=2.0, monotonic=monotonic)
    assert leadership.tick() is True
    monotonic.advance(LEASE - 2.0 - 5.0 + 0.01)
    assert leadership.is_leader() is False


def test_leadership_margin_must_leave_room_for_a_renew(store: StateStore) -> None:
    a, = electors(store, Clock(), "a")
    with pytest.raises(ValueError, match="margin"):
        Leadership(a, LEASE, margin=LEASE * 2 / 3)
    with pytest.raises(ValueError, match="margin"):
        Leadership(a, LEASE, margin=-1)


def test_two_replicas_in_threads_hand_over_on_stop(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    stores = [StateStore(url), StateStore(url)]
    lease = 1.5
    first = Leadership(DatabaseLease(stores[0].engine, "leader", "first", lease), lease)
    second = Leadership(DatabaseLease(stores[1].engine, "leader", "second", lease), lease)
    seen: dict[str, list[bool]] = {"first": [], "second": []}
    lock = threading.Lock()

    def recorder(name: str):  # type: ignore[no-untyped-def]
        def record(leader: bool) -> None:
            with lock:
                seen[name].append(leader)
        return record

    first.on_change(recorder("first"))
    second.on_change(recorder("second"))
    try:
        first.start()
        assert first.is_leader() is True  # start() makes one attempt before returning
        second.start()
        assert second.is_leader() is False
        first.stop()
        assert first.is_leader() is False
        wait_until(second.is_leader, timeout=lease, what="the second replica to take over", interval=0.05)
    finally:
        first.stop()
        second.stop()
        for state in stores:
            state.close()
    assert seen["first"] == [False, True, False]
    assert seen["second"] == [False, True, False]


def test_always_leader_leads() -> None:
    always = AlwaysLeader("solo")
    changes: list[bool] = []
    always.on_change(changes.append)
    always.start()
    assert always.is_leader() is True
    always.stop()
    assert changes == [True]


def test_identity_names_the_pod_the_process_and_a_random_part() -> None:
    import os

    first = identity_for({"POD_NAME": "reconciler-7d9f-abcde", "HOSTNAME": "ignored"})
    second = identity_for({"POD_NAME": "reconciler-7d9f-abcde"})
    assert first.startswith(f"reconciler-7d9f-abcde-{os.getpid()}-")
    assert first != second
    assert identity_for({"HOSTNAME": "node-3"}).startswith(f"node-3-{os.getpid()}-")
    assert len(identity_for({"POD_NAME": "x" * 400})) <= 255
