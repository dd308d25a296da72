"""SIGKILL at injected points during actions: restart completes the audit log, no double action (issue 4).

The daemon runs as a real subprocess (`run --once`) against the four emulators
started in the test process, with a SQLite state store file. Every emulator's
request log counts the delete and pause requests that really reached it.

- Injected points (reconciler/failpoints.py): each iteration adds one fresh
  orphan (a ZenML-made live schedule with no registry row), lets it earn its
  dry-run evidence, then runs with `SCHEDULE_RECONCILER_FAILPOINTS` set, so the
  process SIGKILLs itself at that point of its action; the next plain run must
  complete the record the crash left pending from what the target shows, act
  where nothing was done, and never send a second delete or pause.
- Random moments: several orphans at once, the emulators answering each
  delete and pause slowly, and a SIGKILL from the test at a random moment once
  the first action's audit record is written. The same invariants.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from providers.emulators.base import Fault, LoggedRequest
from providers.emulators.sandbox import Emulators, seed
from reconciler.state import AuditRecord, StateStore
from tests.integration.cleanup_support import (
    Setup,
    airflow_orphan,
    cli,
    component_ids,
    emulated,
    history,
    k8s_orphan,
    kfp_orphan,
    vertex_orphan,
    write_config,
)
from tests.support.procs import REPO, wait_until

pytestmark = pytest.mark.integration

POINTS = ("action.after_audit_begin", "action.after_mark_requested", "action.after_act",
          "action.after_audit_complete")
ITERATIONS = 3
RANDOM_KILLS = 3
LATENCY = 0.8  # seconds each delete/pause request takes on the emulators in the random-kill test
# After a SIGKILL, a request the daemon had in flight may still be inside the emulator
# (its latency, then Vertex's deletion operation). Let it land before the next start, as a
# restarted pod would; otherwise the restart races a request of the dead process.
SETTLE = LATENCY + 1.5
# How long recovery waits for an interrupted request to land (the targets' list_deadline): short here,
# so a record left after the mark but before the request resolves within the test.
SETTLE_DEADLINE = 3.0
CONFIG = {"dry_run_cycles": 1, "grace_period": "0s", "max_fraction": 1.0, "max_actions_per_cycle": 50}
ACTIONS = {"airflow": "delete", "kubernetes": "pause"}  # vertex, kfp: delete (the default)


@dataclass(frozen=True)
class Orphan:
    target: str  # the config's target name
    native_id: str
    action: str  # delete | pause

    def __str__(self) -> str:
        return f"{self.action} {self.native_id} on {self.target}"


Maker = Callable[[Emulators, dict[str, str], str], Orphan]


def _vertex(em: Emulators, ids: dict[str, str], tag: str) -> Orphan:
    return Orphan("vertex", vertex_orphan(em, f"vx_crash_{tag}"), "delete")


def _kfp(em: Emulators, ids: dict[str, str], tag: str) -> Orphan:
    return Orphan("kfp", kfp_orphan(em, f"crash_kfp_{tag}"), "delete")


def _k8s(em: Emulators, ids: dict[str, str], tag: str) -> Orphan:
    return Orphan("k8s", k8s_orphan(em, ids["k8s-orchestrator"], f"zenml-{tag[:8]}-crash-export"), "pause")


def _airflow_live(em: Emulators, ids: dict[str, str], tag: str) -> Orphan:
    return Orphan("airflow", airflow_orphan(em, f"crash_dag_{tag[:6]}"), "pause")  # its file remains: pause


def _airflow_stale(em: Emulators, ids: dict[str, str], tag: str) -> Orphan:
    return Orphan("airflow", airflow_orphan(em, f"crash_stale_{tag[:6]}", stale=True), "delete")


KINDS: tuple[Maker, ...] = (_vertex, _kfp, _k8s, _airflow_live, _airflow_stale)


# -- the world of one test -------------------------------------------------------------------------


@dataclass
class World:
    setup: Setup
    emulators: Emulators
    ids: dict[str, str]
    store: StateStore
    acted: list[Orphan]

    def emulator(self, target: str) -> Any:
        return {"vertex": self.emulators.vertex, "kfp": self.emulators.kubeflow,
                "k8s": self.emulators.kubernetes, "airflow": self.emulators.airflow}[target]

    def run_once(self, failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {"SCHEDULE_RECONCILER_FAILPOINTS": failpoint} if failpoint else None
        return cli(self.setup, "run", "--once", env=env)

    def requests(self, orphan: Orphan) -> list[LoggedRequest]:
        """Every mutating request that reached the emulator for this orphan."""
        key = orphan.native_id.rsplit("/", 1)[-1]
        return [r for r in self.emulator(orphan.target).log.mutations()
                if (isinstance(r.body, dict) and r.body.get("name") == orphan.native_id)
                or r.path.endswith(f"/{key}") or f"/{key}:" in r.path]

    def records(self, orphan: Orphan) -> list[AuditRecord]:
        """Real (not dry-run) audit records of this orphan, oldest first."""
        found = self.store.history(target=orphan.target, include_dry_run=False, limit=1_000_000)
        return sorted((r for r in found if r.native_id == orphan.native_id), key=lambda r: r.id)

    def dry_runs(self, orphan: Orphan) -> list[AuditRecord]:
        found = self.store.history(target=orphan.target, include_dry_run=True, limit=1_000_000)
        return [r for r in found if r.native_id == orphan.native_id and r.dry_run]

    def live(self, orphan: Orphan) -> str:
        """`gone`, `paused` or `enabled`, from the emulator's own state."""
        if orphan.target == "vertex":
            found = [s for s in self.emulators.vertex.schedules() if s.name == orphan.native_id]
            return "gone" if not found else ("enabled" if found[0].state.name == "ACTIVE" else "paused")
        if orphan.target == "kfp":
            runs = {r["recurring_run_id"]: r for r in self.emulators.kubeflow.snapshot()["recurring_runs"]}
            run = runs.get(orphan.native_id)
            return "gone" if run is None else ("enabled" if run["status"] == "ENABLED" else "paused")
        if orphan.target == "k8s":
            namespace, name = orphan.native_id.split("/")
            obj = self.emulators.kubernetes.object("cronjobs", namespace, name)
            return "gone" if obj is None else ("paused" if obj["spec"]["suspend"] else "enabled")
        dag = self.emulators.airflow.dags.get(orphan.native_id)
        return "gone" if dag is None else ("paused" if dag.is_paused else "enabled")

    def assert_done_once(self, orphan: Orphan) -> list[AuditRecord]:
        """The invariants after a clean restart: one completed success, one request, the object acted on."""
        records = self.records(orphan)
        assert records, f"no action record for {orphan}"
        assert all(r.status == "completed" for r in records), records
        assert all(r.action == orphan.action for r in records), records
        succeeded = [r for r in records if r.outcome == "succeeded"]
        assert len(succeeded) == 1, (str(orphan), records)
        assert succeeded[0] is records[-1], records
        for earlier in records[:-1]:  # only an interrupted attempt that had not acted may come before
            assert earlier.outcome == "failed", earlier
            assert earlier.error is not None and "interrupted before the" in earlier.error, earlier
        operations = [r.operation for r in self.requests(orphan)]
        assert len(operations) == 1, (str(orphan), operations)
        assert ("delete" in operations[0]) is (orphan.action == "delete"), operations
        assert self.live(orphan) == ("gone" if orphan.action == "delete" else "paused"), str(orphan)
        return records

    def assert_log_complete(self) -> None:
        assert self.store.pending_actions() == []
        for orphan in self.acted:  # earlier iterations' orphans: still exactly one request each
            self.assert_done_once(orphan)


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    setup = write_config(tmp_path, cleanup=CONFIG, actions=ACTIONS)
    for target in setup.raw["targets"]:
        target["list_deadline"] = f"{SETTLE_DEADLINE}s"
    setup.write()
    ids = component_ids()
    with emulated(setup) as emulators:
        seed(emulators, ids)
        # The scenario's own orphans first, without a crash: a dry run, then approval.
        first = cli(setup, "run", "--once")
        assert first.returncode == 0, first.stderr[-3000:]
        for emulator in emulators.all():
            assert emulator.log.mutations() == [], emulator
        setup.set_cleanup(approve=True)
        store = StateStore(setup.config.state.url)
        world = World(setup, emulators, ids, store, [])
        try:
            assert store.history(limit=1000) == []  # nothing acted on yet
            assert len(store.history(include_dry_run=True, limit=1000)) == 5  # five dry-run records
            acted = world.run_once()
            assert acted.returncode == 0, acted.stderr[-3000:]
            for record in store.history(limit=1000):
                world.acted.append(Orphan(record.target, record.native_id, record.action))
            assert len(world.acted) == 5, world.acted  # vertex, kfp, k8s, and two on Airflow
            world.assert_log_complete()
            yield world
        finally:
            store.close()


