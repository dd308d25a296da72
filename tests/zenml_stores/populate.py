"""Write the scenario into a ZenML store with ZenML's own code.

Run inside a venv that has ZenML installed (any version in generate.py's list):

    ZENML_STORE_URL=sqlite:////tmp/x/zenml.db ZENML_CONFIG_PATH=/tmp/x/cfg \
        .cache/venvs/zenml/bin/python tests/zenml_stores/populate.py [manifest.json]

ZenML creates and migrates the store on first connect. Everything below goes
through ZenML's Client or zen_store, as a user's `zenml` commands and pipeline
runs would; nothing here writes SQL. Deleting a schedule uses
`zen_store.delete_schedule(soft=True)` where the version has it (0.93+): that is
the call `Client.delete_schedule` makes after asking the orchestrator to delete
its side, which would need the orchestrator's SDK here. Older versions have only
the hard delete, so their deleted schedules are simply gone.

Writes a manifest (ZenML version, component and schedule ids, stored names) as
JSON to the path given, for the emulator seeds and the tests.
"""

from __future__ import annotations

import inspect
import json
import importlib.util
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID


def _load_scenario() -> ModuleType:
    """The scenario is product data (the sandbox seeds from it) and imports only the
    standard library, so ZenML's venv loads the one file by path. Putting its folder
    on sys.path instead would shadow `kubernetes` with our emulator module."""
    path = Path(__file__).resolve().parents[2] / "providers" / "emulators" / "scenario.py"
    spec = importlib.util.spec_from_file_location("scenario", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scenario"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


scenario = _load_scenario()

import zenml  # noqa: E402
from zenml.client import Client  # noqa: E402
from zenml.enums import StackComponentType  # noqa: E402
from zenml.models import ComponentRequest, FlavorRequest, PipelineRequest, ScheduleRequest  # noqa: E402

ORCHESTRATOR = StackComponentType.ORCHESTRATOR


def scoped(model: Any, scope_id: UUID, user_id: UUID, **fields: Any) -> Any:
    """Build a request for this ZenML version: project-scoped from 0.80, workspace-scoped before."""
    names = model.model_fields
    if "project" in names:
        fields["project"] = scope_id
    elif "workspace" in names:
        fields["workspace"] = scope_id
    if "user" in names:
        fields["user"] = user_id
    return model(**fields)


def scope_ids(client: Client) -> dict[str, UUID]:
    """Create the extra project (workspace before 0.80); return name -> id."""
    ids: dict[str, UUID] = {}
    for name in scenario.PROJECTS:
        if hasattr(client, "create_project"):
            if name == "default":
                ids[name] = client.get_project(name).id
            else:
                ids[name] = client.create_project(name=name, description=f"{name} pipelines").id
        else:
            if name == "default":
                ids[name] = client.get_workspace(name).id
            else:
                ids[name] = client.create_workspace(name=name, description=f"{name} pipelines").id
    return ids


def create_components(client: Client, default_scope: UUID, user_id: UUID) -> dict[str, UUID]:
    store = client.zen_store
    ids: dict[str, UUID] = {}
    for spec in scenario.COMPONENTS:
        if spec.flavor == "acme_custom":
            # A custom flavor, registered the way `zenml orchestrator flavor register` stores it;
            # its source is not importable here, as on a daemon's host.
            store.create_flavor(
                scoped(
                    FlavorRequest, default_scope, user_id,
                    name=spec.flavor, type=ORCHESTRATOR, config_schema={},
                    source="acme_orchestrators.flavors.AcmeOrchestratorFlavor",
                    integration="custom", is_custom=True,
                )
            )
            component = store.create_stack_component(
                scoped(
                    ComponentRequest, default_scope, user_id,
                    name=spec.name, type=ORCHESTRATOR, flavor=spec.flavor, configuration=dict(spec.configuration),
                )
            )
        else:
            component = client.create_stack_component(
                name=spec.name, flavor=spec.flavor, component_type=ORCHESTRATOR,
                configuration=dict(spec.configuration),
            )
        ids[spec.name] = component.id
    return ids


def activate(client: Client, project: str) -> None:
    if hasattr(client, "set_active_project"):
        client.set_active_project(project)
    else:
        client.set_active_workspace(project)


def publish_cron_job_name(client: Client, schedule_id: UUID, component_id: UUID, metadata: dict[str, Any]) -> None:
    """Schedule run metadata, as ZenML's Kubernetes orchestrator publishes its cron_job_name."""
    try:
        from zenml.orchestrators.publish_utils import publish_schedule_metadata
    except ImportError:
        publish_schedule_metadata = None
    if publish_schedule_metadata is not None:
        publish_schedule_metadata(schedule_id=schedule_id, schedule_metadata={component_id: metadata})
        return
    # Before publish_schedule_metadata existed: the same Client call it makes.
    from zenml.enums import MetadataResourceTypes
    from zenml.models import RunMetadataResource

    client.create_run_metadata(
        metadata=metadata,
        resources=[RunMetadataResource(id=schedule_id, type=MetadataResourceTypes.SCHEDULE)],
        stack_component_id=component_id,
    )


def main() -> None:
    manifest_path = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    client = Client()
    store = client.zen_store
    user_id = client.active_user.id
    scopes = scope_ids(client)
    components = create_components(client, scopes["default"], user_id)

    pipelines: dict[tuple[str, str], UUID] = {}
    for spec in scenario.SCHEDULES:
        key = (spec.project, spec.pipeline)
        if key not in pipelines:
            pipeline = store.create_pipeline(scoped(PipelineRequest, scopes[spec.project], user_id, name=spec.pipeline))
            pipelines[key] = pipeline.id

    schedules: dict[str, UUID] = {}
    for spec in scenario.SCHEDULES:
        interval = timedelta(seconds=spec.interval_seconds) if spec.interval_seconds is not None else None
        schedule = store.create_schedule(
            scoped(
                ScheduleRequest, scopes[spec.project], user_id,
                name=spec.name, active=spec.active, cron_expression=spec.cron,
                start_time=spec.start_time, end_time=spec.end_time, interval_second=interval,
                catchup=spec.catchup, run_once_start_time=spec.run_once_start_time,
                orchestrator_id=components[spec.component], pipeline_id=pipelines[(spec.project, spec.pipeline)],
            )
        )
        schedules[spec.name] = schedule.id
        if spec.metadata:
            # The orchestrator publishes from a run in the schedule's project: make it active.
            activate(client, spec.project)
            publish_cron_job_name(client, schedule.id, components[spec.component], dict(spec.metadata))

    soft_delete = "soft" in inspect.signature(store.delete_schedule).parameters
    for spec in scenario.SCHEDULES:
        if spec.archived:
            if soft_delete:
                store.delete_schedule(schedules[spec.name], soft=True)
            else:
                store.delete_schedule(schedules[spec.name])

    for spec in scenario.COMPONENTS:
        if spec.deleted:
            client.delete_stack_component(name_id_or_prefix=components[spec.name], component_type=ORCHESTRATOR)

    if manifest_path is not None:
        stored: dict[str, Any] = {}
        for spec in scenario.SCHEDULES:
            if spec.archived and not soft_delete:
                stored[spec.name] = None
                continue
            row = store.get_schedule(schedules[spec.name])
            stored[spec.name] = {"id": row.id.hex, "stored_name": row.name}
        manifest = {
            "zenml_version": zenml.__version__,
            "archiving": soft_delete,
            "projects": {name: scope.hex for name, scope in scopes.items()},
            "components": {name: cid.hex for name, cid in components.items()},
            "schedules": stored,
        }
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
