"""A ZenML registry of N schedules and the live seeds of three targets that match it.

The registry is a copy of the store file real ZenML 0.98.0 wrote
(tests/zenml_stores/files/zenml-0.98.0.db): its own schedule rows are removed and
N rows are bulk-inserted in ZenML's schema, a third each on the file's
`vertex-orchestrator`, `kfp-orchestrator` and `k8s-orchestrator` components,
five schedules per pipeline. Kubernetes schedules carry the `cron_job_name` run
metadata ZenML's Kubernetes orchestrator stores (all but every tenth, which the
naming rule must bind).

The live seeds name things the way ZenML does (DESIGN.md §3): Vertex display
name = schedule name; KFP `<pipeline>-<32 hex>` (dashed) inside an experiment
named after the pipeline; Kubernetes `<8 hex>-<pipeline>` with the
`zenml.io/orchestrator` annotation. Most pairs are in sync; a few percent of each
drift kind are planted and counted in the manifest, so a run can check the
daemon found exactly them.

Each target holds N live schedules (issue 3: "three emulated targets with N live
schedules each"), while the registry holds N in all. A ZenML schedule runs on
exactly one orchestrator, so about N/3 of a target's live schedules are ZenML's;
the rest is other teams' schedules in the same project / namespace (unmanaged:
listed, parsed and checked for ZenML's marks like any other, never drift). They
are shaped and sized like ZenML's own (a compiled pipeline spec, a full pod
template), only without ZenML's entrypoint, annotation or naming.

    python -m benchmarks.make_store --n 10000 --out /tmp/bench-10000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from providers.emulators import kubeflow as kfp_emulator
from providers.emulators import kubernetes as k8s_emulator

ROOT = Path(__file__).resolve().parent.parent
SOURCE_STORE = ROOT / "tests" / "zenml_stores" / "files" / "zenml-0.98.0.db"
SOURCE_MANIFEST = ROOT / "tests" / "zenml_stores" / "files" / "zenml-0.98.0.json"

TARGETS = ("vertex", "kubeflow", "kubernetes")
COMPONENT_NAMES = {"vertex": "vertex-orchestrator", "kubeflow": "kfp-orchestrator", "kubernetes": "k8s-orchestrator"}
PROJECT = "default"
SHORT = {"vertex": "vtx", "kubeflow": "kfp", "kubernetes": "k8s"}
VERTEX_PROJECT, VERTEX_LOCATION = "demo-project", "us-central1"  # the component's configuration
KFP_NAMESPACE = "kubeflow"
K8S_NAMESPACE = "zenml"
SCHEDULES_PER_PIPELINE = 5
# One in every `period` registry rows of a target gets this drift; the offsets keep them apart.
DRIFT_PERIOD = 50  # 2 % of each kind
DRIFT_OFFSETS = {"zenml_only": 7, "spec_mismatch": 19, "state_mismatch": 31}
ORPHAN_OFFSET, DUPLICATE_OFFSET, UNMANAGED_OFFSET = 43, 11, 23  # extra live objects, 2 % each
BASE_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass
class TargetPlan:
    """What one target's seed holds and which drift the daemon should find there."""

    registry: int = 0
    live: int = 0
    drift: dict[str, int] = field(default_factory=lambda: {k: 0 for k in (
        "zenml_only", "orchestrator_only", "spec_mismatch", "state_mismatch", "duplicate")})
    unmanaged: int = 0


def hex_of(*parts: object, length: int = 32) -> str:
    return hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=16).hexdigest()[:length]


def cron_of(k: int) -> str:
    """Distinct within a pipeline's five schedules, so the naming rule's spec tie-break decides."""
    return f"{k % 60} {(k // 60) % 24} * * *"


def other_cron(k: int) -> str:
    return f"{k % 60} {(k // 60 + 7) % 24} * * *"