def fresh(world: World, make: Maker) -> Orphan:
    """A new orphan with its dry-run evidence, nothing done to it yet."""
    orphan = make(world.emulators, world.ids, secrets.token_hex(8))
    result = world.run_once()
    assert result.returncode == 0, result.stderr[-3000:]
    assert world.records(orphan) == [] and len(world.dry_runs(orphan)) == 1, str(orphan)
    assert world.requests(orphan) == [] and world.live(orphan) == "enabled"
    return orphan


# -- the tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_an_injected_point_then_restart_completes_the_log_without_a_second_action(
        world: World, point: str) -> None:
    offset = 3 * POINTS.index(point)  # each point meets pauses and deletes on several targets
    for iteration in range(ITERATIONS):
        orphan = fresh(world, KINDS[(offset + iteration) % len(KINDS)])
        where = f"{point}, iteration {iteration}: {orphan}"

        killed = world.run_once(failpoint=point)
        assert killed.returncode == -signal.SIGKILL, (where, killed.stderr[-3000:])
        records = world.records(orphan)
        assert len(records) == 1, (where, records)
        if point == "action.after_audit_begin":  # written, not yet acted
            assert records[0].status == "pending", where
            assert world.requests(orphan) == [] and world.live(orphan) == "enabled", where
        elif point == "action.after_mark_requested":  # marked as about to be sent, never sent
            assert records[0].status == "pending" and records[0].requested_at is not None, where
            assert world.requests(orphan) == [] and world.live(orphan) == "enabled", where
            # Recovery cannot tell this from a request still in flight: it waits out the deadline.
            time.sleep(max(0.0, records[0].requested_at + SETTLE_DEADLINE - time.time()))
        elif point == "action.after_act":  # acted, record not completed
            assert records[0].status == "pending", where
            assert len(world.requests(orphan)) == 1, where
        else:  # acted and recorded, killed before anything else
            assert (records[0].status, records[0].outcome) == ("completed", "succeeded"), where
            assert len(world.requests(orphan)) == 1, where

        restarted = world.run_once()
        assert restarted.returncode == 0, (where, restarted.stderr[-3000:])
        records = world.assert_done_once(orphan)
        if point == "action.after_audit_begin":
            # recovery found the object unchanged: that attempt failed; a new record acted, once
            assert [r.outcome for r in records] == ["failed", "succeeded"], where
            assert records[0].error.startswith("completed at recovery after a crash: interrupted"), where
            assert records[1].error is None, where
        elif point == "action.after_mark_requested":
            # the request was marked but never sent: once the deadline passed, judged not done; acted once
            assert [r.outcome for r in records] == ["failed", "succeeded"], where
            assert records[0].error.startswith("completed at recovery after a crash: interrupted before the "), where
            assert records[1].error is None, where
        elif point == "action.after_act":
            # recovery saw the action's effect: the same record completed as a success
            assert len(records) == 1 and records[0].outcome == "succeeded", where
            assert records[0].error is not None and records[0].error.startswith("completed at recovery"), where
        else:
            assert len(records) == 1 and records[0].error is None, where
        world.acted.append(orphan)
        world.assert_log_complete()
    assert_history_cli_agrees(world)


