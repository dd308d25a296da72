"""The one scenario every test fixture is built from, as plain data.

`tests/zenml_stores/populate.py` writes it into real ZenML stores (the files
under `tests/zenml_stores/files/`); the sandbox, the Airflow DAG generator of the
tests and the emulator seeds read the `live` entries and `UNMANAGED` to build
the orchestrator side. It imports only the standard library, so ZenML's own
venv can load it by path.

Conventions:
- Crons are ZenML's 5-field UTC crons. The KFP side shows 6 fields (seconds
  first: `0 ` + cron); seed generators convert, the scenario does not.
- `live` is what the orchestrator should list for that schedule; an empty
  tuple means nothing live. `drift` is the drift kinds the reconciler must
  report for the schedule on its target (empty = in sync or not expected).
- `archived=True`: the schedule is deleted through ZenML. From ZenML 0.93 the
  row stays as a tombstone renamed `<name>_<uuid4>`; before 0.93 the row is gone.
- Live names of `<pipeline>_<32 hex>` flavors (Airflow dag_id, KFP display
  name) use the fixed hex below so DAG files and seeds are reproducible.
- Component ids and schedule ids are random uuid4s chosen by ZenML; each
  store file has a `files/zenml-<version>.json` manifest listing them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=timezone.utc)


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    flavor: str
    configuration: dict[str, Any]
    # The target type that reads this component's schedules in the sandbox; None for a
    # flavor the reconciler has no target for (sagemaker) or does not know (acme_custom).
    target_type: str | None
    # Deleted through ZenML after its schedules were created: their orchestrator_id is NULL.
    deleted: bool = False


@dataclass(frozen=True)
class LiveSeed:
    """One schedule the orchestrator lists (a DAG, a Vertex Schedule, a recurring run, a CronJob)."""

    name: str  # dag_id / Vertex display_name / KFP display_name / CronJob name
    cron: str | None = None  # 5-field UTC cron
    interval_seconds: float | None = None
    enabled: bool = True  # False: paused (Airflow), PAUSED (Vertex), disabled (KFP), suspended (k8s)
    file_present: bool = True  # Airflow only: False = the DAG file is gone, the DAG is stale
    group: str | None = None  # KFP experiment name (ZenML uses the pipeline name)
    start_time: datetime | None = None
    end_time: datetime | None = None


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    project: str
    pipeline: str
    component: str  # ComponentSpec.name
    intent: str  # the drift this schedule exists to produce; see `drift`
    cron: str | None = None
    interval_seconds: float | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    run_once_start_time: datetime | None = None
    active: bool = True
    archived: bool = False  # deleted through ZenML (see the module doc)
    catchup: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)  # schedule run metadata
    live: tuple[LiveSeed, ...] = ()
    drift: tuple[str, ...] = ()  # expected drift kinds on the target


@dataclass(frozen=True)
class UnmanagedSeed:
    """A live schedule ZenML knows nothing of: counted as unmanaged, never touched."""

    target_type: str
    live: LiveSeed


PROJECTS: tuple[str, ...] = ("default", "analytics")  # workspaces before ZenML 0.80

COMPONENTS: tuple[ComponentSpec, ...] = (
    ComponentSpec("airflow-orchestrator", "airflow", {}, "airflow"),
    ComponentSpec("vertex-orchestrator", "vertex", {"project": "demo-project", "location": "us-central1"}, "vertex"),
    ComponentSpec(
        "kfp-orchestrator",
        "kubeflow",
        {"kubeflow_hostname": "https://kfp.example.com/pipeline", "kubeflow_namespace": "kubeflow"},
        "kubeflow",
    ),
    ComponentSpec("k8s-orchestrator", "kubernetes", {"kubernetes_namespace": "zenml"}, "kubernetes"),
    # SageMaker's config requires an execution role; any ARN does, nothing is called.
    ComponentSpec(
        "sagemaker-orchestrator", "sagemaker",
        {"execution_role": "arn:aws:iam::123456789012:role/zenml-sagemaker"}, None,
    ),
    ComponentSpec("acme-orchestrator", "acme_custom", {}, None),
    ComponentSpec("doomed-orchestrator", "airflow", {}, None, deleted=True),
)

# The fixed `<32 hex>` of each `<pipeline>_<32 hex>` live name (Airflow dag_id, KFP display name).
RUN_HEX: dict[str, str] = {
    "etl": "9758551eb547b8730013e8a033369ed2",
    "train": "63fcb4d044b0f7aa364256236285dc18",
    "report": "042008d634daa7ad1d6ae903bd709a5f",
    "score": "0e7a13d83ec3ae165e215a1609f5f819",
    "cleanup": "d51607f06930f87c7ac52243271c0d82",
    "legacy": "6d916fbf247c3abe0abf911cbf705382",
    "ingest": "fa1671865bcbf22dcaf01286db3077a1",
    "backfill": "2c3f99e951e8585734b8533d4be718e2",
    "campaign": "a968234808ecfc4e403d6208e513ca2b",
    "kfp_etl": "20b900530417960008a5225cc9986fd6",
    "kfp_train": "60d1f3bb967cabfdbe728db8ce05103c",
    "kfp_poll": "8249e04f8a130aec442d3e7718248a33",
    "kfp_old": "4b050cea51302a58a018ad79b58d7749",
}


def run_name(pipeline: str) -> str:
    """`<pipeline>_<32 hex>`: the live name ZenML gives Airflow DAGs and KFP recurring runs."""
    return f"{pipeline}_{RUN_HEX[pipeline]}"


INGEST_START = utc(2024, 1, 1)
FUTURE_END = utc(2030, 12, 31, 23, 59)

AIRFLOW_SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec(
        "etl_daily", "default", "etl", "airflow-orchestrator", "in_sync", cron="0 9 * * *",
        live=(LiveSeed(run_name("etl"), cron="0 9 * * *"),),
    ),
    ScheduleSpec(
        "train_hourly", "default", "train", "airflow-orchestrator", "zenml_only: no DAG",
        cron="0 * * * *", drift=("zenml_only",),
    ),
    ScheduleSpec(
        "report_weekly", "default", "report", "airflow-orchestrator",
        "spec_mismatch: the DAG runs 0 7 * * 1", cron="0 6 * * 1",
        live=(LiveSeed(run_name("report"), cron="0 7 * * 1"),), drift=("spec_mismatch",),
    ),
    ScheduleSpec(
        "score_nightly", "default", "score", "airflow-orchestrator",
        "state_mismatch: inactive in ZenML, the DAG is unpaused", cron="30 2 * * *", active=False,
        live=(LiveSeed(run_name("score"), cron="30 2 * * *", enabled=True),), drift=("state_mismatch",),
    ),
    ScheduleSpec(
        "cleanup_old", "default", "cleanup", "airflow-orchestrator",
        "orchestrator_only: deleted in ZenML, the DAG file remains (unpaused)", cron="0 3 * * *",
        archived=True, live=(LiveSeed(run_name("cleanup"), cron="0 3 * * *"),), drift=("orchestrator_only",),
    ),
    ScheduleSpec(
        "legacy_sync", "default", "legacy", "airflow-orchestrator",
        "orchestrator_only: deleted in ZenML, the DAG file is gone (stale DAG)", cron="0 4 * * *",
        archived=True, live=(LiveSeed(run_name("legacy"), cron="0 4 * * *", file_present=False),),
        drift=("orchestrator_only",),
    ),
    ScheduleSpec(
        "ingest_every_6h", "default", "ingest", "airflow-orchestrator", "in_sync: a 6 h interval",
        interval_seconds=6 * 3600.0, start_time=INGEST_START,
        live=(LiveSeed(run_name("ingest"), interval_seconds=6 * 3600.0, start_time=INGEST_START),),
    ),
    ScheduleSpec(
        "backfill_once", "default", "backfill", "airflow-orchestrator",
        "ended: a run-once in the past; not expected, nothing live",
        run_once_start_time=utc(2024, 3, 1, 12),
    ),
    ScheduleSpec(
        "campaign_2024", "default", "campaign", "airflow-orchestrator",
        "ended: end_time in the past; not expected, nothing live",
        cron="0 12 * * *", start_time=utc(2024, 1, 1), end_time=utc(2024, 12, 31, 23, 59),
    ),
)

VERTEX_SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec(
        "vx_in_sync", "default", "vx_train", "vertex-orchestrator", "in_sync (with a future end_time)",
        cron="0 3 * * *", end_time=FUTURE_END,
        live=(LiveSeed("vx_in_sync", cron="0 3 * * *", end_time=FUTURE_END),),
    ),
    ScheduleSpec(
        "vx_missing", "default", "vx_eval", "vertex-orchestrator", "zenml_only: no live schedule",
        cron="0 2 * * *", drift=("zenml_only",),
    ),
    ScheduleSpec(
        "vx_cron_drift", "default", "vx_features", "vertex-orchestrator",
        "spec_mismatch: live cron is 0 5 * * *", cron="0 4 * * *",
        live=(LiveSeed("vx_cron_drift", cron="0 5 * * *"),), drift=("spec_mismatch",),
    ),
    ScheduleSpec(
        "vx_paused_in_zenml", "default", "vx_monitor", "vertex-orchestrator",
        "state_mismatch: inactive in ZenML, live ACTIVE", cron="0 8 * * *", active=False,
        live=(LiveSeed("vx_paused_in_zenml", cron="0 8 * * *", enabled=True),), drift=("state_mismatch",),
    ),
    ScheduleSpec(
        "vx_deleted", "default", "vx_legacy", "vertex-orchestrator",
        "orchestrator_only: deleted in ZenML, live remains ACTIVE", cron="0 9 * * *", archived=True,
        live=(LiveSeed("vx_deleted", cron="0 9 * * *"),), drift=("orchestrator_only",),
    ),
    ScheduleSpec(
        "vx_dup", "default", "vx_batch", "vertex-orchestrator",
        "duplicate: two live schedules with this display name and spec", cron="30 1 * * *",
        live=(LiveSeed("vx_dup", cron="30 1 * * *"), LiveSeed("vx_dup", cron="30 1 * * *")),
        drift=("duplicate",),
    ),
)

KFP_SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec(
        "kfp_nightly", "analytics", "kfp_etl", "kfp-orchestrator", "in_sync", cron="0 1 * * *",
        live=(LiveSeed(run_name("kfp_etl"), cron="0 1 * * *", group="kfp_etl"),),
    ),
    ScheduleSpec(
        "kfp_missing", "analytics", "kfp_train", "kfp-orchestrator", "zenml_only: no recurring run",
        cron="0 5 * * *", drift=("zenml_only",),
    ),
    ScheduleSpec(
        "kfp_interval", "analytics", "kfp_poll", "kfp-orchestrator", "in_sync: a 900 s interval",
        interval_seconds=900.0, start_time=INGEST_START,
        live=(LiveSeed(run_name("kfp_poll"), interval_seconds=900.0, group="kfp_poll", start_time=INGEST_START),),
    ),
    ScheduleSpec(
        "kfp_gone", "analytics", "kfp_old", "kfp-orchestrator",
        "orchestrator_only: deleted in ZenML, the recurring run remains enabled", cron="0 6 * * *",
        archived=True, live=(LiveSeed(run_name("kfp_old"), cron="0 6 * * *", group="kfp_old"),),
        drift=("orchestrator_only",),
    ),
)

KUBERNETES_SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec(
        "k8s_nightly", "analytics", "k8s_batch", "k8s-orchestrator",
        "in_sync: bound by the cron_job_name metadata", cron="15 0 * * *",
        metadata={"cron_job_name": "zenml-0a1b2c3d-k8s-batch"},
        live=(LiveSeed("zenml-0a1b2c3d-k8s-batch", cron="15 0 * * *"),),
    ),
    ScheduleSpec(
        "k8s_removed", "analytics", "k8s_export", "k8s-orchestrator",
        "orchestrator_only: deleted in ZenML, the CronJob remains", cron="45 0 * * *", archived=True,
        metadata={"cron_job_name": "zenml-4e5f6a7b-k8s-export"},
        live=(LiveSeed("zenml-4e5f6a7b-k8s-export", cron="45 0 * * *"),), drift=("orchestrator_only",),
    ),
)

OTHER_SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec(
        "sm_weekly", "default", "sm_train", "sagemaker-orchestrator",
        "no target: a known flavor the reconciler does not watch", cron="0 8 * * 0",
    ),
    ScheduleSpec(
        "acme_daily", "default", "acme_job", "acme-orchestrator",
        "no target: an unknown flavor", cron="0 10 * * *",
    ),
    ScheduleSpec(
        "doomed_daily", "default", "doomed_etl", "doomed-orchestrator",
        "no target: its component was deleted, orchestrator_id is NULL", cron="0 11 * * *",
    ),
    ScheduleSpec(
        "doomed_interval", "default", "doomed_poll", "doomed-orchestrator",
        "no target: its component was deleted, orchestrator_id is NULL",
        interval_seconds=3600.0, start_time=INGEST_START,
    ),
)

SCHEDULES: tuple[ScheduleSpec, ...] = (
    AIRFLOW_SCHEDULES + VERTEX_SCHEDULES + KFP_SCHEDULES + KUBERNETES_SCHEDULES + OTHER_SCHEDULES
)

UNMANAGED: tuple[UnmanagedSeed, ...] = (
    UnmanagedSeed("airflow", LiveSeed("hand_written_dag", cron="0 0 * * *")),
    UnmanagedSeed("vertex", LiveSeed("someone_elses_schedule", cron="0 12 * * *")),
)

PIPELINES: tuple[str, ...] = tuple(dict.fromkeys(s.pipeline for s in SCHEDULES))


def component(name: str) -> ComponentSpec:
    return next(c for c in COMPONENTS if c.name == name)


def schedules_for(target_type: str) -> tuple[ScheduleSpec, ...]:
    """The schedules whose component feeds a target of this type (deleted components feed none)."""
    return tuple(
        s for s in SCHEDULES
        if component(s.component).target_type == target_type and not component(s.component).deleted
    )