def kfp_cron(cron: str) -> str:
    return f"0 {cron}"  # KFP's six fields, seconds first


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def sql_time(value: datetime) -> str:
    return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def build(n: int, out: Path) -> dict[str, Any]:
    """Write out/store.db, out/{vertex,kubeflow,kubernetes}.json and out/manifest.json."""
    out.mkdir(parents=True, exist_ok=True)
    store = out / "store.db"
    shutil.copyfile(SOURCE_STORE, store)
    manifest_in = json.loads(SOURCE_MANIFEST.read_text(encoding="utf-8"))
    components = {t: manifest_in["components"][COMPONENT_NAMES[t]] for t in TARGETS}
    project_id = manifest_in["projects"][PROJECT]

    plans = {t: TargetPlan() for t in TARGETS}
    pipelines: list[tuple[str, ...]] = []
    schedules: list[tuple[Any, ...]] = []
    metadata: list[tuple[Any, ...]] = []
    metadata_links: list[tuple[Any, ...]] = []
    vertex: list[dict[str, Any]] = []
    kfp_runs: list[dict[str, Any]] = []
    kfp_experiments: dict[str, dict[str, Any]] = {}
    cron_jobs: list[dict[str, Any]] = []

    with sqlite3.connect(store) as db:
        user_id = db.execute("SELECT id FROM user ORDER BY created LIMIT 1").fetchone()[0]
        # The file's own rows would be drift nobody planted: start from an empty registry.
        db.execute("DELETE FROM run_metadata WHERE id IN (SELECT run_metadata_id FROM run_metadata_resource "
                   "WHERE resource_type = 'schedule')")
        db.execute("DELETE FROM run_metadata_resource WHERE resource_type = 'schedule'")
        db.execute("DELETE FROM schedule")

        for i in range(n):
            target = TARGETS[i % 3]
            k = i // 3  # index within the target
            plan = plans[target]
            plan.registry += 1
            pipeline = f"{SHORT[target]}_pipe_{k // SCHEDULES_PER_PIPELINE:06d}"
            pipeline_id = hex_of("pipeline", pipeline)
            if k % SCHEDULES_PER_PIPELINE == 0:
                created = sql_time(BASE_TIME + timedelta(seconds=i))
                pipelines.append((pipeline_id, created, created, pipeline, None, project_id, user_id, 0))
            name = f"{SHORT[target]}_sched_{k:07d}"
            schedule_id = hex_of("schedule", name)
            created_at = BASE_TIME + timedelta(seconds=i)
            cron = cron_of(k)
            schedules.append((schedule_id, sql_time(created_at), sql_time(created_at), name, project_id, user_id,
                              pipeline_id, components[target], 1, cron, None, None, None, 0, None, 0))

            drift = next((kind for kind, offset in DRIFT_OFFSETS.items() if k % DRIFT_PERIOD == offset), None)
            if drift is not None:
                plan.drift[drift] += 1
            live_cron = other_cron(k) if drift == "spec_mismatch" else cron
            enabled = drift != "state_mismatch"
            live_created = created_at + timedelta(seconds=10)
            hex8 = hex_of("cronjob", name, length=8)
            cron_job_name = k8s_emulator.sanitize_label(f"{hex8}-{pipeline}")
            if target == "kubernetes" and k % 10 != 0:
                metadata_id = hex_of("metadata", name)
                metadata.append((metadata_id, sql_time(created_at), sql_time(created_at), components[target],
                                 user_id, project_id, "cron_job_name", json.dumps(cron_job_name), "str", None))
                metadata_links.append((hex_of("link", name), schedule_id, "schedule", metadata_id))
            if drift == "zenml_only":
                continue

            copies = [live_cron]
            if k % DRIFT_PERIOD == DUPLICATE_OFFSET:
                copies.append(cron)  # a second live schedule with the same spec: a duplicate
                plan.drift["duplicate"] += 1
            for copy_number, copy_cron in enumerate(copies):
                plan.live += 1
                when = live_created + timedelta(seconds=copy_number)
                if target == "vertex":
                    vertex.append({"display_name": name, "cron": copy_cron, "pipeline_name": pipeline,
                                   "state": "ACTIVE" if enabled else "PAUSED", "create_time": iso(when)})
                elif target == "kubeflow":
                    experiment = kfp_experiments.setdefault(pipeline, _experiment(pipeline))
                    kfp_runs.append(_kfp_run(kfp_emulator.zenml_display_name(pipeline, hex_of("run", name, copy_number)),
                                             experiment["experiment_id"], copy_cron, enabled, when))
                else:
                    job_name = cron_job_name if copy_number == 0 else k8s_emulator.sanitize_label(
                        f"{hex_of('dup', name, length=8)}-{pipeline}")
                    cron_jobs.append(_cron_job(pipeline, components[target], copy_cron, job_name, enabled, when, project_id))

            if k % DRIFT_PERIOD == ORPHAN_OFFSET:
                # ZenML made it, its schedule is gone from the registry: an orphan.
                plan.live += 1
                plan.drift["orchestrator_only"] += 1
                gone = f"{SHORT[target]}_gone_{k:07d}"
                gone_pipeline = f"{SHORT[target]}_gone_pipe_{k:07d}"
                if target == "vertex":
                    vertex.append({"display_name": gone, "cron": cron, "pipeline_name": gone_pipeline,
                                   "create_time": iso(live_created)})
                elif target == "kubeflow":
                    experiment = kfp_experiments.setdefault(gone_pipeline, _experiment(gone_pipeline))
                    kfp_runs.append(_kfp_run(kfp_emulator.zenml_display_name(gone_pipeline, hex_of("gone", name)),
                                             experiment["experiment_id"], kfp_cron(cron), True, live_created,
                                             raw_cron=True))
                else:
                    cron_jobs.append(_cron_job(gone_pipeline, components[target], cron, k8s_emulator.sanitize_label(
                        f"{hex_of('gone', name, length=8)}-{gone_pipeline}"), True, live_created, project_id))
            if k % DRIFT_PERIOD == UNMANAGED_OFFSET:
                # Somebody else's schedule: counted, never drift.
                plan.live += 1
                plan.unmanaged += 1
                other = f"team-{k:07d}-report"
                if target == "vertex":
                    vertex.append({"display_name": other, "cron": cron, "zenml": False,
                                   "create_time": iso(live_created)})
                elif target == "kubeflow":
                    experiment = kfp_experiments.setdefault("Default", _experiment("Default"))
                    kfp_runs.append(kfp_emulator.seed_recurring_run(
                        other, experiment["experiment_id"], KFP_NAMESPACE, cron=kfp_cron(cron),
                        created_at=iso(live_created), pipeline_spec={"pipelineInfo": {"name": other}}))
                else:
                    cron_jobs.append(k8s_emulator.plain_cron_job(other, cron, K8S_NAMESPACE))

        for target in TARGETS:
            plan = plans[target]
            for j in range(max(0, n - plan.live)):
                # Other teams' schedules: the target's live set grows to N.
                plan.live += 1
                plan.unmanaged += 1
                created = iso(BASE_TIME + timedelta(seconds=j))
                other = f"team-{j % 97:02d}-job-{j:07d}"
                cron = cron_of(j)
                if target == "vertex":
                    vertex.append({"display_name": other, "cron": cron, "zenml": False, "create_time": created})
                elif target == "kubeflow":
                    experiment = kfp_experiments.setdefault("Default", _experiment("Default"))
                    kfp_runs.append(_team_kfp_run(other, experiment["experiment_id"], cron, created))
                else:
                    cron_jobs.append(_team_cron_job(other, cron, created))

        db.executemany("INSERT INTO pipeline (id, created, updated, name, description, project_id, user_id, "
                       "run_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", pipelines)
        db.executemany("INSERT INTO schedule (id, created, updated, name, project_id, user_id, pipeline_id, "
                       "orchestrator_id, active, cron_expression, start_time, end_time, interval_second, catchup, "
                       "run_once_start_time, is_archived) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       schedules)
        db.executemany('INSERT INTO run_metadata (id, created, updated, stack_component_id, user_id, project_id, '
                       '"key", value, type, publisher_step_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', metadata)
        db.executemany("INSERT INTO run_metadata_resource (id, resource_id, resource_type, run_metadata_id) "
                       "VALUES (?, ?, ?, ?)", metadata_links)
    with sqlite3.connect(store) as db:
        db.execute("VACUUM")

    _write(out / "vertex.json", {"project": VERTEX_PROJECT, "location": VERTEX_LOCATION, "schedules": vertex})
    _write(out / "kubeflow.json", {"experiments": list(kfp_experiments.values()), "recurring_runs": kfp_runs})
    _write(out / "kubernetes.json", {"cronjobs": cron_jobs})
    manifest = {
        "n": n,
        "store": str(store),
        "components": {t: COMPONENT_NAMES[t] for t in TARGETS},
        "kfp_experiments": len(kfp_experiments),
        "targets": {t: {"registry": p.registry, "live": p.live, "unmanaged": p.unmanaged, "drift": p.drift}
                    for t, p in plans.items()},
    }
    _write(out / "manifest.json", manifest)
    return manifest


def _experiment(pipeline: str) -> dict[str, Any]:
    return {"experiment_id": str(_uuid("experiment", pipeline)), "display_name": pipeline, "description": "",
            "created_at": iso(BASE_TIME), "namespace": KFP_NAMESPACE, "storage_state": "AVAILABLE"}


def _kfp_run(display_name: str, experiment_id: str, cron: str, enabled: bool, created: datetime,
             raw_cron: bool = False) -> dict[str, Any]:
    run = kfp_emulator.seed_recurring_run(
        display_name, experiment_id, KFP_NAMESPACE, cron=cron if raw_cron else kfp_cron(cron),
        enabled=enabled, created_at=iso(created))
    run["recurring_run_id"] = str(_uuid("run", display_name))  # reproducible across runs
    return run


def _cron_job(pipeline: str, component_id: str, cron: str, name: str, enabled: bool,
              created: datetime, project_id: str) -> dict[str, Any]:
    # ZenML labels each CronJob with its project's id (the emulator's default is a random one).
    return k8s_emulator.zenml_cron_job(pipeline, component_id, cron, K8S_NAMESPACE, name=name, suspend=not enabled,
                                       created=iso(created), project_id=project_id)


def _team_kfp_run(name: str, experiment_id: str, cron: str, created: str) -> dict[str, Any]:
    """Another team's recurring run: a compiled spec like ZenML's, running its own module."""
    spec = kfp_emulator.zenml_pipeline_spec(name)
    for executor in spec["deploymentSpec"]["executors"].values():
        executor["container"]["command"] = ["python", "-m", "team_jobs.run"]
        executor["container"]["args"] = ["--job", name]
    run = kfp_emulator.seed_recurring_run(name, experiment_id, KFP_NAMESPACE, cron=kfp_cron(cron),
                                          created_at=created, pipeline_spec=spec)
    run["recurring_run_id"] = str(_uuid("team-run", name))
    return run


def _team_cron_job(name: str, cron: str, created: str) -> dict[str, Any]:
    """Another team's CronJob: a pod template like ZenML's, without its annotation or entrypoint."""
    job = k8s_emulator.zenml_cron_job("team-jobs", hex_of("team-component", name), cron, K8S_NAMESPACE, name=name,
                                      created=created)
    job["metadata"].pop("annotations")
    job["metadata"]["labels"] = {"app": name, "team": name.split("-job-")[0]}
    template = job["spec"]["jobTemplate"]
    template["metadata"] = {"name": name, "labels": dict(job["metadata"]["labels"])}
    template["spec"]["template"]["metadata"] = {"labels": dict(job["metadata"]["labels"])}
    container = template["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python", "-m", "team_jobs.run"]
    container["args"] = ["--job", name]
    return job


def _uuid(*parts: object) -> str:
    value = hex_of(*parts)
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.make_store", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, required=True, help="registry schedules (a third per target); each target then holds N live")
    parser.add_argument("--out", type=Path, required=True, help="directory for store.db, the seeds and manifest.json")
    args = parser.parse_args(argv)
    manifest = build(args.n, args.out)
    print(json.dumps(manifest["targets"], indent=1))


if __name__ == "__main__":
    main()
