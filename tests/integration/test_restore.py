"""`restore` undoes a pause and a delete on each target that allows it (issue 4).

The daemon acts for real (dry-run cycles, then `cleanup.approve: true` written
into its live config file) against the Vertex, KFP and Kubernetes emulators and
a real Airflow 3 server; then the operator's `restore ID` and `history` run as
the real command line in a subprocess, and every claim is checked on the
target's own state: what was paused is enabled again, what was deleted exists
again with the spec it had, the audit log links the two records both ways, a
record is never restored twice, dry runs and Airflow deletes are refused, and
the daemon never touches a restored schedule again, approval or not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud.aiplatform_v1.types import Schedule

from providers.emulators import scenario
from providers.emulators.sandbox import Emulators, seed
from reconciler.cli import build_daemon
from reconciler.loop import Daemon
from reconciler.report import to_json
from tests.integration.cleanup_support import Setup, cli, component_ids, emulated, history, write_config
from tests.support import airflow as airflow_support

pytestmark = pytest.mark.integration

VX_ORPHAN = "vx_deleted"
KFP_ORPHAN = scenario.run_name("kfp_old")
K8S_ORPHAN = "zenml-4e5f6a7b-k8s-export"
AIRFLOW_PAUSED = scenario.run_name("cleanup")  # its file remains: paused, even with action delete
AIRFLOW_STALE = scenario.run_name("legacy")  # its file is gone: deleted


@pytest.fixture(scope="module")
def airflow3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[airflow_support.AirflowServer]:
    server = airflow_support.start(3, tmp_path_factory.mktemp("restore-airflow3"))
    yield server
    server.stop()


# -- helpers ----------------------------------------------------------------------------------------


def daemon_for(setup: Setup, emulators: Emulators) -> Daemon:
    seed(emulators, component_ids())
    daemon = build_daemon(setup.config, setup.path)
    daemon.leadership.start()
    return daemon


def cycle(daemon: Daemon) -> dict[str, Any]:
    report = daemon.run_cycle()
    assert report is not None
    plan = to_json(report)
    assert [t["status"] for t in plan["targets"]] == ["ok"] * len(plan["targets"]), plan
    return {t["name"]: t for t in plan["targets"]}


def dry_runs_then_approve(setup: Setup, daemon: Daemon, emulators: Emulators,
                          airflow: airflow_support.AirflowServer | None = None) -> dict[str, Any]:
    """`dry_run_cycles` cycles that change nothing, then approval in the live config file: one acting cycle."""
    before = airflow.all_dags() if airflow is not None else None
    for _ in range(setup.raw["cleanup"]["dry_run_cycles"]):
        targets = cycle(daemon)
        assert all(a["outcome"] == "dry_run" for t in targets.values() for a in t["actions"]), targets
    for emulator in emulators.all():
        assert emulator.log.mutations() == [], emulator
    if airflow is not None:
        assert paused_states(airflow.all_dags()) == paused_states(before)
    setup.set_cleanup(approve=True)
    return cycle(daemon)


def paused_states(dags: dict[str, dict[str, Any]]) -> dict[str, bool]:
    return {dag_id: dag["is_paused"] for dag_id, dag in dags.items()}


def action_on(targets: dict[str, Any], target: str, live_name: str) -> dict[str, Any]:
    found = [a for a in targets[target]["actions"] if a["live_name"] == live_name]
    assert len(found) == 1, targets[target]["actions"]
    return found[0]


def candidate(targets: dict[str, Any], target: str, live_name: str) -> dict[str, Any]:
    found = [c for c in targets[target]["candidates"] if c["live_name"] == live_name]
    assert len(found) == 1, targets[target]["candidates"]
    return found[0]


def restore(setup: Setup, record_id: int) -> dict[str, Any]:
    result = cli(setup, "restore", str(record_id), "--output", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    done = json.loads(result.stdout)
    assert done["status"] == "completed" and done["outcome"] == "succeeded", done
    assert done["restores"] == record_id
    return done


def refused(setup: Setup, record_id: int) -> str:
    """`restore` must refuse: exit 2 and exactly one line on stderr, no traceback."""
    result = cli(setup, "restore", str(record_id))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def vertex_named(emulators: Emulators, display_name: str) -> list[Schedule]:
    return [s for s in emulators.vertex.schedules() if s.display_name == display_name]


def vertex_spec(schedule: Schedule) -> dict[str, Any]:
    job = schedule.create_pipeline_job_request.pipeline_job
    return {"cron": schedule.cron, "labels": dict(job.labels), "pipeline_spec": dict(job.pipeline_spec),
            "job_display_name": job.display_name, "max_concurrent_run_count": schedule.max_concurrent_run_count}


def kfp_named(emulators: Emulators, display_name: str) -> list[dict[str, Any]]:
    return [dict(r) for r in emulators.kubeflow.snapshot()["recurring_runs"] if r["display_name"] == display_name]


def kfp_spec(run: dict[str, Any]) -> dict[str, Any]:
    return {k: run.get(k) for k in ("trigger", "pipeline_spec", "experiment_id", "max_concurrency", "no_catchup",
                                     "service_account", "runtime_config")}


def cron_job(emulators: Emulators, name: str) -> dict[str, Any] | None:
    obj = emulators.kubernetes.object("cronjobs", "zenml", name)
    return None if obj is None else json.loads(json.dumps(obj))


def cron_job_spec(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {"spec": obj["spec"], "labels": meta.get("labels"), "annotations": meta.get("annotations")}


def records_by_id(setup: Setup) -> dict[int, dict[str, Any]]:
    return {r["id"]: r for r in history(setup)}


def assert_linked(setup: Setup, original: int, restoring: dict[str, Any], action: str) -> None:
    records = records_by_id(setup)
    assert records[original]["restored_by"] == restoring["id"]
    assert records[original]["restores"] is None
    mine = records[restoring["id"]]
    assert mine["restores"] == original and mine["action"] == action and mine["dry_run"] is False
    assert mine["status"] == "completed" and mine["outcome"] == "succeeded"
    assert mine["restored_by"] is None
    # `history --action` finds it as well
    listed = history(setup, "--action", action)
    assert restoring["id"] in {r["id"] for r in listed}


def assert_never_acted_on_again(setup: Setup, daemon: Daemon, emulators: Emulators,
                                restored: dict[tuple[str, str], int], cycles: int = 2) -> None:
    """With approval on, later cycles show each restored schedule `protected` and change nothing on it."""
    assert setup.raw["cleanup"]["approve"] is True
    before = max(records_by_id(setup))
    for emulator in emulators.all():
        emulator.log.clear()
    for _ in range(cycles):
        targets = cycle(daemon)
        for (target, live_name), record_id in restored.items():
            c = candidate(targets, target, live_name)
            assert c["stage"] == "protected", c
            assert "restored" in c["reason"] and f"audit record {record_id}" in c["reason"], c
            assert [a for a in targets[target]["actions"] if a["live_name"] == live_name] == []
    for emulator in emulators.all():
        assert emulator.log.mutations() == [], emulator
    later = [r for r in history(setup) if r["id"] > before and not r["dry_run"]]
    assert later == []


# -- the tests ----------------------------------------------------------------------------------------


def test_restore_recreates_deleted_schedules_and_resumes_an_airflow_pause(
        airflow3: airflow_support.AirflowServer, tmp_path: Path) -> None:
    credentials = tmp_path / "airflow3-user"
    credentials.write_text(airflow3.username + "\n")
    password = tmp_path / "airflow3-password"
    password.write_text(airflow3.password + "\n")
    setup = write_config(
        tmp_path,
        airflow={"url": airflow3.url, "api_version": "v2", "username_file": str(credentials),
                 "password_file": str(password)},
        actions={"airflow": "delete"},  # the stale DAG is deleted, the one whose file remains is paused
    )
    with emulated(setup, airflow=False) as emulators:
        daemon = daemon_for(setup, emulators)
        try:
            _restore_deletes(setup, daemon, emulators, airflow3)
        finally:
            daemon.reconciler.close()
            daemon.store.close()


def _restore_deletes(setup: Setup, daemon: Daemon, emulators: Emulators,
                     airflow: airflow_support.AirflowServer) -> None:
    # What the orphans looked like before the daemon touched them.
    [vx_before] = vertex_named(emulators, VX_ORPHAN)
    [kfp_before] = kfp_named(emulators, KFP_ORPHAN)
    k8s_before = cron_job(emulators, K8S_ORPHAN)
    assert k8s_before is not None
    dags = airflow.all_dags()
    assert dags[AIRFLOW_PAUSED]["is_paused"] is False and airflow.is_stale(dags[AIRFLOW_STALE])

    targets = dry_runs_then_approve(setup, daemon, emulators, airflow)

    acted = {
        ("vertex", VX_ORPHAN): action_on(targets, "vertex", VX_ORPHAN),
        ("kfp", KFP_ORPHAN): action_on(targets, "kfp", KFP_ORPHAN),
        ("k8s", K8S_ORPHAN): action_on(targets, "k8s", K8S_ORPHAN),
        ("airflow", AIRFLOW_PAUSED): action_on(targets, "airflow", AIRFLOW_PAUSED),
        ("airflow", AIRFLOW_STALE): action_on(targets, "airflow", AIRFLOW_STALE),
    }
    expected_actions = {("vertex", VX_ORPHAN): "delete", ("kfp", KFP_ORPHAN): "delete",
                        ("k8s", K8S_ORPHAN): "delete", ("airflow", AIRFLOW_PAUSED): "pause",
                        ("airflow", AIRFLOW_STALE): "delete"}
    assert {k: (a["action"], a["outcome"]) for k, a in acted.items()} == \
           {k: (v, "succeeded") for k, v in expected_actions.items()}
    assert vertex_named(emulators, VX_ORPHAN) == []
    assert kfp_named(emulators, KFP_ORPHAN) == []
    assert cron_job(emulators, K8S_ORPHAN) is None
    dags = airflow.all_dags()
    assert dags[AIRFLOW_PAUSED]["is_paused"] is True and AIRFLOW_STALE not in dags

    # A dry-run record is refused: nothing was done.
    dry = next(r for r in history(setup) if r["dry_run"] and r["live_name"] == VX_ORPHAN)
    assert "dry run" in refused(setup, dry["id"])

    # Vertex: recreated under a new resource name with the same cron, labels and pipeline spec.
    vx_record = acted[("vertex", VX_ORPHAN)]["audit_id"]
    vx_restore = restore(setup, vx_record)
    assert vx_restore["action"] == "recreate"
    [vx_after] = vertex_named(emulators, VX_ORPHAN)
    assert vx_after.name == vx_restore["native_id"] and vx_after.name != vx_before.name
    assert vertex_spec(vx_after) == vertex_spec(vx_before)
    assert vx_after.state == Schedule.State.ACTIVE
    assert_linked(setup, vx_record, vx_restore, "recreate")

    # KFP: a new recurring run id, the same trigger, pipeline spec and experiment.
    kfp_record = acted[("kfp", KFP_ORPHAN)]["audit_id"]
    kfp_restore = restore(setup, kfp_record)
    [kfp_after] = kfp_named(emulators, KFP_ORPHAN)
    assert kfp_after["recurring_run_id"] == kfp_restore["native_id"] != kfp_before["recurring_run_id"]
    assert kfp_spec(kfp_after) == kfp_spec(kfp_before)
    assert kfp_after["status"] == "ENABLED"
    assert_linked(setup, kfp_record, kfp_restore, "recreate")

    # Kubernetes: the same name again, the same schedule, job template, labels and annotations.
    k8s_record = acted[("k8s", K8S_ORPHAN)]["audit_id"]
    k8s_restore = restore(setup, k8s_record)
    assert k8s_restore["native_id"] == f"zenml/{K8S_ORPHAN}"
    k8s_after = cron_job(emulators, K8S_ORPHAN)
    assert k8s_after is not None
    assert cron_job_spec(k8s_after) == cron_job_spec(k8s_before)
    assert k8s_after["metadata"]["uid"] != k8s_before["metadata"]["uid"]  # a new object, not a survivor
    assert_linked(setup, k8s_record, k8s_restore, "recreate")

    # Airflow pause: the same DAG unpaused on the real server.
    paused_record = acted[("airflow", AIRFLOW_PAUSED)]["audit_id"]
    airflow_restore = restore(setup, paused_record)
    assert airflow_restore["action"] == "resume" and airflow_restore["native_id"] == AIRFLOW_PAUSED
    assert airflow.all_dags()[AIRFLOW_PAUSED]["is_paused"] is False
    assert_linked(setup, paused_record, airflow_restore, "resume")

    # Airflow delete: refused, naming the DAG file to put back; nothing written, nothing recreated.
    stale_record = acted[("airflow", AIRFLOW_STALE)]["audit_id"]
    count = len(history(setup))
    message = refused(setup, stale_record)
    print("airflow delete restore refused:", message)
    assert f"{AIRFLOW_STALE}.zip" in message and "DAG file" in message, message
    assert len(history(setup)) == count
    assert records_by_id(setup)[stale_record]["restored_by"] is None
    assert AIRFLOW_STALE not in airflow.all_dags()

    # A second restore of the same record, and a restore of a restore, are refused.
    for record_id in (vx_record, kfp_record, k8s_record, paused_record):
        assert "already restored" in refused(setup, record_id)
    assert "itself a restore" in refused(setup, vx_restore["id"])
    assert len(vertex_named(emulators, VX_ORPHAN)) == 1 and len(kfp_named(emulators, KFP_ORPHAN)) == 1

    dags_before = paused_states(airflow.all_dags())
    assert_never_acted_on_again(setup, daemon, emulators, {
        ("vertex", VX_ORPHAN): vx_restore["id"], ("kfp", KFP_ORPHAN): kfp_restore["id"],
        ("k8s", K8S_ORPHAN): k8s_restore["id"], ("airflow", AIRFLOW_PAUSED): airflow_restore["id"],
    })
    assert paused_states(airflow.all_dags()) == dags_before
    assert len(vertex_named(emulators, VX_ORPHAN)) == 1 and len(kfp_named(emulators, KFP_ORPHAN)) == 1
    assert cron_job(emulators, K8S_ORPHAN) is not None


def test_restore_resumes_paused_schedules_on_vertex_kfp_and_kubernetes(tmp_path: Path) -> None:
    setup = write_config(tmp_path, targets=("vertex", "kubeflow", "kubernetes"),
                         actions={"vertex": "pause", "kubeflow": "pause", "kubernetes": "pause"})
    with emulated(setup) as emulators:
        daemon = daemon_for(setup, emulators)
        try:
            _restore_pauses(setup, daemon, emulators)
        finally:
            daemon.reconciler.close()
            daemon.store.close()


def _restore_pauses(setup: Setup, daemon: Daemon, emulators: Emulators) -> None:
    [vx_before] = vertex_named(emulators, VX_ORPHAN)
    [kfp_before] = kfp_named(emulators, KFP_ORPHAN)
    assert vx_before.state == Schedule.State.ACTIVE and kfp_before["status"] == "ENABLED"
    assert cron_job(emulators, K8S_ORPHAN)["spec"]["suspend"] is False  # type: ignore[index]

    targets = dry_runs_then_approve(setup, daemon, emulators)
    acted = {name: action_on(targets, target, name)
             for target, name in (("vertex", VX_ORPHAN), ("kfp", KFP_ORPHAN), ("k8s", K8S_ORPHAN))}
    assert {n: (a["action"], a["outcome"]) for n, a in acted.items()} == \
           {n: ("pause", "succeeded") for n in acted}
    assert [s.state for s in vertex_named(emulators, VX_ORPHAN)] == [Schedule.State.PAUSED]
    assert [r["status"] for r in kfp_named(emulators, KFP_ORPHAN)] == ["DISABLED"]
    assert cron_job(emulators, K8S_ORPHAN)["spec"]["suspend"] is True  # type: ignore[index]

    # Before any restore: the paused schedules are `done` (already paused), not acted on again.
    targets = cycle(daemon)
    for target, name in (("vertex", VX_ORPHAN), ("kfp", KFP_ORPHAN), ("k8s", K8S_ORPHAN)):
        assert candidate(targets, target, name)["stage"] == "done"

    dry = next(r for r in history(setup) if r["dry_run"] and r["live_name"] == KFP_ORPHAN)
    assert "dry run" in refused(setup, dry["id"])

    restores = {}
    for name, action in acted.items():
        done = restore(setup, action["audit_id"])
        assert done["action"] == "resume"
        assert_linked(setup, action["audit_id"], done, "resume")
        restores[name] = done
    # The same objects, enabled again: no new ones.
    [vx_after] = vertex_named(emulators, VX_ORPHAN)
    assert vx_after.name == vx_before.name == restores[VX_ORPHAN]["native_id"]
    assert vx_after.state == Schedule.State.ACTIVE
    [kfp_after] = kfp_named(emulators, KFP_ORPHAN)
    assert kfp_after["recurring_run_id"] == kfp_before["recurring_run_id"] == restores[KFP_ORPHAN]["native_id"]
    assert kfp_after["status"] == "ENABLED"
    assert cron_job(emulators, K8S_ORPHAN)["spec"]["suspend"] is False  # type: ignore[index]
    assert restores[K8S_ORPHAN]["native_id"] == f"zenml/{K8S_ORPHAN}"

    for action in acted.values():
        assert "already restored" in refused(setup, action["audit_id"])

    assert_never_acted_on_again(setup, daemon, emulators, {
        ("vertex", VX_ORPHAN): restores[VX_ORPHAN]["id"], ("kfp", KFP_ORPHAN): restores[KFP_ORPHAN]["id"],
        ("k8s", K8S_ORPHAN): restores[K8S_ORPHAN]["id"],
    })
    assert [s.state for s in vertex_named(emulators, VX_ORPHAN)] == [Schedule.State.ACTIVE]
    assert [r["status"] for r in kfp_named(emulators, KFP_ORPHAN)] == ["ENABLED"]
    assert cron_job(emulators, K8S_ORPHAN)["spec"]["suspend"] is False  # type: ignore[index]
