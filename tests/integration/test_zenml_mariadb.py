"""ZenmlSqlRegistry on MySQL: a real MariaDB (Debian's mariadb-server) whose schema ZenML 0.98
created with its own migrations, populated from the scenario by ZenML itself."""

from __future__ import annotations

from collections.abc import Iterator

import pymysql
import pytest
from sqlalchemy import event

from providers.zenml_sql import ZenmlSqlRegistry
from reconciler.config import RegistryConfig
from reconciler.model import RegistryError, RegistrySnapshot
from tests.support.mariadb import MariaDB, mariadb_server  # noqa: F401  (session fixture)
from tests.support.zenml import populate
from providers.emulators import scenario
from tests.zenml_stores.stores import LATEST, comparable, manifest, store_file

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def zenml_on_mariadb(mariadb_server: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> MariaDB:  # noqa: F811
    # ZenML connects as the database owner and migrates the empty database on first connect.
    populate(mariadb_server.url(mariadb_server.owner, mariadb_server.owner_password),
             tmp_path_factory.mktemp("zenml-mariadb"))
    return mariadb_server


@pytest.fixture()
def reader(zenml_on_mariadb: MariaDB) -> Iterator[ZenmlSqlRegistry]:
    db = zenml_on_mariadb
    # The reconciler's user may only SELECT.
    registry = ZenmlSqlRegistry(RegistryConfig(url=db.url(db.reader, db.reader_password), timeout=10))
    yield registry
    registry.close()


def sqlite_snapshot() -> RegistrySnapshot:
    registry = ZenmlSqlRegistry(RegistryConfig(url=f"sqlite:///{store_file(LATEST)}"))
    try:
        return registry.read()
    finally:
        registry.close()


def test_zenml_migrated_mariadb_reads_like_the_sqlite_file_of_the_same_version(reader: ZenmlSqlRegistry) -> None:
    assert manifest(LATEST)["zenml_version"] == LATEST
    snapshot = reader.read()
    assert len(snapshot.schedules) == len(scenario.SCHEDULES)
    assert comparable(snapshot) == comparable(sqlite_snapshot())


def test_mysql_specifics(reader: ZenmlSqlRegistry) -> None:
    snapshot = reader.read()
    by_name = {s.original_name: s for s in snapshot.schedules}
    assert by_name["k8s_removed"].archived and by_name["k8s_removed"].metadata == {
        "cron_job_name": "zenml-4e5f6a7b-k8s-export"
    }
    assert by_name["doomed_daily"].orchestrator_id is None
    assert by_name["etl_daily"].created.tzinfo is not None
    assert type(by_name["etl_daily"].active) is bool
    assert {c.name for c in snapshot.components} >= {"vertex-orchestrator", "acme-orchestrator"}
    reader.check()


def test_password_from_env(zenml_on_mariadb: MariaDB) -> None:
    db = zenml_on_mariadb
    config = RegistryConfig(url=db.url(db.reader, None), password_env="ZENML_TEST_DB_PASSWORD")
    registry = ZenmlSqlRegistry(config, {"ZENML_TEST_DB_PASSWORD": db.reader_password})
    assert len(registry.read().schedules) == len(scenario.SCHEDULES)
    registry.close()


def test_wrong_password_is_one_clear_line_without_the_password(zenml_on_mariadb: MariaDB) -> None:
    db = zenml_on_mariadb
    wrong = "Wr0ng-" + db.reader_password[:8]
    registry = ZenmlSqlRegistry(RegistryConfig(url=db.url(db.reader, wrong)))
    with pytest.raises(RegistryError) as err:
        registry.read()
    message = str(err.value)
    assert message.startswith(f"ZenML store mysql+pymysql://{db.reader}:***@127.0.0.1:{db.port}/zenml: ")
    assert "Access denied" in message
    assert wrong not in message and db.reader_password not in message
    assert "\n" not in message
    with pytest.raises(RegistryError, match="Access denied"):
        registry.check()


def test_a_database_without_zenml(mariadb_server: MariaDB) -> None:  # noqa: F811
    db = mariadb_server
    with db.root() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS not_zenml")
        cur.execute("GRANT SELECT ON not_zenml.* TO %s@'127.0.0.1'", (db.reader,))
    url = f"mysql://{db.reader}:{db.reader_password}@127.0.0.1:{db.port}/not_zenml"
    with pytest.raises(RegistryError, match=r"not a ZenML store \(no schedule, stack_component, pipeline, workspace"):
        ZenmlSqlRegistry(RegistryConfig(url=url)).read()


def test_a_commit_during_a_read_is_not_seen(zenml_on_mariadb: MariaDB, reader: ZenmlSqlRegistry) -> None:
    """One consistent snapshot: ZenML's commit in the middle of a read shows up only in the next read."""
    db = zenml_on_mariadb
    done: list[bool] = []

    def commit_during_read(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if done or "FROM schedule" not in statement:
            return
        writer = pymysql.connect(host=db.host, port=db.port, user=db.owner, password=db.owner_password,
                                 database=db.database, autocommit=True)
        with writer, writer.cursor() as cur:
            cur.execute("UPDATE schedule SET cron_expression = '1 9 * * *' WHERE name = 'etl_daily'")
            cur.execute("UPDATE stack_component SET flavor = 'changed' WHERE name = 'airflow-orchestrator'")
        done.append(True)

    event.listen(reader._get_engine(), "before_cursor_execute", commit_during_read)
    try:
        during = reader.read()
        after = reader.read()
    finally:
        writer = pymysql.connect(host=db.host, port=db.port, user=db.owner, password=db.owner_password,
                                 database=db.database, autocommit=True)
        with writer, writer.cursor() as cur:
            cur.execute("UPDATE schedule SET cron_expression = '0 9 * * *' WHERE name = 'etl_daily'")
            cur.execute("UPDATE stack_component SET flavor = 'airflow' WHERE name = 'airflow-orchestrator'")
    assert done == [True]
    # The component query ran before the commit, the schedule query after it: both from the snapshot.
    assert {s.name: s.cron_expression for s in during.schedules}["etl_daily"] == "0 9 * * *"
    assert {c.name: c.flavor for c in during.components}["airflow-orchestrator"] == "airflow"
    assert {s.name: s.cron_expression for s in after.schedules}["etl_daily"] == "1 9 * * *"
    assert {c.name: c.flavor for c in after.components}["airflow-orchestrator"] == "changed"


def test_a_lost_connection_is_an_error_not_a_partial_snapshot(zenml_on_mariadb: MariaDB,
                                                               reader: ZenmlSqlRegistry) -> None:
    db = zenml_on_mariadb
    killed: list[int] = []

    def kill_mid_read(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if killed or "FROM schedule" not in statement:
            return
        thread_id = cursor.connection.thread_id()
        with db.root() as root, root.cursor() as cur:
            cur.execute(f"KILL CONNECTION {int(thread_id)}")
        killed.append(thread_id)

    event.listen(reader._get_engine(), "before_cursor_execute", kill_mid_read)
    with pytest.raises(RegistryError, match=r"Lost connection|server has gone away|Connection was killed") as err:
        reader.read()
    assert killed
    assert db.reader_password not in str(err.value)
    # The next cycle connects afresh.
    assert len(reader.read().schedules) == len(scenario.SCHEDULES)


def test_the_reader_never_writes(zenml_on_mariadb: MariaDB, reader: ZenmlSqlRegistry) -> None:
    """Even as the database owner, the read transaction is READ ONLY on the server."""
    db = zenml_on_mariadb
    owner = ZenmlSqlRegistry(RegistryConfig(url=db.url(db.owner, db.owner_password)))
    refused: list[str] = []

    def try_to_write(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if refused or "FROM schedule" not in statement:
            return
        try:
            cursor.execute("UPDATE schedule SET active = 0 WHERE name = 'etl_daily'")
        except pymysql.err.MySQLError as exc:
            refused.append(str(exc.args[1]))

    event.listen(owner._get_engine(), "before_cursor_execute", try_to_write)
    snapshot = owner.read()
    owner.close()
    assert refused and "READ ONLY" in refused[0]
    assert {s.name: s.active for s in snapshot.schedules}["etl_daily"] is True
    assert {s.name: s.active for s in reader.read().schedules}["etl_daily"] is True

