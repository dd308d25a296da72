"""SIGKILL of the daemon at random points over many restarts: nothing lost, nothing done twice.

One long chain of real `schedule-reconciler run` processes (cleanup approved,
interval 1s) over the four emulators and one SQLite state store, with fresh
orphans (ZenML-made live schedules with no registry row) every iteration. Each
process is killed with SIGKILL, and the next one started, in one of four ways
(seeded random; the seed is printed, `CRASH_SEED` replays it):

- random: once the process has completed a cycle, new orphans appear and the
  kill comes after a delay uniform over two cycles (dry run, then the action),
  so it lands before, during and after actions; every delete and pause request
  is slow, which widens the action window;
- startup: a kill uniform over the time from start to the first completed
  cycle (imports, migration check, crash recovery, the first actions);
- failpoint: a kill at the Nth pass of an action failpoint
  (reconciler/failpoints.py) - between the audit record and the mark, between
  the mark and the request, after the request, after the record's completion -
  where a random delay cannot land reliably;
- migration: the store is taken back to revision 0001 and the process is killed
  inside its migration to head (`migrate.statement@N`, `migrate.after_revision`).

After every restart completes a cycle that began after recovery could settle,
the invariants hold: no audit record pending; every delete or pause request
the emulators received was for an orphan, one request per orphan across all
kills, and that orphan has exactly one completed `succeeded` record (an
earlier record only as a completed, interrupted attempt that sent nothing).
Kills are counted by where they landed, read from the store after the kill:
mid-action (an action's audit record begun, not completed), mid-migration (the
store's revision behind head), other.

`CRASH_ITERATIONS=200` runs the long form (default: 8).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from providers.emulators.base import Fault
from providers.emulators.sandbox import seed
from reconciler.state import StateStore
from tests.integration.cleanup_support import cli, component_ids, emulated, write_config
from tests.integration.test_cleanup_crash import ACTIONS, CONFIG, KINDS, Orphan, World
from tests.crash.migrations import downgrade_to_0001
from tests.support.procs import REPO

pytestmark = pytest.mark.integration

ITERATIONS = int(os.environ.get("CRASH_ITERATIONS", "8"))
LIST_DEADLINE = 2.0  # seconds: also how long recovery waits for an interrupted request to land
LATENCY = 0.3  # seconds each delete or pause takes on the emulators
ACTION_POINTS = ("action.after_audit_begin", "action.after_mark_requested", "action.after_act",
                 "action.after_audit_complete")
MODES = ("random", "startup", "failpoint", "migration")
WAIT = 90.0  # seconds for a process to complete a cycle on a loaded machine
FAILPOINT_WAIT = 30.0  # seconds for a process to reach its failpoint (it is killed then anyway)
MUTATIONS = ((lambda em: em.vertex, "delete_schedule"), (lambda em: em.kubeflow, "delete_schedule"),
             (lambda em: em.kubernetes, "patch_schedule"), (lambda em: em.airflow, "patch_dag"),
             (lambda em: em.airflow, "delete_dag"))


@dataclass
class Tally:
    kills: Counter[str] = field(default_factory=Counter)  # where each kill landed
    modes: Counter[str] = field(default_factory=Counter)  # how each kill was made
    restarts: int = 0
    orphans: int = 0


class Chain:
    """The daemon processes of one test, started one after another on one config and store."""

    def __init__(self, world: World, tmp: Path) -> None:
        self.world = world
        self.tmp = tmp
        self.count = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.name = ""
        self.started = 0.0

    def start(self, failpoint: str | None = None) -> None:
        assert self.process is None or self.process.poll() is not None
        self.count += 1
        self.name = f"crash-{self.count}"
        env = dict(os.environ, POD_NAME=self.name, SCHEDULE_RECONCILER__METRICS__PORT="0")
        env.pop("SCHEDULE_RECONCILER_FAILPOINTS", None)
        if failpoint:
            env["SCHEDULE_RECONCILER_FAILPOINTS"] = failpoint
        with open(self.tmp / "chain.log", "ab") as log:
            log.write(f"--- {self.name} failpoint={failpoint}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "reconciler", "run", "--config", str(self.world.setup.path)],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.time()

    def kill(self) -> None:
        """SIGKILL the current process (only the one this test started) and reap it."""
        assert self.process is not None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(30) == -signal.SIGKILL, self.process.returncode

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def cycles(self, since: float = 0.0) -> int:
        """Cycles this process finished that began at or after `since` (wall clock)."""
        with self.world.store.engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT COUNT(*) FROM cycles WHERE replica LIKE :me AND finished_at IS NOT NULL "
                "AND started_at >= :since"), {"me": f"{self.name}-%", "since": since}).scalar_one())

    def wait_cycle(self, since: float = 0.0) -> None:
        deadline = time.monotonic() + WAIT
        while self.cycles(since) == 0:
            assert self.process is not None and self.process.poll() is None, (self.name, self.tail())
            assert time.monotonic() < deadline, f"{self.name} completed no cycle\n{self.tail()}"
            time.sleep(0.1)

    def tail(self) -> str:
        return "\n".join((self.tmp / "chain.log").read_text(errors="replace").splitlines()[-40:])


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    cleanup = dict(CONFIG, approve=True)
    setup = write_config(tmp_path, cleanup=cleanup, actions=ACTIONS)
    setup.raw.update(interval="1s", jitter="0s")
    for target in setup.raw["targets"]:
        target["list_deadline"] = f"{LIST_DEADLINE}s"
    setup.write()
    ids = component_ids()
    with emulated(setup) as emulators:
        seed(emulators, ids)
        store = StateStore(setup.config.state.url)
        world = World(setup, emulators, ids, store, [])
        try:
            # The scenario's own five orphans: a dry run, then their actions, no crash.
            for _ in range(2):
                result = cli(setup, "run", "--once")
                assert result.returncode == 0, result.stderr[-3000:]
            for record in store.history(limit=1000):
                world.acted.append(Orphan(record.target, record.native_id, record.action))
            assert len(world.acted) == 5, world.acted
            world.assert_log_complete()
            yield world
        finally:
            store.close()


def slow_actions(world: World, on: bool) -> None:
    for emulator_of, operation in MUTATIONS:
        emulator = emulator_of(world.emulators)
        if on:
            emulator.faults.set(operation, Fault(latency=LATENCY))
        else:
            emulator.faults.clear()


def audit_count(world: World) -> int:
    with world.store.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT COUNT(*) FROM audit")).scalar_one())


def where_it_landed(world: World) -> str:
    """Read from the store after the kill, before the restart."""
    world.store.engine.dispose()  # a fresh connection: the schema may have changed under the pool
    if world.store.revision() != StateStore.head():
        return "mid_migration"
    pending = [r for r in world.store.pending_actions() if not r.dry_run]
    if pending:
        return "mid_action_sent" if pending[0].requested_at is not None else "mid_action_unsent"
    return "between_actions"


def assert_invariants(world: World, orphans: list[Orphan], where: str, running: str | None) -> None:
    """After a restart completed a cycle that began once recovery could settle.

    `running`: the POD_NAME of the process still running, which may be inside an action
    while this reads: its own pending record is an action in flight, not a lost one. The
    request logs are read first, the store after: an action's record is written before its
    request, so every request read has its record in what is read after.
    """
    logs = {target: list(world.emulator(target).log.mutations()) for target in ("vertex", "kfp", "k8s", "airflow")}
    pending = world.store.pending_actions()
    # Recovery completed every record a killed process left; only the live one may have one open.
    assert all(running and r.replica.startswith(f"{running}-") for r in pending), (where, pending)
    in_flight = {r.native_id for r in pending}
    reached = 0
    for orphan in orphans:
        key = orphan.native_id.rsplit("/", 1)[-1]
        requests = [r for r in logs[orphan.target]
                    if (isinstance(r.body, dict) and r.body.get("name") == orphan.native_id)
                    or r.path.endswith(f"/{key}") or f"/{key}:" in r.path]
        reached += len(requests)
        assert len(requests) <= 1, (where, str(orphan), [r.operation for r in requests])  # never repeated
        records = world.records(orphan)
        done = [r for r in records if r.status == "completed"]
        succeeded = [r for r in done if r.outcome == "succeeded"]
        for earlier in done:  # any other completed record is an interrupted attempt that sent nothing
            if earlier.outcome != "succeeded":
                assert earlier.outcome == "failed" and "interrupted before the" in (earlier.error or ""), (
                    where, earlier)
        if requests and orphan.native_id not in in_flight:  # acted on: exactly one completed success
            assert len(succeeded) == 1, (where, str(orphan), records)
            assert ("delete" in requests[0].operation) is (orphan.action == "delete"), (where, requests)
        elif not requests:
            assert succeeded == [], (where, str(orphan), records)
    # Every delete and pause that reached a target was for an orphan: nothing else was touched.
    assert sum(len(found) for found in logs.values()) == reached, (where, reached)


@pytest.mark.timeout(max(600, 60 * ITERATIONS))  # the long form runs past pytest's 600 s default
def test_sigkill_at_random_points_over_many_restarts(world: World, tmp_path: Path) -> None:
    seed_value = int(os.environ.get("CRASH_SEED") or int.from_bytes(os.urandom(4), "big"))
    print(f"crash seed {seed_value} (replay with CRASH_SEED={seed_value}), {ITERATIONS} iterations")
    rng = random.Random(seed_value)
    chain = Chain(world, tmp_path)
    tally = Tally()
    orphans = list(world.acted)

    def fresh(n: int) -> None:
        for make in rng.sample(KINDS, n):
            orphans.append(make(world.emulators, world.ids, f"{rng.getrandbits(64):016x}"))
            tally.orphans += 1

    # The first process: how long a start and a cycle take here, for the random delays.
    chain.start()
    chain.wait_cycle()
    startup = time.time() - chain.started
    first = time.time()
    chain.wait_cycle(first + 0.01)
    period = max(1.0, time.time() - first)
    print(f"start to first cycle {startup:.1f}s, cycle period {period:.1f}s")
    assert_invariants(world, orphans, "before any kill", chain.name)

    for iteration in range(ITERATIONS):
        # The first four iterations make one kill of each kind; then they are drawn at random.
        mode = MODES[iteration] if iteration < len(MODES) else rng.choice(MODES)
        if mode == "migration" and world.store.pending_actions():
            mode = "random"  # a downgrade would drop requested_at from a pending record: not a real upgrade
        where = f"seed {seed_value}, iteration {iteration}, {mode}"
        slow_actions(world, True)
        if mode == "random":  # the running process has completed a cycle (checked below)
            fresh(2)
            time.sleep(rng.uniform(0.0, 2 * period + LATENCY * 2))
            chain.kill()
        else:
            chain.stop()  # a clean stop; the kill of interest is of the next process
            if mode == "startup":
                fresh(2)
                chain.start()
                time.sleep(rng.uniform(0.0, startup + period))
                chain.kill()
            elif mode == "failpoint":
                fresh(3)
                point = f"{rng.choice(ACTION_POINTS)}@{rng.randint(1, 3)}"
                where += f" {point}"
                chain.start(point)
                try:
                    chain.process.wait(FAILPOINT_WAIT)  # type: ignore[union-attr]
                except subprocess.TimeoutExpired:
                    pass  # fewer actions than N: a plain kill
                chain.kill()
            else:
                downgrade_to_0001(world.setup.config.state.url)
                before = audit_count(world)
                point = rng.choice(["migrate.after_revision@1"] + [f"migrate.statement@{n}" for n in range(1, 5)])
                where += f" {point}"
                fresh(1)
                chain.start(point)
                try:
                    chain.process.wait(FAILPOINT_WAIT)  # type: ignore[union-attr]
                except subprocess.TimeoutExpired:
                    pass  # the revision check below fails: the migration was not reached or not killed
                chain.kill()
                world.store.engine.dispose()
                assert world.store.revision() == "0001", where  # rolled back, not half-migrated
                assert audit_count(world) == before, where
        killed_at = time.time()
        landed = where_it_landed(world)
        tally.kills[landed] += 1
        tally.modes[mode] += 1
        print(f"{where}: landed {landed}")
        slow_actions(world, False)

        # The restart: it recovers, migrates, acts; check once a cycle began after recovery could settle.
        chain.start()
        tally.restarts += 1
        chain.wait_cycle(killed_at + LIST_DEADLINE + LATENCY)
        # Recovery resolves every record at that cycle unless the target could not be read (a slow
        # machine): then a later cycle must, and `assert_invariants` fails if none did in time.
        deadline = time.monotonic() + WAIT
        while world.store.pending_actions() and time.monotonic() < deadline:
            chain.wait_cycle(time.time())
        assert world.store.revision() == StateStore.head(), where
        assert_invariants(world, orphans, where, chain.name)

    # The end: the last process finishes every orphan, then everything is done exactly once.
    deadline = time.monotonic() + WAIT
    while not all(world.live(o) == ("gone" if o.action == "delete" else "paused") for o in orphans):
        assert time.monotonic() < deadline, [str(o) for o in orphans if world.live(o) == "enabled"]
        time.sleep(0.2)
    chain.wait_cycle(time.time())
    chain.stop()
    assert_invariants(world, orphans, "the end", None)
    world.acted[:] = orphans
    world.assert_log_complete()
    actions = len(world.store.history(limit=1_000_000))
    figures = {"seed": seed_value, "iterations": ITERATIONS, "kills": sum(tally.kills.values()),
               "landed": dict(tally.kills), "modes": dict(tally.modes), "restarts": tally.restarts,
               "orphans": len(orphans), "audit_records": actions, "pending": 0, "repeated": 0}
    print("crash figures " + json.dumps(figures, sort_keys=True))
    assert tally.kills["mid_migration"] >= 1, tally
