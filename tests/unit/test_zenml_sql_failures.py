"""ZenmlSqlRegistry: failures are RegistryError (never an empty snapshot), store defaulting, snapshots."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import event

from providers.zenml_sql import ZenmlSqlRegistry, default_store_path
from reconciler.config import RegistryConfig
from reconciler.model import RegistryError
from tests.support.procs import free_port
from tests.zenml_stores.stores import store_file


def registry_for(path: Path, **config: object) -> ZenmlSqlRegistry:
    return ZenmlSqlRegistry(RegistryConfig(url=f"sqlite:///{path}", **config))


@pytest.fixture()
def store_copy(tmp_path: Path) -> Path:
    path = tmp_path / "zenml.db"
    shutil.copy2(store_file(), path)
    return path


def test_locked_store_is_an_error_not_an_empty_snapshot(store_copy: Path) -> None:
    holder = sqlite3.connect(store_copy, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    registry = registry_for(store_copy, timeout=0.2)
    try:
        with pytest.raises(RegistryError, match=r"database is locked") as err:
            registry.read()
        assert str(store_copy) in str(err.value)
        with pytest.raises(RegistryError, match=r"database is locked"):
            registry.check()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(registry.read().schedules) == 25
    registry.close()


def test_missing_file_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "zenml.db"
    with pytest.raises(RegistryError, match=r"no such file") as err:
        registry_for(path).read()
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)
    assert not path.exists()


def test_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "zenml.db"
    path.write_bytes(b"this is not a database, just some text that is long enough " * 100)
    with pytest.raises(RegistryError, match=r"file is not a database"):
        registry_for(path).read()


def test_a_sqlite_file_without_zenml_tables(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schedule (id TEXT)")
    conn.close()
    with pytest.raises(RegistryError, match=r"not a ZenML store \(no stack_component, pipeline, workspace table\)"):
        registry_for(path).read()
    with pytest.raises(RegistryError, match=r"not a ZenML store"):
        registry_for(path).check()


def test_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "zenml.db"
    path.touch()
    with pytest.raises(RegistryError, match=r"not a ZenML store"):
        registry_for(path).read()
    assert path.stat().st_size == 0


def test_a_truncated_store(tmp_path: Path) -> None:
    data = store_file().read_bytes()
    path = tmp_path / "zenml.db"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RegistryError, match=r"malformed"):
        registry_for(path).read()


def test_a_read_is_one_snapshot_a_writer_cannot_commit_into(store_copy: Path) -> None:
    """While a read runs it holds SQLite's SHARED lock: ZenML's commit waits (here: fails)."""
    registry = registry_for(store_copy)
    outcomes: list[str] = []

    def write_during_read(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if outcomes or "FROM schedule" not in statement:
            return
        writer = sqlite3.connect(store_copy, timeout=0, isolation_level=None)
        try:
            writer.execute("BEGIN")
            writer.execute("UPDATE schedule SET active = 0 WHERE name = 'etl_daily'")
            writer.execute("COMMIT")
            outcomes.append("committed")
        except sqlite3.OperationalError as exc:
            outcomes.append(str(exc))
            writer.execute("ROLLBACK")
        finally:
            writer.close()

    event.listen(registry._get_engine(), "before_cursor_execute", write_during_read)
    snapshot = registry.read()
    registry.close()
    assert outcomes == ["database is locked"]
    assert {s.original_name: s.active for s in snapshot.schedules}["etl_daily"] is True


def test_default_store_follows_zenml_config_path(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path / "home"), "ZENML_CONFIG_PATH": str(tmp_path / "cfg")}
    expected = tmp_path / "cfg" / "local_stores" / "default_zen_store" / "zenml.db"
    assert default_store_path(environ) == expected
    expected.parent.mkdir(parents=True)
    shutil.copy2(store_file(), expected)
    registry = ZenmlSqlRegistry(RegistryConfig(), environ)
    assert registry.store == str(expected)
    assert len(registry.read().schedules) == 25


def test_default_store_follows_zenml_local_stores_path(tmp_path: Path) -> None:
    environ = {
        "HOME": str(tmp_path / "home"),
        "ZENML_CONFIG_PATH": str(tmp_path / "cfg"),  # the local stores path wins over it
        "ZENML_LOCAL_STORES_PATH": str(tmp_path / "stores"),
    }
    expected = tmp_path / "stores" / "default_zen_store" / "zenml.db"
    assert default_store_path(environ) == expected
    expected.parent.mkdir(parents=True)
    shutil.copy2(store_file(), expected)
    assert len(ZenmlSqlRegistry(RegistryConfig(), environ).read().schedules) == 25


def test_default_store_is_in_the_click_app_dir(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert default_store_path({"HOME": str(home)}) == (
        home / ".config" / "zenml" / "local_stores" / "default_zen_store" / "zenml.db"
    )
    xdg = tmp_path / "xdg"
    assert default_store_path({"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}) == (
        xdg / "zenml" / "local_stores" / "default_zen_store" / "zenml.db"
    )
    with pytest.raises(RegistryError, match=r"no such file"):
        ZenmlSqlRegistry(RegistryConfig(), {"HOME": str(home)}).read()


def test_zenml_store_url_env_then_config_url(tmp_path: Path, store_copy: Path) -> None:
    environ = {"HOME": str(tmp_path / "home"), "ZENML_STORE_URL": f"sqlite:///{store_copy}"}
    assert ZenmlSqlRegistry(RegistryConfig(), environ).store == str(store_copy)
    other = tmp_path / "other.db"
    assert ZenmlSqlRegistry(RegistryConfig(url=f"sqlite:///{other}"), environ).store == str(other)


def test_rest_and_foreign_urls_are_refused() -> None:
    with pytest.raises(RegistryError, match=r"is a ZenML server: use registry type zenml-rest"):
        ZenmlSqlRegistry(RegistryConfig(url="https://zenml.example.com"))
    with pytest.raises(RegistryError, match=r"unsupported database 'postgresql'"):
        ZenmlSqlRegistry(RegistryConfig(url="postgresql://u:pw@localhost/zenml"))


def test_unreachable_mysql_names_the_store_never_the_password() -> None:
    port = free_port()  # nothing listens there
    registry = ZenmlSqlRegistry(RegistryConfig(url=f"mysql://zenml:s3cret-pw@127.0.0.1:{port}/zenml", timeout=2))
    with pytest.raises(RegistryError) as err:
        registry.read()
    message = str(err.value)
    assert f"mysql+pymysql://zenml:***@127.0.0.1:{port}/zenml" in message
    assert "Can't connect" in message
    assert "s3cret-pw" not in message
    assert "\n" not in message


def test_mysql_password_from_env_and_a_missing_variable() -> None:
    port = free_port()
    config = RegistryConfig(url=f"mysql://zenml@127.0.0.1:{port}/zenml", password_env="ZENML_DB_PW", timeout=2)
    with pytest.raises(RegistryError, match=r"environment variable ZENML_DB_PW is not set"):
        ZenmlSqlRegistry(config, {})
    registry = ZenmlSqlRegistry(config, {"ZENML_DB_PW": "from-env-pw"})
    assert registry.store == f"mysql+pymysql://zenml:***@127.0.0.1:{port}/zenml"
    with pytest.raises(RegistryError) as err:
        registry.read()
    assert "from-env-pw" not in str(err.value)
