"""Writes the Airflow side of the test scenario into a DAGs folder.

Each managed DAG is a `<dag_id>.zip` holding `dag.py` (zenml_dag.py) and a
`config.json`, which is how ZenML's Airflow orchestrator ships a pipeline; the
dag_ids are `<pipeline>_<32 hex>` from providers/emulators/scenario.py. The
unmanaged `hand_written_dag.py` is copied as is. Two scratch DAGs (plain .py
files) let the tests pause, resume and delete without touching the scenario's.

`python -m tests.airflow_dags.generate DIR` writes the folder by hand.
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from providers.emulators import scenario

HERE = Path(__file__).resolve().parent
START_DATE = "2024-01-01T00:00:00+00:00"

# Unmanaged DAGs the tests change: one is paused and resumed, the other's file is
# removed with the scenario's gone ones so that it turns stale and can be deleted.
SCRATCH_TOGGLE = "scratch_toggle_dag"
SCRATCH_DELETE = "scratch_delete_dag"


@dataclass(frozen=True)
class DagSeed:
    dag_id: str
    cron: str | None
    interval_seconds: float | None
    paused: bool
    file_present: bool  # False: the file is written, parsed, then removed (a stale DAG)
    zenml: bool  # shipped as a ZenML DAG zip


def scenario_dags() -> list[DagSeed]:
    """Every DAG the Airflow server should know, from the scenario's live seeds."""
    seeds = [
        DagSeed(live.name, live.cron, live.interval_seconds, not live.enabled, live.file_present, True)
        for spec in scenario.schedules_for("airflow")
        for live in spec.live
    ]
    seeds += [
        DagSeed(u.live.name, u.live.cron, u.live.interval_seconds, not u.live.enabled, u.live.file_present, False)
        for u in scenario.UNMANAGED
        if u.target_type == "airflow"
    ]
    seeds.append(DagSeed(SCRATCH_TOGGLE, "15 5 * * *", None, False, True, False))
    seeds.append(DagSeed(SCRATCH_DELETE, "45 5 * * *", None, False, False, False))
    return seeds


def dag_file(folder: Path, seed: DagSeed) -> Path:
    return folder / (f"{seed.dag_id}.zip" if seed.zenml else f"{seed.dag_id}.py")


def write_all(folder: Path) -> list[DagSeed]:
    """Write every DAG file, including those that later go away."""
    folder.mkdir(parents=True, exist_ok=True)
    seeds = scenario_dags()
    for seed in seeds:
        if seed.zenml:
            write_zenml_zip(folder, seed)
        elif seed.dag_id == "hand_written_dag":
            shutil.copy(HERE / "hand_written_dag.py", folder / "hand_written_dag.py")
        else:
            write_plain(folder, seed)
    return seeds


def remove_gone(folder: Path, seeds: list[DagSeed]) -> list[str]:
    """Delete the files of the DAGs meant to be stale; returns their dag_ids."""
    gone = [s for s in seeds if not s.file_present]
    for seed in gone:
        dag_file(folder, seed).unlink(missing_ok=True)
    return [s.dag_id for s in gone]


def write_zenml_zip(folder: Path, seed: DagSeed) -> Path:
    # The same keys as ZenML's DagConfiguration; an interval goes in as seconds,
    # which ZenML's pydantic model turns into a timedelta (zenml_dag.py does too).
    config = {
        "id": seed.dag_id,
        "tasks": [{"id": "step_1"}, {"id": "step_2"}],
        "schedule": seed.cron if seed.cron is not None else seed.interval_seconds,
        "start_date": START_DATE,
        "end_date": None,
        "catchup": False,
        "tags": [],
        "is_paused_upon_creation": seed.paused,
    }
    path = dag_file(folder, seed)
    tmp = path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, mode="w") as archive:
        archive.write(HERE / "zenml_dag.py", arcname="dag.py")
        archive.writestr("config.json", json.dumps(config))
    tmp.replace(path)  # never let the DAG processor see a half-written zip
    return path


def write_plain(folder: Path, seed: DagSeed) -> Path:
    text = (HERE / "hand_written_dag.py").read_text()
    text = text.replace('"hand_written_dag"', json.dumps(seed.dag_id))
    text = text.replace('"0 0 * * *"', json.dumps(seed.cron))
    text = text.replace("is_paused_upon_creation=False", f"is_paused_upon_creation={seed.paused}")
    path = dag_file(folder, seed)
    path.write_text(text)
    return path


if __name__ == "__main__":
    for written in write_all(Path(sys.argv[1])):
        print(written.dag_id)
