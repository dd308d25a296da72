"""A leader that loses its lease while re-reading a live schedule does not act on it.

The replica checks leadership before the re-read that precedes every action.
The re-read can be slow (a hung connection, a long GC pause, a throttled API);
by the time it returns, the lease may have run out and another replica may
hold it and be acting. Acting then would make two actors. Here the re-read
takes longer than the lease (the leader's monotonic clock is moved on inside
it) and a second replica takes the real database lease meanwhile: the first
must write no action record and send no request.

The Cleaner, the Leadership and the DatabaseLease are the real ones on a real
SQLite store; the provider is a stand-in for our own provider protocol.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from reconciler.cleanup import Cleaner, CycleFacts
from reconciler.config import Config
from reconciler.leader import DatabaseLease, Leadership
from reconciler.model import DriftKind, LiveSchedule, LiveState, TargetDiff
from reconciler.policy import Candidate, fingerprint
from reconciler.report import TargetReport
from reconciler.state import StateStore
from tests.support.procs import REPO

LEASE = 3.0
LIVE = LiveSchedule("projects/p/locations/l/schedules/7", "orphan-7", LiveState.ENABLED, cron="7 7 * * *")


class SlowReread:
    """Our provider protocol's get/delete/pause; `during_get` runs inside the re-read."""

    def __init__(self, during_get: object) -> None:
        self.during_get = during_get
        self.mutations: list[str] = []

    def get(self, native_id: str) -> LiveSchedule | None:
        assert callable(self.during_get)
        self.during_get()
        return LIVE if native_id == LIVE.native_id else None

    def delete(self, native_id: str) -> bool:
        self.mutations.append(f"delete {native_id}")
        return True

    def pause(self, native_id: str) -> bool:
        self.mutations.append(f"pause {native_id}")
        return True


def test_a_lease_lost_during_the_reread_stops_the_action(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    wall = [1000.0]
    mono = [50.0]
    try:
        first = Leadership(DatabaseLease(store.engine, "crash", "replica-a", LEASE, clock=lambda: wall[0]), LEASE,
                           monotonic=lambda: mono[0])
        second = DatabaseLease(store.engine, "crash", "replica-b", LEASE, clock=lambda: wall[0])
        assert first.tick() is True and second.acquire() is False

        def stall() -> None:  # the re-read outlasts the lease; the other replica takes over meanwhile
            wall[0] += LEASE + 1
            mono[0] += LEASE + 1
            assert second.acquire() is True

        provider = SlowReread(stall)
        raw = yaml.safe_load((REPO / "config" / "sandbox.yaml").read_text(encoding="utf-8"))
        raw["cleanup"].update(approve=True)
        config = Config.model_validate(raw)
        candidate = Candidate(LIVE.native_id, LIVE.name, DriftKind.ORCHESTRATOR_ONLY, None, "delete", "ready",
                              "orphaned: ready", live=LIVE, approved=True)
        candidate = Candidate(**{**candidate.__dict__, "fingerprint": fingerprint(candidate, LIVE)})
        diff = TargetDiff((), (), (LIVE,), (), (), 0)
        report = TargetReport("vertex", "vertex", "memory://vertex", "ok", diff=diff, candidates=(candidate,))
        cleaner = Cleaner(store, first.identity, first.is_leader, clock=lambda: wall[0])
        cycle = store.begin_cycle(first.identity, True, wall[0])
        final = cleaner.finish_target(CycleFacts(cycle, first.identity, config), report, provider, {},
                                      lambda _name: {LIVE.native_id})

        assert provider.mutations == [], "the replica acted after its lease ran out"
        assert store.history(limit=100) == []  # no action record either
        assert store.pending_actions() == []
        (after,) = final.candidates
        assert (after.stage, after.blocked_by) == ("blocked", "not_leader"), after
    finally:
        store.close()
