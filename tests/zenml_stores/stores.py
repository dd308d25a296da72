"""The committed ZenML store files, and a run-independent view of a registry snapshot.

For tests and the sandbox: `store_file("0.98.0")` is a SQLite file written by real
ZenML 0.98.0; `manifest()` its ids; `comparable()` a snapshot without the values
that differ between two runs of populate.py (ids, created/updated, archive suffixes).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from reconciler.model import RegistrySnapshot

FILES = Path(__file__).resolve().parent / "files"
LATEST = "0.98.0"
# Oldest first. 0.93+ archive deleted schedules; 0.80+ have projects instead of workspaces.
VERSIONS = ("0.75.0", "0.91.2", "0.98.0")
ARCHIVE_SUFFIX = re.compile(r"_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def archives(version: str) -> bool:
    """Whether this ZenML version keeps deleted schedules as archived rows (0.93.1+)."""
    return version_tuple(version) >= (0, 93, 1)


def store_file(version: str = LATEST) -> Path:
    return FILES / f"zenml-{version}.db"


def manifest(version: str = LATEST) -> dict[str, Any]:
    return json.loads((FILES / f"zenml-{version}.json").read_text())


def comparable(snapshot: RegistrySnapshot) -> dict[str, Any]:
    """What must be equal between two stores written from the same scenario by the same ZenML."""
    component_names = {c.id: c.name for c in snapshot.components}
    schedules = []
    for s in snapshot.schedules:
        schedules.append((
            s.project, s.original_name, s.archived, bool(ARCHIVE_SUFFIX.search(s.name)) if s.archived else s.name,
            s.pipeline, component_names.get(s.orchestrator_id) if s.orchestrator_id else None,
            s.active, s.cron_expression, s.interval_seconds, s.start_time, s.end_time,
            s.run_once_start_time, s.catchup, json.dumps(dict(s.metadata), sort_keys=True),
        ))
    components = sorted(
        (c.name, c.flavor, json.dumps(dict(c.configuration), sort_keys=True)) for c in snapshot.components
    )
    return {"schedules": sorted(schedules, key=repr), "components": components, "pipelines": sorted(snapshot.pipelines)}
