"""Leader election: which replica may act. Followers still compute and export drift.

An `Elector` is one lease backend: `acquire()` takes or renews the lease and
says whether this replica holds it afterwards; `release()` gives it up so a
follower takes over at once. `DatabaseLease` keeps the lease in the state
store's `leases` table (SQLite or PostgreSQL); `providers.lease.KubernetesLease`
keeps it in a coordination.k8s.io/v1 Lease.

`Leadership` renews in a background thread every lease_duration/3 and answers
`is_leader()` from the monotonic clock: True only while the last successful
acquire started less than `lease_duration - margin` ago. A replica whose renew
loop stalls (a hung connection, a paused process) therefore stops acting before
its lease can expire and another replica can take over. The margin also absorbs
clock skew between replicas where the backend compares wall clocks (the
Kubernetes Lease); the database lease on PostgreSQL uses the database's clock.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from reconciler.state import leases

log = structlog.get_logger("reconciler")


class Elector(Protocol):
    identity: str

    def acquire(self) -> bool:
        """Acquire or renew; True when this replica holds the lease after the call. Never raises."""
        ...

    def release(self) -> None:
        """Give the lease up if this replica holds it (best effort). Never raises."""
        ...


def identity_for(environ: Mapping[str, str]) -> str:
    """`<pod or host>-<pid>-<6 hex>`: unique per process, readable in `kubectl get lease` and logs.

    The random part keeps a restarted process with a recycled pid (pid 1 in a
    container) from renewing the lease its predecessor held.
    """
    host = environ.get("POD_NAME") or environ.get("HOSTNAME") or socket.gethostname() or "replica"
    return f"{host[:200]}-{os.getpid()}-{secrets.token_hex(3)}"


class ErrorLog:
    """Logs an elector's failures once per change of state, not once per renew attempt."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._last: str | None = None

    def failed(self, message: str) -> None:
        if message != self._last:
            log.warning("leader election backend failed", lease=self.what, error=message)
        self._last = message

    def ok(self) -> None:
        if self._last is not None:
            log.info("leader election backend reachable again", lease=self.what)
        self._last = None


