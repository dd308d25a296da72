"""Print a ZenML store's schedules and orchestrators as ZenML itself reads them (JSON on stdout).

Run inside the ZenML 0.98 venv with ZENML_STORE_URL set (on a copy: ZenML may write
on connect). The tests compare this with what ZenmlSqlRegistry reads from the same
file, so the reconciler's decoding is checked against ZenML's own models.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any

from zenml.client import Client
from zenml.enums import StackComponentType
from zenml.models import ComponentFilter, PipelineFilter, ProjectFilter, ScheduleFilter


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


def main() -> None:
    store = Client().zen_store
    projects = {p.id: p.name for p in store.list_projects(ProjectFilter(size=1000)).items}
    schedules: list[dict[str, Any]] = []
    pipelines: list[str] = []
    for project_id, project in projects.items():
        page = store.list_schedules(ScheduleFilter(project=project_id, is_archived=None, size=1000), hydrate=True)
        for s in page.items:
            schedules.append({
                "id": s.id.hex, "name": s.name, "project": project, "active": s.active,
                "archived": s.is_archived, "cron_expression": s.cron_expression,
                "interval_seconds": s.interval_second.total_seconds() if s.interval_second else None,
                "start_time": iso(s.start_time), "end_time": iso(s.end_time),
                "run_once_start_time": iso(s.run_once_start_time), "catchup": s.catchup,
                "orchestrator_id": s.orchestrator_id.hex if s.orchestrator_id else None,
                "pipeline_id": s.pipeline_id.hex if s.pipeline_id else None,
                "metadata": s.run_metadata, "created": iso(s.created), "updated": iso(s.updated),
            })
        pipelines += [p.name for p in store.list_pipelines(PipelineFilter(project=project_id, size=1000)).items]
    components = [
        {"id": c.id.hex, "name": c.name, "flavor": c.flavor_name, "configuration": c.configuration}
        for c in store.list_stack_components(
            ComponentFilter(type=StackComponentType.ORCHESTRATOR, size=1000), hydrate=True
        ).items
    ]
    json.dump({"schedules": schedules, "components": components, "pipelines": sorted(set(pipelines))}, sys.stdout)


if __name__ == "__main__":
    main()
