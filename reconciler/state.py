"""The state store: what the daemon remembers between cycles, and the audit log.

SQLAlchemy 2 Core on SQLite (default, one replica) or PostgreSQL (HA). Alembic
migrations run at start and are safe from two replicas at once: PostgreSQL
serializes them with an advisory lock, SQLite with a lock file beside the
database. Every SQLite transaction is `BEGIN IMMEDIATE`, so DDL is
transactional (a migration killed half way leaves nothing behind) and the
conditional updates of the lease and the audit log never race.

Times are stored as float seconds since the epoch (UTC), the same on both dialects.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from reconciler import failpoints
from reconciler.policy import Evidence

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_MIGRATION_LOCK = 0x5C4E_D01E  # any constant: the advisory lock that serializes migrations

metadata = sa.MetaData()
inventory = sa.Table(
    "inventory", metadata,
    sa.Column("target", sa.String(128), primary_key=True),
    sa.Column("native_id", sa.String(1024), primary_key=True),
    sa.Column("schedule_id", sa.String(32), nullable=False),
    sa.Column("first_seen", sa.Float, nullable=False),
)
evidence = sa.Table(
    "evidence", metadata,
    sa.Column("target", sa.String(128), primary_key=True),
    sa.Column("native_id", sa.String(1024), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("live_name", sa.String(1024), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("first_seen", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("cycles_seen", sa.Integer, nullable=False),
    sa.Column("last_cycle", sa.Integer, nullable=False),
)
cycles = sa.Table(
    "cycles", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("replica", sa.String(255), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("result", sa.String(16)),
    sa.Column("leader", sa.Boolean, nullable=False),
    sa.Column("registry_schedules", sa.Integer),
)
audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("cycle_id", sa.Integer),
    sa.Column("replica", sa.String(255), nullable=False),
    sa.Column("target", sa.String(128), nullable=False),
    sa.Column("flavor", sa.String(32), nullable=False),
    sa.Column("native_id", sa.String(1024), nullable=False),
    sa.Column("live_name", sa.String(1024), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("rule", sa.Text, nullable=False),
    sa.Column("approved", sa.Boolean, nullable=False),
    sa.Column("approve_only", sa.Text),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("snapshot", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(32)),
    sa.Column("error", sa.Text),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("restores", sa.Integer),
    sa.Column("restored_by", sa.Integer),
    sa.Column("requested_at", sa.Float),
)
leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("holder", sa.String(255)),
    sa.Column("acquired_at", sa.Float),
    sa.Column("renewed_at", sa.Float),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("transitions", sa.Integer, nullable=False),
)
marks = sa.Table(
    "marks", metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

LAST_GOOD_REGISTRY = "registry.last_good_schedules"


class StateError(Exception):
    """The state store cannot be opened or migrated; the message names the store, never a password."""


@dataclass(frozen=True)
class AuditRecord:
    id: int
    cycle_id: int | None
    replica: str
    target: str
    flavor: str
    native_id: str
    live_name: str
    kind: str
    action: str  # delete | pause | resume | recreate
    dry_run: bool
    rule: str  # why the action was allowed (or, for a dry run, the stage's reason)
    approved: bool  # cleanup.approve when the record was written
    approve_only: list[str] | None
    fingerprint: str
    snapshot: dict[str, Any]
    status: str  # pending | completed
    outcome: str | None  # dry_run | succeeded | failed | already_gone | skipped_changed
    error: str | None
    started_at: float
    finished_at: float | None
    restores: int | None  # the record this one undid
    restored_by: int | None  # the record that undid this one
    requested_at: float | None = None  # set just before the request went out; None: never sent

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL has nothing to hide we can find
        return "<unparsable state url>"


class StateStore:
    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        try:
            self.engine = _engine(url)
            if migrate:
                self.migrate()
        except StateError:
            raise
        except Exception as exc:  # noqa: BLE001 - one line naming the store, never its password
            raise StateError(f"state store {safe_url(url)}: {' '.join(str(exc).split())[:300]}") from None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # -- migrations --------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to head; a no-op when another replica already did."""
        with self._migration_lock(), self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
            alembic_config = AlembicConfig()
            alembic_config.set_main_option("script_location", str(MIGRATIONS))
            alembic_config.attributes["connection"] = conn
            if failpoints.active("migrate.statement"):  # crash tests only: a kill inside a revision
                sa.event.listen(conn, "after_cursor_execute", _migration_statement_done)
            command.upgrade(alembic_config, "head")

    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @staticmethod
    def head() -> str | None:
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        return ScriptDirectory.from_config(config).get_current_head()

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        path = _sqlite_path(self.engine)
        if path is None:
            yield
            return
        with open(f"{path}.migrate.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- inventory: bindings seen before (identity rule 3, ownership evidence) -----------

    def inventory(self, target: str) -> dict[str, str]:
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(inventory.c.native_id, inventory.c.schedule_id)
                                .where(inventory.c.target == target))
            return {native_id: schedule_id for native_id, schedule_id in rows}

    def update_inventory(self, target: str, before: Mapping[str, str], bindings: Mapping[str, str],
                         live_ids: set[str], now: float) -> None:
        """Write only what changed since `before`: new or rebound pairs, and live schedules gone.

        Called only after a complete listing, so a vanished id really is gone.
        """
        changed = [{"target": target, "native_id": n, "schedule_id": s, "first_seen": now}
                   for n, s in bindings.items() if before.get(n) != s]
        gone = [n for n in before if n not in live_ids]
        if not changed and not gone:
            return
        with self.engine.begin() as conn:
            stale = [n for n in gone] + [row["native_id"] for row in changed if row["native_id"] in before]
            for chunk in _chunks(stale):
                conn.execute(inventory.delete().where(inventory.c.target == target,
                                                      inventory.c.native_id.in_(chunk)))
            if changed:
                conn.execute(inventory.insert(), changed)

    # -- dry-run evidence --------------------------------------------------------------

    def evidence(self, target: str) -> dict[str, Evidence]:
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(evidence).where(evidence.c.target == target)).mappings()
            return {row["native_id"]: Evidence(row["fingerprint"], row["live_name"], row["kind"], row["action"],
                                               row["first_seen"], row["last_seen"], row["cycles_seen"])
                    for row in rows}

    def replace_evidence(self, target: str, current: Mapping[str, Evidence], cycle_id: int) -> None:
        """The target's evidence after a complete cycle: candidates that left are forgotten."""
        with self.engine.begin() as conn:
            conn.execute(evidence.delete().where(evidence.c.target == target))
            if current:
                conn.execute(evidence.insert(), [
                    {"target": target, "native_id": native_id, "fingerprint": e.fingerprint,
                     "live_name": e.live_name, "kind": e.kind, "action": e.action, "first_seen": e.first_seen,
                     "last_seen": e.last_seen, "cycles_seen": e.cycles_seen, "last_cycle": cycle_id}
                    for native_id, e in current.items()])

    # -- cycles and guard marks --------------------------------------------------------

    def begin_cycle(self, replica: str, leader: bool, now: float) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(cycles.insert().values(replica=replica, started_at=now, leader=leader))
            return int(result.inserted_primary_key[0])

    def finish_cycle(self, cycle_id: int, result: str, registry_schedules: int | None, now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(cycles.update().where(cycles.c.id == cycle_id).values(
                finished_at=now, result=result, registry_schedules=registry_schedules))

    def mark(self, key: str) -> str | None:
        with self.engine.begin() as conn:
            return conn.execute(sa.select(marks.c.value).where(marks.c.key == key)).scalar_one_or_none()

    def set_mark(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            updated = conn.execute(marks.update().where(marks.c.key == key).values(value=value)).rowcount
            if not updated:
                conn.execute(marks.insert().values(key=key, value=value))

    def delete_mark(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(marks.delete().where(marks.c.key == key))

    # -- the audit log -----------------------------------------------------------------

    def begin_action(self, *, cycle_id: int | None, replica: str, target: str, flavor: str, native_id: str,
                     live_name: str, kind: str, action: str, dry_run: bool, rule: str, approved: bool,
                     approve_only: list[str] | None, fingerprint: str, snapshot: Mapping[str, Any], now: float,
                     restores: int | None = None) -> int:
        """Write the record before acting; it stays `pending` until `complete_action`."""
        values = dict(cycle_id=cycle_id, replica=replica, target=target, flavor=flavor, native_id=native_id,
                      live_name=live_name, kind=kind, action=action, dry_run=dry_run, rule=rule,
                      approved=approved, approve_only=None if approve_only is None else json.dumps(approve_only),
                      fingerprint=fingerprint, snapshot=json.dumps(snapshot, sort_keys=True, default=str),
                      status="pending", started_at=now, restores=restores)
        with self.engine.begin() as conn:
            return int(conn.execute(audit.insert().values(**values)).inserted_primary_key[0])

    def complete_action(self, record_id: int, outcome: str, error: str | None, now: float,
                        native_id: str | None = None) -> bool:
        """Complete a pending record once; False when it was already completed (never twice)."""
        values: dict[str, Any] = dict(status="completed", outcome=outcome, error=error, finished_at=now)
        if native_id is not None:
            values["native_id"] = native_id
        with self.engine.begin() as conn:
            done = conn.execute(audit.update().where(audit.c.id == record_id, audit.c.status == "pending")
                                .values(**values)).rowcount == 1
            if done and outcome == "succeeded":
                restores = conn.execute(sa.select(audit.c.restores).where(audit.c.id == record_id)).scalar_one()
                if restores is not None:
                    conn.execute(audit.update().where(audit.c.id == restores).values(restored_by=record_id))
            return done

    def mark_requested(self, record_id: int, now: float) -> None:
        """The request is about to go out: from here a crash leaves its effect unknown."""
        with self.engine.begin() as conn:
            conn.execute(audit.update().where(audit.c.id == record_id).values(requested_at=now))

    def record_dry_run(self, **fields: Any) -> int:
        record_id = self.begin_action(dry_run=True, **fields)
        self.complete_action(record_id, "dry_run", None, fields["now"])
        return record_id

    def pending_actions(self) -> list[AuditRecord]:
        return self._records(sa.select(audit).where(audit.c.status == "pending").order_by(audit.c.id))

    def record(self, record_id: int) -> AuditRecord | None:
        found = self._records(sa.select(audit).where(audit.c.id == record_id))
        return found[0] if found else None

    def history(self, *, target: str | None = None, action: str | None = None, outcome: str | None = None,
                since: float | None = None, include_dry_run: bool = False, limit: int = 100) -> list[AuditRecord]:
        query = sa.select(audit)
        if target:
            query = query.where(audit.c.target == target)
        if action:
            query = query.where(audit.c.action == action)
        if outcome:
            query = query.where(audit.c.outcome == outcome)
        if since is not None:
            query = query.where(audit.c.started_at >= since)
        if not include_dry_run:
            query = query.where(audit.c.dry_run.is_(False))
        return self._records(query.order_by(audit.c.id.desc()).limit(limit))

    def restored(self, target: str) -> dict[str, int]:
        """Live schedules an operator restored: native id -> the restoring record. Never cleaned up again."""
        query = sa.select(audit.c.native_id, audit.c.id).where(
            audit.c.target == target, audit.c.restores.is_not(None), audit.c.outcome == "succeeded")
        with self.engine.begin() as conn:
            return {native_id: record_id for native_id, record_id in conn.execute(query)}

    def prune_dry_runs(self, before: float) -> int:
        with self.engine.begin() as conn:
            return conn.execute(audit.delete().where(audit.c.dry_run.is_(True), audit.c.started_at < before)).rowcount

    def _records(self, query: sa.Select[Any]) -> list[AuditRecord]:
        with self.engine.begin() as conn:
            rows = conn.execute(query).mappings().all()
        return [AuditRecord(
            id=row["id"], cycle_id=row["cycle_id"], replica=row["replica"], target=row["target"],
            flavor=row["flavor"], native_id=row["native_id"], live_name=row["live_name"], kind=row["kind"],
            action=row["action"], dry_run=bool(row["dry_run"]), rule=row["rule"], approved=bool(row["approved"]),
            approve_only=None if row["approve_only"] is None else json.loads(row["approve_only"]),
            fingerprint=row["fingerprint"], snapshot=json.loads(row["snapshot"]), status=row["status"],
            outcome=row["outcome"], error=row["error"], started_at=row["started_at"],
            finished_at=row["finished_at"], restores=row["restores"], restored_by=row["restored_by"],
            requested_at=row["requested_at"],
        ) for row in rows]

    def close(self) -> None:
        self.engine.dispose()


def _engine(url: str) -> Engine:
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return sa.create_engine(url, pool_pre_ping=True)


def _sqlite_connect(dbapi_connection: Any, record: Any) -> None:
    # pysqlite's own transaction handling skips BEGIN before DDL; take it over (SQLAlchemy docs,
    # "Serializable isolation / Savepoints / Transactional DDL").
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _migration_statement_done(*_: Any) -> None:
    failpoints.hit("migrate.statement")


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_path(engine: Engine) -> str | None:
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    return None if not database or database == ":memory:" else os.path.abspath(database)


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