class DatabaseLease:
    """A lease row in the state store's `leases` table.

    Taking the lease is one conditional UPDATE (`holder = me OR expired`) whose
    row count says who won; the row is inserted when missing, and a replica that
    loses that insert race is simply not the leader. Time comes from PostgreSQL's
    `clock_timestamp()` so the replicas' own clocks never matter; on SQLite, which
    only serves replicas on one host, from `time.time()` (or `clock`, for tests).
    """

    def __init__(self, engine: Engine, name: str, identity: str, lease_duration: float,
                 clock: Callable[[], float] | None = None) -> None:
        if lease_duration <= 0:
            raise ValueError("lease_duration must be positive")
        self.engine = engine
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self._clock = clock
        self._errors = ErrorLog(f"database lease {name}")
        # The database time of the last successful acquire and the expiry it wrote.
        self.last_term: tuple[float, float] | None = None

    def acquire(self) -> bool:
        try:
            with self.engine.begin() as conn:
                self._bound_waits(conn)
                now = self._now(conn)
                held = self._take(conn, now) or self._insert(conn, now)
        except Exception as exc:  # noqa: BLE001 - a failed renew means "not leader", never a crash
            self._errors.failed(_one_line(exc))
            self.last_term = None
            return False
        self._errors.ok()
        self.last_term = (now, now + self.lease_duration) if held else None
        return held

    def release(self) -> None:
        # Conditional on holder = me, so it is safe to run even when unsure whether we hold it
        # (a renew whose commit succeeded but whose answer was lost).
        self.last_term = None
        try:
            with self.engine.begin() as conn:
                self._bound_waits(conn)
                now = self._now(conn)
                conn.execute(leases.update()
                             .where(leases.c.name == self.name, leases.c.holder == self.identity)
                             .values(holder=None, expires_at=now))
        except Exception as exc:  # noqa: BLE001 - the lease then simply expires
            self._errors.failed(f"release: {_one_line(exc)}")

    def holder(self) -> str | None:
        """The current holder, expired or not (for tests and logs)."""
        with self.engine.begin() as conn:
            return conn.execute(sa.select(leases.c.holder).where(leases.c.name == self.name)).scalar_one_or_none()

    def _take(self, conn: Connection, now: float) -> bool:
        mine = leases.c.holder == self.identity
        result = conn.execute(
            leases.update()
            .where(leases.c.name == self.name,
                   sa.or_(mine, leases.c.holder.is_(None), leases.c.expires_at < now))
            .values(holder=self.identity,
                    acquired_at=sa.case((mine, leases.c.acquired_at), else_=now),
                    renewed_at=now,
                    expires_at=now + self.lease_duration,
                    transitions=sa.case((mine, leases.c.transitions), else_=leases.c.transitions + 1)))
        return result.rowcount == 1

    def _insert(self, conn: Connection, now: float) -> bool:
        """The first replica ever creates the row; a concurrent creator that loses gets no row back.

        RETURNING, not rowcount: SQLAlchemy defines rowcount only for UPDATE and DELETE (it is -1
        for this INSERT on psycopg 3).
        """
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        result = conn.execute(
            insert(leases)
            .values(name=self.name, holder=self.identity, acquired_at=now, renewed_at=now,
                    expires_at=now + self.lease_duration, transitions=0)
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(leases.c.name))
        return result.first() is not None

    def _now(self, conn: Connection) -> float:
        if self._clock is not None:
            return self._clock()
        if conn.dialect.name == "postgresql":
            # clock_timestamp(), not now(): now() is the transaction's start, which may have waited on a lock.
            return float(conn.execute(sa.text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())
        return time.time()

    def _bound_waits(self, conn: Connection) -> None:
        # A renew stuck on a lock or a slow server is worth nothing after the renew period.
        if conn.dialect.name == "postgresql":
            budget_ms = max(1000, int(self.lease_duration * 1000 / 3))
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {budget_ms}")
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {budget_ms}")


class AlwaysLeader:
    """leader_election.enabled = false: the only replica always leads."""

    def __init__(self, identity: str) -> None:
        self.identity = identity

    def is_leader(self) -> bool:
        return True

    def on_change(self, callback: Callable[[bool], None]) -> None:
        callback(True)

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None


class Leadership:
    """Keeps an Elector's lease renewed in a thread and says whether this replica may act now."""

    def __init__(self, elector: Elector, lease_duration: float, margin: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if lease_duration <= 0:
            raise ValueError("lease_duration must be positive")
        self.elector = elector
        self.identity = elector.identity
        self.lease_duration = lease_duration
        self.retry_period = lease_duration / 3
        # Room for a slow renew call, and for clock skew where the backend compares wall clocks.
        self.margin = lease_duration / 4 if margin is None else margin
        if not 0 <= self.margin < lease_duration - self.retry_period:
            raise ValueError("margin must leave room for at least one renew within the lease duration")
        self._monotonic = monotonic
        self._valid_since: float | None = None  # start of the last successful acquire
        self._reported: bool | None = None
        self._callbacks: list[Callable[[bool], None]] = []
        # One reentrant lock for the state and its reports, so callbacks see changes in order.
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def on_change(self, callback: Callable[[bool], None]) -> None:
        """Call `callback(is_leader)` on every change, and now with the current state. Keep it quick."""
        with self._lock:
            self._callbacks.append(callback)
            if self._reported is None:
                self.is_leader()  # the first report reaches every callback, this one included
            else:
                callback(self._reported)

    def is_leader(self) -> bool:
        """True while the last successful acquire started less than lease_duration - margin ago."""
        with self._lock:
            valid_since = self._valid_since
            leader = valid_since is not None and self._monotonic() - valid_since < self.lease_duration - self.margin
            self._report(leader)
            return leader

    def tick(self) -> bool:
        """One acquire-or-renew; the renew thread calls this every retry period."""
        started = self._monotonic()
        held = self.elector.acquire()
        with self._lock:
            # A failed renew stops acting at once, even with time left on the lease: the
            # next successful renew resumes, and an action is worth a retry period's delay.
            self._valid_since = started if held else None
        return self.is_leader()

    def start(self) -> None:
        """One attempt now (so the first cycle knows), then renewals in a daemon thread."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self.tick()
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing, stop acting, then release the lease so a follower takes over at once."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            self._valid_since = None
            self._report(False)
        self.elector.release()

    def _run(self) -> None:
        while not self._stopping.wait(self.retry_period):
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - an elector must not raise; if one does, keep renewing
                log.error("leader election renew failed", error=_one_line(exc))

    def _report(self, leader: bool) -> None:
        """Called with the lock held."""
        if leader == self._reported:
            return
        self._reported = leader
        log.info("leadership changed", identity=self.identity, leader=leader)
        for callback in self._callbacks:
            try:
                callback(leader)
            except Exception as exc:  # noqa: BLE001 - a broken hook must not stop the renew loop
                log.error("leadership callback failed", error=_one_line(exc))


def _one_line(exc: BaseException) -> str:
    # SQLAlchemy's own text appends the statement and its parameters: the driver's message is enough.
    cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    text = " ".join(str(cause).split())
    return f"{type(cause).__name__}: {text}"[:300] if text else type(cause).__name__
