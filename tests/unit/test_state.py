"""The state store on a real SQLite file: migrations, evidence, inventory, the audit log."""

from __future__ import annotations

import sqlite3

import pytest

from reconciler.policy import Evidence
from reconciler.state import StateError, StateStore, safe_url


@pytest.fixture()
def store(tmp_path):
    opened = StateStore(f"sqlite:///{tmp_path}/state/state.db")
    yield opened
    opened.close()


def action(store: StateStore, native_id: str = "n1", *, dry_run: bool = False, now: float = 100.0, **kw) -> int:
    fields = dict(cycle_id=1, replica="r1", target="t", flavor="vertex", native_id=native_id, live_name=native_id,
                  kind="orchestrator_only", action="delete", dry_run=dry_run, rule="approved", approved=True,
                  approve_only=None, fingerprint="f" * 64, snapshot={"object": {"name": native_id}}, now=now)
    fields.update(kw)
    return store.begin_action(**fields)


def test_migrations_create_every_table_once_and_reopening_is_a_no_op(tmp_path, store):
    assert store.revision() == StateStore.head() == "0002"
    again = StateStore(store.url)
    assert again.revision() == "0002"
    again.close()
    tables = {r[0] for r in sqlite3.connect(f"{tmp_path}/state/state.db").execute(
        "select name from sqlite_master where type='table'")}
    assert {"inventory", "evidence", "cycles", "audit", "leases", "marks", "alembic_version"} <= tables


def test_an_audit_record_is_pending_until_completed_and_completes_once(store):
    record_id = action(store)
    assert [r.id for r in store.pending_actions()] == [record_id]
    assert store.complete_action(record_id, "succeeded", None, 101.0)
    assert not store.complete_action(record_id, "failed", "second time", 102.0)
    record = store.record(record_id)
    assert (record.status, record.outcome, record.error, record.finished_at) == ("completed", "succeeded", None, 101.0)
    assert record.snapshot == {"object": {"name": "n1"}}
    assert store.pending_actions() == []


def test_history_filters_and_hides_dry_runs_unless_asked(store):
    store.record_dry_run(cycle_id=1, replica="r", target="t", flavor="vertex", native_id="d", live_name="d",
                         kind="orchestrator_only", action="delete", rule="0 of 2", approved=False, approve_only=None,
                         fingerprint="f", snapshot={}, now=50.0)
    real = action(store, "n1", now=100.0)
    store.complete_action(real, "succeeded", None, 100.5)
    other = action(store, "n2", now=200.0, target="u", action="pause")
    store.complete_action(other, "failed", "boom", 200.5)
    assert [r.native_id for r in store.history()] == ["n2", "n1"]
    assert [r.native_id for r in store.history(include_dry_run=True)] == ["n2", "n1", "d"]
    assert [r.native_id for r in store.history(target="t")] == ["n1"]
    assert [r.native_id for r in store.history(outcome="failed")] == ["n2"]
    assert [r.native_id for r in store.history(action="delete")] == ["n1"]
    assert [r.native_id for r in store.history(since=150.0)] == ["n2"]
    assert store.prune_dry_runs(before=60.0) == 1
    assert [r.native_id for r in store.history(include_dry_run=True)] == ["n2", "n1"]


def test_a_succeeded_restore_marks_the_original_and_protects_the_new_id(store):
    original = action(store, "old")
    store.complete_action(original, "succeeded", None, 101.0)
    restore = action(store, "old", action="recreate", restores=original)
    assert store.restored("t") == {}
    store.complete_action(restore, "succeeded", None, 102.0, native_id="new")
    assert store.record(original).restored_by == restore
    assert store.restored("t") == {"new": restore}


def test_evidence_is_replaced_per_target(store):
    e = Evidence("f", "a", "orchestrator_only", "delete", 1.0, 2.0, 2)
    store.replace_evidence("t", {"a": e, "b": e}, cycle_id=3)
    store.replace_evidence("u", {"c": e}, cycle_id=3)
    store.replace_evidence("t", {"a": e}, cycle_id=4)
    assert store.evidence("t") == {"a": e}
    assert set(store.evidence("u")) == {"c"}


def test_inventory_writes_only_changes_and_forgets_vanished_ids(store):
    store.update_inventory("t", {}, {"n1": "s1", "n2": "s2"}, {"n1", "n2"}, now=1.0)
    before = store.inventory("t")
    assert before == {"n1": "s1", "n2": "s2"}
    store.update_inventory("t", before, {"n1": "s9"}, {"n1"}, now=2.0)  # n1 rebound, n2 gone
    assert store.inventory("t") == {"n1": "s9"}


def test_marks(store):
    assert store.mark("k") is None
    store.set_mark("k", "1")
    store.set_mark("k", "2")
    assert store.mark("k") == "2"
    store.delete_mark("k")
    assert store.mark("k") is None


def test_errors_name_the_store_without_its_password():
    assert safe_url("postgresql://u:hunter2@127.0.0.1:1/db") == "postgresql://u:***@127.0.0.1:1/db"
    with pytest.raises(StateError) as raised:
        StateStore("postgresql://u:hunter2@127.0.0.1:1/db")
    assert "hunter2" not in str(raised.value) and "127.0.0.1:1" in str(raised.value)


def test_a_store_made_by_the_first_release_upgrades_and_keeps_its_records(tmp_path):
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from reconciler.state import MIGRATIONS

    url = f"sqlite:///{tmp_path}/old.db"
    old = StateStore(url, migrate=False)
    with old.engine.begin() as conn:
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.exec_driver_sql(
            "INSERT INTO audit (replica, target, flavor, native_id, live_name, kind, action, dry_run, rule, approved,"
            " fingerprint, snapshot, status, started_at) VALUES ('r', 't', 'vertex', 'n', 'n', 'orchestrator_only',"
            " 'delete', 0, 'approved', 1, 'f', '{}', 'pending', 1.0)")
    old.close()
    upgraded = StateStore(url)
    assert upgraded.revision() == "0002"
    (record,) = upgraded.pending_actions()
    assert (record.native_id, record.requested_at) == ("n", None)
    upgraded.close()
