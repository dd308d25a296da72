"""SIGKILL inside a state store migration, at every statement and between revisions, on SQLite and PostgreSQL.

A process that opens the store (`StateStore(url)`, what `run` does first) is
killed by a failpoint (reconciler/failpoints.py) after the Nth SQL statement of
the migration (`migrate.statement@N`, N = 1, 2, ... until a run gets through),
or after an Alembic revision is applied (`migrate.after_revision@N`). After
every kill the store must be exactly as before the migration (it runs in one
transaction: a kill never leaves a half-migrated store), its rows intact; the
next start must bring it to head with every table usable. Two starting points:
an empty store (base -> 0001 -> 0002) and a store with audit records at 0001
(what an upgrade of a running deployment meets).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from reconciler import failpoints
from reconciler.leader import DatabaseLease
from reconciler.state import StateStore
from tests.support.postgres import Postgres, postgres_server  # noqa: F401 - the session fixture
from tests.crash.migrations import downgrade_to_0001
from tests.support.procs import REPO

pytestmark = pytest.mark.integration

TABLES = {"alembic_version", "inventory", "evidence", "cycles", "audit", "leases", "marks"}
OPEN = "import sys\nfrom reconciler.state import StateStore\nStateStore(sys.argv[1]).close()\n"
_databases = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """A factory of empty state stores of one dialect."""
    if request.param == "sqlite":
        return lambda: f"sqlite:///{tmp_path / f'state-{next(_databases)}.db'}"
    server: Postgres = request.getfixturevalue("postgres_server")
    return lambda: server.create_database(f"crash_migrate_{os.getpid()}_{next(_databases)}_{int(time.time())}")


def open_store(url: str, failpoint: str) -> int:
    """Open the store in a forked process with the failpoint armed; its return code (-9 when killed).

    A fork, not a new interpreter: the child is a real process that dies by a real SIGKILL
    with its transaction open, without paying a second or two of imports per kill.
    """
    pid = os.fork()
    if pid == 0:  # the child: open (migrate) and leave without running any of pytest's exit code
        code = 1
        try:
            failpoints.arm(failpoint)
            StateStore(url).close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def open_store_cli(url: str) -> int:
    """The same start in a new interpreter, the way `run` does it (once per test: it is slow)."""
    return subprocess.run([sys.executable, "-c", OPEN, url], cwd=REPO, capture_output=True,
                          timeout=120).returncode


def audit_rows(store: StateStore) -> list[tuple[int, str, str]]:
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text("SELECT id, native_id, status FROM audit ORDER BY id"))]


def with_records(url: str) -> list[tuple[int, str, str]]:
    """A store at head with three audit records (one still pending), then taken back to 0001."""
    store = StateStore(url)
    try:
        for i in range(3):
            record = store.begin_action(cycle_id=None, replica="r", target="vertex", flavor="vertex",
                                        native_id=f"projects/p/schedules/{i}", live_name=f"s{i}", kind="orphaned",
                                        action="delete", dry_run=False, rule="test", approved=True, approve_only=None,
                                        fingerprint="f", snapshot={}, now=time.time())
            if i < 2:
                store.complete_action(record, "succeeded", None, time.time())
        rows = audit_rows(store)
    finally:
        store.close()
    downgrade_to_0001(url)
    return rows


def assert_usable_at_head(url: str, rows: list[tuple[int, str, str]], cli: bool = False) -> None:
    """Migrated by a plain start; every table takes writes; the rows written before are all there."""
    assert (open_store_cli(url) if cli else open_store(url, "")) == 0
    store = StateStore(url, migrate=False)
    try:
        assert store.revision() == StateStore.head()
        assert TABLES <= set(sa.inspect(store.engine).get_table_names())
        assert audit_rows(store) == rows
        record = store.begin_action(cycle_id=None, replica="r", target="t", flavor="vertex", native_id="n",
                                    live_name="n", kind="orphaned", action="delete", dry_run=False, rule="test",
                                    approved=True, approve_only=None, fingerprint="f", snapshot={}, now=time.time())
        store.mark_requested(record, time.time())
        assert store.complete_action(record, "succeeded", None, time.time())
        assert store.record(record).requested_at is not None
        cycle = store.begin_cycle("r", True, time.time())
        store.finish_cycle(cycle, "ok", 1, time.time())
        store.set_mark("k", "v")
        store.update_inventory("t", {}, {"n": "s"}, {"n"}, time.time())
        assert DatabaseLease(store.engine, "crash", "me", 5.0).acquire()
    finally:
        store.close()


def kill_at_every_point(url_for: Callable[[], str], prepare: Callable[[str], list[tuple[int, str, str]]],
                        before: str | None, point: str) -> int:
    """Kill at `point`@1, @2, ... on a fresh copy each time until a start gets through; returns the kills."""
    kills = 0
    for nth in itertools.count(1):
        url = url_for()
        rows = prepare(url)
        code = open_store(url, f"{point}@{nth}")
        if code == 0:
            assert nth > 1, f"{point} never reached: no migration ran"
            # It got through: the failpoint came after the last statement; the store is at head.
            assert_usable_at_head(url, rows)
            return kills
        assert code == -signal.SIGKILL, (point, nth, code)
        kills += 1
        store = StateStore(url, migrate=False)
        try:
            # One transaction: killed anywhere inside, the store is as it was before.
            assert store.revision() == before, (point, nth)
            if before is None:
                assert set(sa.inspect(store.engine).get_table_names()) <= {"alembic_version"}, (point, nth)
            else:
                assert audit_rows(store) == rows, (point, nth)
        finally:
            store.close()
        assert_usable_at_head(url, rows, cli=nth == 1)
        assert nth < 100, "the failpoint keeps firing: a start never gets through"
    raise AssertionError("unreachable")


def test_a_kill_anywhere_in_the_migration_of_an_empty_store_leaves_it_empty(fresh_url: Callable[[], str]) -> None:
    kills = kill_at_every_point(fresh_url, lambda url: [], None, "migrate.statement")
    kills += kill_at_every_point(fresh_url, lambda url: [], None, "migrate.after_revision")
    assert kills >= 10  # every statement of 0001 and 0002, and both revisions
    print(f"mid-migration kills from an empty store: {kills}")


def test_a_kill_anywhere_in_an_upgrade_keeps_the_audit_log(fresh_url: Callable[[], str]) -> None:
    kills = kill_at_every_point(fresh_url, with_records, "0001", "migrate.statement")
    kills += kill_at_every_point(fresh_url, with_records, "0001", "migrate.after_revision")
    assert kills >= 2
    print(f"mid-migration kills during an upgrade 0001 -> head: {kills}")
