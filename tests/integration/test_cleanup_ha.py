"""Two daemons on one state store (one SQLite file; one PostgreSQL database), many cycles:
exactly one acts, every action once; SIGKILL the leader and the other takes over.

The daemons are real `schedule-reconciler run` processes with database leader
election; the targets are the sandbox's emulators, whose request logs count every
delete that really reached them. New orphans keep appearing while they run.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from providers.emulators.sandbox import default_store, running, seed
from reconciler.config import load_config
from reconciler.state import StateStore
from tests.integration.test_sandbox import sandbox_config
from tests.support.postgres import Postgres, postgres_server  # noqa: F401 - the session fixture
from tests.support.procs import REPO, Server, free_port, wait_until

pytestmark = pytest.mark.integration

LEASE = 3.0
ROUNDS = 6  # new orphans per phase


def daemon_config(tmp: Path, state_url: str) -> Path:
    path, _ = sandbox_config(tmp)
    raw = yaml.safe_load(path.read_text())
    raw.update(interval="1s", jitter="0s")
    raw["registry"]["url"] = f"sqlite:///{default_store()}"
    raw["state"] = {"url": state_url}
    raw["cleanup"] = {"enabled": True, "approve": True, "dry_run_cycles": 2, "grace_period": "0s",
                      "max_actions_per_cycle": 20, "max_fraction": 1.0}
    raw["leader_election"] = {"enabled": True, "backend": "database", "lease_duration": f"{LEASE}s"}
    raw["log"] = {"format": "json", "level": "info"}
    path.write_text(yaml.safe_dump(raw))
    return path


def start_daemon(tmp: Path, config: Path, name: str) -> tuple[Server, int]:
    port = free_port()
    env = dict(os.environ, POD_NAME=name, SCHEDULE_RECONCILER__METRICS__PORT=str(port))
    server = Server(name, [str(REPO / ".venv/bin/schedule-reconciler"), "run", "--config", str(config)],
                    tmp / f"{name}.log", env=env, cwd=REPO)
    return server, port


def is_leader(port: int) -> bool:
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return False
    return "schedule_reconciler_leader 1.0" in text


def add_orphans(emulators: Any, tag: str, n: int) -> set[str]:
    """New Vertex schedules ZenML would have made, with no registry row: orphans to remove."""
    return {emulators.vertex.add_schedule(f"ha_{tag}_{i}", "0 3 * * *") for i in range(n)}


def deletes(emulators: Any) -> Counter[str]:
    return Counter(m.body.get("name", m.path) if isinstance(m.body, dict) else m.path
                   for m in emulators.vertex.log.all() if m.operation == "delete_schedule" and m.status == 200)


def present(emulators: Any) -> set[str]:
    return {s.name for s in emulators.vertex.schedules()}


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/shared-state.db"
    postgres: Postgres = request.getfixturevalue("postgres_server")
    return postgres.create_database(f"ha_{int(time.time() * 1000)}")


def test_two_replicas_one_actor_every_action_once_and_takeover_after_sigkill(tmp_path: Path, state_url: str):
    config_path = daemon_config(tmp_path, state_url)
    config = load_config(config_path)
    with running(config) as emulators:
        StateStore(state_url).close()  # migrate once up front, so both replicas start alike
        from reconciler.cli import build_reconciler
        from reconciler.metrics import Metrics

        seeding = build_reconciler(config, Metrics())
        seed(emulators, {c.name: c.id for c in seeding.registry.read().components})
        seeding.close()
        a, a_port = start_daemon(tmp_path, config_path, "replica-a")
        b, b_port = start_daemon(tmp_path, config_path, "replica-b")
        try:
            wait_until(lambda: is_leader(a_port) or is_leader(b_port), 30, "a leader", a)
            first = set()
            for round_ in range(ROUNDS):
                first |= add_orphans(emulators, f"first{round_}", 2)
                time.sleep(1.0)
            wait_until(lambda: not (first & present(emulators)), 60, "the first orphans removed", a)
            assert is_leader(a_port) != is_leader(b_port), "exactly one leader"
            leader, leader_port, follower, follower_port = (a, a_port, b, b_port) if is_leader(a_port) \
                else (b, b_port, a, a_port)

            store = StateStore(state_url, migrate=False)
            real = store.history(limit=10_000)
            assert real and {r.replica.startswith(leader.name) for r in real} == {True}, "a follower acted"

            # The leader dies without a word; the follower takes over within the lease and acts.
            os.killpg(os.getpgid(leader.pid), signal.SIGKILL)
            leader.process.wait(10)
            wait_until(lambda: is_leader(follower_port), LEASE * 4, "the follower to take over", follower)
            second = set()
            for round_ in range(ROUNDS):
                second |= add_orphans(emulators, f"second{round_}", 2)
                time.sleep(1.0)
            # Gone from the target is not yet recorded: the leader completes a record after it verified.
            wait_until(lambda: not (second & present(emulators)) and not store.pending_actions(), 60,
                       "the second orphans removed and recorded", follower)

            after = store.history(limit=10_000)
            by_id = Counter(r.native_id for r in after if r.action == "delete" and r.outcome == "succeeded")
            missing = (first | second) - set(by_id)
            assert not missing, [(r.native_id, r.replica, r.action, r.outcome, r.error) for r in after
                                 if r.native_id in missing]
            assert max(by_id.values()) == 1, "an orphan was deleted twice"
            newer = [r for r in after if r.native_id in second]
            assert newer and {r.replica.startswith(follower.name) for r in newer} == {True}
            store.close()
            # Every delete that reached the target is one audit record, never two.
            reached = deletes(emulators)
            assert max(reached.values()) == 1, reached
        finally:
            for server in (a, b):
                if server.alive():
                    server.stop()
