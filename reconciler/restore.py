"""`restore ID`: undo one cleanup action from its audit record.

A pause is undone by resuming the same object; a delete by recreating the
object from the snapshot taken just before it (Vertex, KFP and Kubernetes
allow that; Airflow does not: a DAG comes from its file). The restore is an
audited action of its own, and the restored schedule is protected from
cleanup from then on: the operator has said it stays.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from reconciler.model import LiveState
from reconciler.state import AuditRecord, StateStore

RECREATABLE = frozenset({"vertex", "kubeflow", "kubernetes"})


class RestoreError(Exception):
    """Why a record cannot be restored; one line for the operator."""


def restore(store: StateStore, record_id: int, provider_for: Callable[[str], Any], replica: str,
            clock: Callable[[], float] = time.time) -> AuditRecord:
    """Undo the action of `record_id`; returns the restore's own (completed) audit record."""
    record = store.record(record_id)
    if record is None:
        raise RestoreError(f"no audit record {record_id}")
    _check_restorable(record)
    provider = provider_for(record.target)
    stamp: dict[str, Any] = dict(
        cycle_id=None, replica=replica, target=record.target, flavor=record.flavor, native_id=record.native_id,
        live_name=record.live_name, kind=record.kind, dry_run=False, rule=f"operator restore of audit record {record.id}",
        approved=True, approve_only=None, fingerprint=record.fingerprint, snapshot=record.snapshot, now=clock(),
        restores=record.id,
    )
    if record.action == "pause":
        restore_id = store.begin_action(action="resume", **stamp)
        outcome, error, native_id = _resume(provider, record.native_id)
    else:
        obj = record.snapshot.get("object")
        if not obj:
            raise RestoreError(f"audit record {record.id} holds no API object to recreate the schedule from")
        restore_id = store.begin_action(action="recreate", **stamp)
        outcome, error, native_id = _recreate(provider, obj)
    store.complete_action(restore_id, outcome, error, clock(), native_id=native_id)
    done = store.record(restore_id)
    assert done is not None
    return done


def _check_restorable(record: AuditRecord) -> None:
    if record.dry_run:
        raise RestoreError(f"audit record {record.id} was a dry run: nothing was done, so nothing to restore")
    if record.restores is not None:
        raise RestoreError(f"audit record {record.id} is itself a restore (of record {record.restores})")
    if record.restored_by is not None:
        raise RestoreError(f"audit record {record.id} was already restored by record {record.restored_by}")
    if record.status != "completed" or record.outcome != "succeeded":
        raise RestoreError(f"audit record {record.id} did not succeed ({record.outcome or record.status}): "
                           "nothing to restore")
    if record.action == "delete" and record.flavor not in RECREATABLE:
        raise RestoreError(f"audit record {record.id}: {record.flavor} has no API to recreate a deleted schedule; "
                           f"restore the DAG file{_dag_file(record)} and Airflow brings the DAG back at its next "
                           "parse")


def _dag_file(record: AuditRecord) -> str:
    """` <file> (dag_id ...)` from the snapshot, so the refusal says which file to put back."""
    obj = record.snapshot.get("object") or {}
    fileloc = obj.get("fileloc") or obj.get("relative_fileloc")
    named = f"of {record.native_id}" if not fileloc else f"{fileloc} (dag_id {record.native_id})"
    return " " + " ".join(str(named).split())  # one line, whatever the path holds


def _resume(provider: Any, native_id: str) -> tuple[str, str | None, str | None]:
    try:
        existed = provider.resume(native_id)
        if not existed:
            return "failed", "the schedule no longer exists", None
        after = provider.get(native_id)
    except Exception as exc:  # noqa: BLE001 - recorded in the audit log and shown to the operator
        return "failed", _one_line(exc), None
    if after is None or after.state is not LiveState.ENABLED:
        return "failed", "resumed, but the target does not show it enabled", None
    return "succeeded", None, None


def _recreate(provider: Any, obj: dict[str, Any]) -> tuple[str, str | None, str | None]:
    try:
        live = provider.create(obj)
    except Exception as exc:  # noqa: BLE001
        return "failed", _one_line(exc), None
    return "succeeded", None, live.native_id


def _one_line(exc: BaseException) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:500]