def test_sigkill_at_random_moments_during_slow_actions(world: World) -> None:
    seed_value = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed_value)
    for iteration in range(RANDOM_KILLS):
        orphans = [make(world.emulators, world.ids, secrets.token_hex(8)) for make in KINDS]
        dry = world.run_once()
        assert dry.returncode == 0, dry.stderr[-3000:]
        for orphan in orphans:
            assert world.records(orphan) == [] and world.requests(orphan) == [], str(orphan)

        slow = Fault(latency=LATENCY)
        for emulator, operation in ((world.emulators.vertex, "delete_schedule"),
                                    (world.emulators.kubeflow, "delete_schedule"),
                                    (world.emulators.kubernetes, "patch_schedule"),
                                    (world.emulators.airflow, "patch_dag"),
                                    (world.emulators.airflow, "delete_dag")):
            emulator.faults.set(operation, slow)
        delay = rng.uniform(0.0, 3.0)
        where = f"seed {seed_value}, iteration {iteration}, kill {delay:.2f}s after the first action record"
        returncode = kill_during_actions(world.setup, delay)
        assert returncode == -signal.SIGKILL, (where, returncode)
        for emulator in world.emulators.all():
            emulator.faults.clear()
        time.sleep(SETTLE)

        restarted = world.run_once()
        assert restarted.returncode == 0, (where, restarted.stderr[-3000:])
        recovered = 0
        for orphan in orphans:
            records = world.assert_done_once(orphan)
            recovered += sum(1 for r in records if r.error and r.error.startswith("completed at recovery"))
            world.acted.append(orphan)
        assert recovered <= 1, where  # one process, one action at a time: at most one was cut short
        world.assert_log_complete()
    assert_history_cli_agrees(world)


