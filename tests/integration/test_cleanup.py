"""Cleanup end to end (issue 4): the daemon against a real Airflow 3 server and the Vertex,
KFP and Kubernetes emulators, with a real SQLite state store and the ZenML store file
that real ZenML wrote for the same scenario.

The daemon runs in process (`build_daemon`, `run_cycle`) so each test steps it
cycle by cycle; the config is a real file it reloads, changed the way a
Kubernetes ConfigMap changes (a `..data` symlink swapped).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from google.cloud.aiplatform_v1.types import PauseScheduleRequest

from providers.emulators.base import Fault
from providers.emulators.sandbox import default_store, running, seed
from reconciler.cli import build_daemon
from reconciler.loop import Daemon
from reconciler.report import CycleReport, to_json
from tests.integration.test_sandbox import sandbox_config
from tests.support import airflow as airflow_support
from tests.support.procs import REPO, free_port, wait_until

pytestmark = pytest.mark.integration

AIRFLOW_ORPHANS = {"cleanup_d51607f06930f87c7ac52243271c0d82", "legacy_6d916fbf247c3abe0abf911cbf705382"}
VERTEX_ORPHAN, KFP_ORPHAN_PREFIX, K8S_ORPHAN = "vx_deleted", "kfp_old_", "zenml-4e5f6a7b-k8s-export"


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[airflow_support.AirflowServer]:
    server = airflow_support.start(3, tmp_path_factory.mktemp("airflow-cleanup"))
    yield server
    server.stop()


class Harness:
    """One daemon, its live config file (behind a ConfigMap-style symlink) and the emulators."""

    def __init__(self, tmp: Path, airflow: airflow_support.AirflowServer) -> None:
        self.tmp = tmp
        self.airflow = airflow
        _, config = sandbox_config(tmp)
        raw = config.model_dump(mode="json", exclude_none=True)
        registry = tmp / "zenml.db"
        shutil.copy(default_store(), registry)
        raw["registry"]["url"] = f"sqlite:///{registry}"
        raw["state"] = {"url": f"sqlite:///{tmp}/state.db"}
        raw["cleanup"] = {"enabled": True, "approve": False, "dry_run_cycles": 2, "grace_period": "0s",
                          "max_actions_per_cycle": 10, "max_fraction": 1.0}
        for target in raw["targets"]:
            if target["type"] == "airflow":
                user, password = tmp / "af-user", tmp / "af-password"
                user.write_text(airflow.username + "\n")
                password.write_text(airflow.password + "\n")
                target.update(url=airflow.url, username_file=str(user), password_file=str(password))
        self.raw = raw
        self.registry = registry
        self.config_dir = tmp / "configmap"
        self.config_dir.mkdir()
        self.path = self.config_dir / "config.yaml"
        self.version = 0
        self.write_config()
        self.daemon: Daemon | None = None

    def write_config(self) -> None:
        """Write the config the way the kubelet updates a ConfigMap volume: a new dir, then a symlink swap."""
        self.version += 1
        data = self.config_dir / f"..{self.version}"
        data.mkdir()
        (data / "config.yaml").write_text(yaml.safe_dump(self.raw))
        link = self.config_dir / "..data"
        staging = self.config_dir / "..data_tmp"
        staging.symlink_to(data.name)
        os.replace(staging, link)
        if not self.path.is_symlink():
            self.path.symlink_to("..data/config.yaml")

    def set_cleanup(self, **changes: Any) -> None:
        self.raw["cleanup"].update(changes)
        self.write_config()

    def target(self, name: str) -> dict[str, Any]:
        return next(t for t in self.raw["targets"] if t["name"] == name)

    def cycle(self) -> CycleReport:
        assert self.daemon is not None
        report = self.daemon.run_cycle()
        assert report is not None
        return report


@pytest.fixture()
def harness(tmp_path: Path, airflow: airflow_support.AirflowServer) -> Iterator[tuple[Harness, Any]]:
    h = Harness(tmp_path, airflow)
    before = {d: dag["is_paused"] for d, dag in airflow.all_dags().items()}
    # The sandbox's Airflow emulator gets a port of its own and idles: the daemon talks to the real server.
    stand_in = _config(h).model_copy(update={"targets": [
        t.model_copy(update={"url": f"http://127.0.0.1:{free_port()}"}) if t.type == "airflow" else t
        for t in _config(h).targets]})
    with running(stand_in) as emulators:
        h.daemon = build_daemon(_config(h), h.path)
        seed(emulators, {c.name: c.id for c in h.daemon.reconciler.registry.read().components})
        h.daemon.leadership.start()
        try:
            yield h, emulators
        finally:
            h.daemon.reconciler.close()
            h.daemon.store.close()
    # Put Airflow back as the scenario seeded it, for the next test.
    for dag_id, dag in airflow.all_dags().items():
        if dag_id in before and dag["is_paused"] != before[dag_id]:
            airflow.raw("PATCH", f"/dags/{dag_id}", json={"is_paused": before[dag_id]}).raise_for_status()


def _config(h: Harness):
    from reconciler.config import load_config

    return load_config(h.path)


def candidates(report: CycleReport, target: str) -> dict[str, dict[str, Any]]:
    body = next(t for t in to_json(report)["targets"] if t["name"] == target)
    return {c["live_name"]: c for c in body["candidates"]}


def all_candidates(report: CycleReport) -> dict[str, dict[str, Any]]:
    return {name: c for t in to_json(report)["targets"] for name, c in candidates(report, t["name"]).items()}


def series(daemon: Daemon, name: str, **labels: str) -> float | None:
    """The value of one series of the daemon's /metrics text, matched on these labels."""
    for line in daemon.metrics.exposition().decode().splitlines():
        if not line.startswith(f"schedule_reconciler_{name}{{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def mutations(emulators: Any) -> list[tuple[str, str]]:
    """Mutating requests that reached the emulated targets (Airflow is the real server here)."""
    return [(m.operation, m.path) for e in (emulators.vertex, emulators.kubeflow, emulators.kubernetes)
            for m in e.log.mutations()]


def test_dry_runs_never_mutate_and_approval_acts_only_on_evidenced_unprotected_candidates(harness):
    h, emulators = harness
    h.raw["cleanup"]["protect"] = {"names": [f"{KFP_ORPHAN_PREFIX}*"], "labels": {}}
    h.write_config()
    dags_before = {d: dag["is_paused"] for d, dag in h.airflow.all_dags().items()}

    for cycle in (1, 2, 3):
        report = h.cycle()
        assert report.result == "success", [t.error for t in report.targets]
        found = all_candidates(report)
        assert AIRFLOW_ORPHANS | {VERTEX_ORPHAN, K8S_ORPHAN} <= set(found)
        kfp = [c for n, c in found.items() if n.startswith(KFP_ORPHAN_PREFIX)]
        assert [c["stage"] for c in kfp] == ["protected"]
        expected_stage = "dry_run" if cycle <= 2 else "ready"
        assert {found[n]["stage"] for n in AIRFLOW_ORPHANS | {VERTEX_ORPHAN, K8S_ORPHAN}} == {expected_stage}
    assert "waiting for approval" in found[VERTEX_ORPHAN]["reason"]
    assert mutations(emulators) == []  # emulators: no mutating request of any kind
    assert {d: dag["is_paused"] for d, dag in h.airflow.all_dags().items()} == dags_before
    assert series(h.daemon, "cleanup_actions_total", target="vertex", outcome="dry_run") == 3
    assert series(h.daemon, "cleanup_candidates", target="vertex", stage="ready") == 1
    dry_runs = h.daemon.store.history(include_dry_run=True, target="vertex")
    assert [r.outcome for r in dry_runs] == ["dry_run"] * 3 and all(r.dry_run for r in dry_runs)

    # A new orphan appears just before the approval: it must wait its own dry-run cycles.
    newcomer = emulators.vertex.add_schedule("vx_newcomer", "0 4 * * *")
    h.set_cleanup(approve=True)
    report = h.cycle()
    assert series(h.daemon, "config_reloads_total", result="success") == 2  # the protect list, then approve
    found = all_candidates(report)
    assert {found[n]["stage"] for n in AIRFLOW_ORPHANS | {VERTEX_ORPHAN, K8S_ORPHAN}} == {"done"}
    assert (found["vx_newcomer"]["stage"], found["vx_newcomer"]["reason"]) == ("dry_run", "0 of 2 dry-run cycles seen")
    kfp_name = next(n for n in found if n.startswith(KFP_ORPHAN_PREFIX))
    assert found[kfp_name]["stage"] == "protected"

    acted = sorted(op for op, _ in mutations(emulators))
    assert acted == ["delete_schedule", "delete_schedule"]  # Vertex and Kubernetes; KFP's is protected
    assert [m.path for m in emulators.kubernetes.log.mutations()] == \
        [f"/apis/batch/v1/namespaces/zenml/cronjobs/{K8S_ORPHAN}"]
    assert {s.display_name for s in emulators.vertex.schedules()} >= {"vx_newcomer"}
    assert VERTEX_ORPHAN not in {s.display_name for s in emulators.vertex.schedules()}
    dags = h.airflow.all_dags()
    assert all(dags[d]["is_paused"] for d in AIRFLOW_ORPHANS)  # Airflow: pause, the DAG files remain
    assert {d: p for d, p in dags_before.items() if d not in AIRFLOW_ORPHANS} == \
        {d: dags[d]["is_paused"] for d in dags_before if d not in AIRFLOW_ORPHANS}
    assert series(h.daemon, "cleanup_actions_total", target="vertex", action="delete", outcome="succeeded") == 1
    assert series(h.daemon, "cleanup_actions_total", target="airflow", action="pause", outcome="succeeded") == 2

    real = h.daemon.store.history()
    assert {(r.target, r.live_name, r.action, r.outcome) for r in real} == {
        ("vertex", VERTEX_ORPHAN, "delete", "succeeded"), ("k8s", K8S_ORPHAN, "delete", "succeeded"),
        *{("airflow", d, "pause", "succeeded") for d in AIRFLOW_ORPHANS}}
    vertex_record = next(r for r in real if r.target == "vertex")
    assert vertex_record.approved and vertex_record.snapshot["object"]["displayName"] == VERTEX_ORPHAN
    assert vertex_record.rule.startswith("approved")

    # Later cycles: nothing is acted on twice; the newcomer acts after its own evidence.
    assert all_candidates(h.cycle())["vx_newcomer"]["reason"] == "1 of 2 dry-run cycles seen"
    assert all_candidates(h.cycle())["vx_newcomer"]["stage"] == "done"
    assert newcomer not in {s.name for s in emulators.vertex.schedules()}
    assert "vx_newcomer" not in all_candidates(h.cycle())
    assert sorted(op for op, _ in mutations(emulators)) == ["delete_schedule"] * 3
    assert h.daemon.store.pending_actions() == []


def seasoned(h: Harness) -> None:
    """Two dry-run cycles, then approval: the next cycle would act."""
    for _ in range(2):
        assert h.cycle().result == "success"
    h.set_cleanup(approve=True)


def empty_registry(h: Harness, emulators: Any) -> None:
    with sqlite3.connect(h.registry) as db:
        db.execute("DELETE FROM schedule")


def unreachable_registry(h: Harness, emulators: Any) -> None:
    h.registry.rename(h.registry.with_suffix(".moved"))


def half_way_listing(h: Harness, emulators: Any) -> None:
    h.target("vertex")["page_size"] = 1
    h.write_config()
    emulators.vertex.faults.set("list_schedules", Fault(status=500, after=1))


def tight_budget(h: Harness, emulators: Any) -> None:
    h.set_cleanup(max_actions_per_cycle=0)


@pytest.mark.parametrize("fault, code, in_reason, everywhere", [
    (empty_registry, "registry_empty", "registry is empty", True),
    (unreachable_registry, "registry_unavailable", "registry read failed", True),
    (half_way_listing, "target_unavailable", "target listing incomplete", False),
    (tight_budget, "over_budget", "over budget", True),
], ids=["registry-emptied", "registry-unreachable", "listing-fails-half-way", "budget-exceeded"])
def test_each_guard_blocks_actions_with_its_reason_in_plan_metrics_and_logs(harness, fault, code, in_reason,
                                                                            everywhere):
    h, emulators = harness
    seasoned(h)
    fault(h, emulators)
    with structlog.testing.capture_logs() as logs:
        report = h.cycle()
    vertex = candidates(report, "vertex")
    assert vertex[VERTEX_ORPHAN]["stage"] == "blocked", vertex
    assert vertex[VERTEX_ORPHAN]["blocked_by"] == code
    assert in_reason in vertex[VERTEX_ORPHAN]["reason"]
    assert series(h.daemon, "cleanup_blocked", target="vertex", reason=code) >= 1
    assert any(e["event"] == "cleanup blocked" and e.get("target") == "vertex" and code in e["blocked"]
               for e in logs), logs
    assert emulators.vertex.log.mutations() == []
    if everywhere:
        assert mutations(emulators) == []
        assert all(not dag["is_paused"] for d, dag in h.airflow.all_dags().items() if d in AIRFLOW_ORPHANS)
        assert h.daemon.store.history() == []  # no real action was even attempted
    else:  # one target's failure holds back that target only
        assert {r.target for r in h.daemon.store.history()} == {"airflow", "kfp", "k8s"}


def test_a_candidate_that_changes_between_the_plan_and_the_act_is_skipped(harness):
    h, emulators = harness
    seasoned(h)
    vertex = emulators.vertex
    orphan = next(s.name for s in vertex.schedules() if s.display_name == VERTEX_ORPHAN)
    # The re-read before the action is slow; while it waits, someone pauses the schedule.
    vertex.faults.set("get_schedule", Fault(latency=1.5, times=1))
    changed = threading.Event()

    def pause_during_the_re_read() -> None:
        wait_until(lambda: vertex.faults.seen("get_schedule") >= 1, 30, "the re-read")
        vertex.pause_schedule(PauseScheduleRequest(name=orphan))
        changed.set()

    helper = threading.Thread(target=pause_during_the_re_read)
    helper.start()
    report = h.cycle()
    helper.join()
    assert changed.is_set()
    got = candidates(report, "vertex")[VERTEX_ORPHAN]
    assert (got["stage"], got["blocked_by"]) == ("blocked", "changed")
    actions = next(t for t in to_json(report)["targets"] if t["name"] == "vertex")["actions"]
    assert [a["outcome"] for a in actions] == ["skipped_changed"]
    assert vertex.log.count("delete_schedule") == 0
    assert orphan in {s.name for s in vertex.schedules()}
    (record,) = h.daemon.store.history(target="vertex")
    assert record.outcome == "skipped_changed" and "changed" in record.error
    assert series(h.daemon, "cleanup_actions_total", target="vertex", outcome="skipped_changed") == 1
    # The change resets the evidence: the next cycle is a first dry run again.
    assert candidates(h.cycle(), "vertex")[VERTEX_ORPHAN]["reason"] == "0 of 2 dry-run cycles seen"


def test_an_invalid_config_is_rejected_counted_and_the_old_one_keeps_running(harness):
    h, emulators = harness
    h.cycle()
    good = dict(h.raw["cleanup"])
    h.raw["cleanup"]["max_fraction"] = 7  # out of range
    h.write_config()
    report = h.cycle()
    assert report.result == "success"
    assert series(h.daemon, "config_reloads_total", result="invalid") == 1
    assert h.daemon.config.cleanup.max_fraction == good["max_fraction"]
    h.raw["cleanup"] = good | {"approve": True}
    h.write_config()
    h.cycle()
    assert h.daemon.config.cleanup.approve is True
    assert series(h.daemon, "config_reloads_total", result="success") == 1


def test_plan_never_acts_even_when_approved_and_leaves_the_evidence_alone(harness):
    h, emulators = harness
    seasoned(h)  # approve is on: the daemon's next cycle would act
    evidence_before = h.daemon.store.evidence("vertex")
    result = subprocess.run([sys.executable, "-m", "reconciler", "plan", "--config", str(h.path), "--output", "json"],
                            capture_output=True, text=True, timeout=180, cwd=REPO)
    assert result.returncode == 1, result.stderr
    plan = json.loads(result.stdout)
    vertex = next(t for t in plan["targets"] if t["name"] == "vertex")
    got = {c["live_name"]: c for c in vertex["candidates"]}[VERTEX_ORPHAN]
    assert (got["stage"], got["reason"]) == ("ready", "approved: the leader would delete it")
    assert vertex["actions"] == []
    assert mutations(emulators) == []
    assert all(not dag["is_paused"] for d, dag in h.airflow.all_dags().items() if d in AIRFLOW_ORPHANS)
    assert h.daemon.store.evidence("vertex") == evidence_before
    assert len(h.daemon.store.history(include_dry_run=True, target="vertex")) == 2  # the daemon's two dry runs only
