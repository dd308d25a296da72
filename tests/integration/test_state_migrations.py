"""The state store migrated by several replicas starting at the same moment, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from reconciler.state import StateStore
from tests.support.postgres import Postgres, postgres_server  # noqa: F401  (session fixture)
from tests.support.procs import REPO, Server

pytestmark = pytest.mark.integration

REPLICAS = 3
ROUNDS = 3
TABLES = {"alembic_version", "inventory", "evidence", "cycles", "audit", "leases", "marks"}
_databases = itertools.count()

# Imports first, then wait for the shared start time, so that the migrations really race.
REPLICA = """
import sys, time
from reconciler.state import StateStore
url, start_at = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start_at - time.time()))
store = StateStore(url)
print("revision", store.revision(), flush=True)
store.close()
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    """A factory of empty state stores of one dialect."""
    if request.param == "sqlite":
        return lambda: f"sqlite:///{tmp_path / f'state-{next(_databases)}.db'}"
    server: Postgres = request.getfixturevalue("postgres_server")
    return lambda: server.create_database(f"migrate_{os.getpid()}_{next(_databases)}")


def test_replicas_starting_together_all_migrate_once(fresh_url: object, tmp_path: Path) -> None:
    assert callable(fresh_url)
    head = StateStore.head()
    assert head is not None
    for round_ in range(ROUNDS):
        url = fresh_url()
        start_at = time.time() + 3.0
        replicas = [Server(f"replica-{round_}-{i}", [sys.executable, "-c", REPLICA, url, str(start_at)],
                           tmp_path / f"replica-{round_}-{i}.log", cwd=REPO) for i in range(REPLICAS)]
        try:
            for replica in replicas:
                replica.process.wait(120)
        finally:
            for replica in replicas:
                replica.stop()
        for replica in replicas:
            output = replica.log.read_text()
            assert replica.process.returncode == 0, output
            assert output.splitlines() == [f"revision {head}"]
        store = StateStore(url, migrate=False)
        try:
            assert store.revision() == head
            assert TABLES <= set(sa.inspect(store.engine).get_table_names())
            with store.engine.connect() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        finally:
            store.close()