def kill_during_actions(setup: Setup, delay: float) -> int | None:
    """Start `run --once` (approval on), SIGKILL it `delay` seconds after its first real audit record."""
    env = dict(os.environ)
    env.pop("SCHEDULE_RECONCILER_FAILPOINTS", None)
    with open(setup.path.parent / "killed-run.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "reconciler", "run", "--once", "--config", str(setup.path)],
                                   cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while process.poll() is None and not first_action_recorded(setup.state_db):
                if time.monotonic() > deadline:
                    raise TimeoutError("the daemon never began an action")
                time.sleep(0.05)
            time.sleep(delay)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)  # only the process this test started
            return process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)


def first_action_recorded(db: Path) -> bool:
    """A real audit record written since the last complete run: the daemon is inside an action."""
    connection = sqlite3.connect(db, timeout=10, isolation_level=None)
    try:
        row = connection.execute("SELECT COUNT(*) FROM audit WHERE dry_run = 0 AND status = 'pending'").fetchone()
        return bool(row[0])
    finally:
        connection.close()


def assert_history_cli_agrees(world: World) -> None:
    """The operator's view (`history --output json`) shows the same complete log."""
    records = history(world.setup)
    assert records and all(r["status"] == "completed" for r in records)
    real = [r for r in records if not r["dry_run"]]
    for orphan in world.acted:
        mine = [r for r in real if r["target"] == orphan.target and r["native_id"] == orphan.native_id]
        assert [r["outcome"] for r in mine].count("succeeded") == 1, (str(orphan), mine)


def test_a_vertex_delete_still_in_flight_after_a_crash_is_never_sent_twice(world: World) -> None:
    """Vertex deletes are long-running operations: a crash after the request leaves one in flight.

    The restart must not judge the delete failed (the schedule is still listed) and
    send it again; the target waits until the operation lands or the target's
    list_deadline has passed since the request.
    """
    world.setup.target("vertex")["list_deadline"] = "60s"
    world.setup.write()
    orphan = fresh(world, _vertex)
    world.emulators.vertex.operation_delay = 8.0
    env = dict(os.environ)
    env.pop("SCHEDULE_RECONCILER_FAILPOINTS", None)
    with open(world.setup.path.parent / "lro-run.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "reconciler", "run", "--once", "--config",
                                    str(world.setup.path)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: len(world.requests(orphan)) == 1 or process.poll() is not None, 120,
                       "the delete request")
            process.send_signal(signal.SIGKILL)  # only the process this test started
            assert process.wait(30) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    assert world.live(orphan) == "enabled"  # the operation has not landed yet
    (pending,) = world.store.pending_actions()
    assert pending.native_id == orphan.native_id and pending.requested_at is not None

    held = world.run_once()  # restart while the operation is still running
    assert held.returncode == 0, held.stderr[-3000:]
    assert len(world.requests(orphan)) == 1, "the delete was sent a second time"
    assert [r.id for r in world.store.pending_actions()] == [pending.id]

    wait_until(lambda: world.live(orphan) == "gone", 30, "the delete operation to land")
    world.emulators.vertex.operation_delay = 0.2
    settled = world.run_once()
    assert settled.returncode == 0, settled.stderr[-3000:]
    (record,) = world.records(orphan)
    assert (record.outcome, record.error) == ("succeeded", "completed at recovery after a crash: the object is gone")
    world.acted.append(orphan)
    world.assert_log_complete()
