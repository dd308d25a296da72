"""ZenmlSqlRegistry on the committed store files written by real ZenML (0.75, 0.91, 0.98)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from providers.zenml_sql import ZenmlSqlRegistry
from reconciler.config import RegistryConfig
from reconciler.model import RegistryError
from reconciler.model import RegistrySnapshot
from providers.emulators import scenario
from tests.zenml_stores.stores import VERSIONS, archives, manifest, store_file

UUID4_SUFFIX = r"_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def read(path: Path, **config: object) -> RegistrySnapshot:
    registry = ZenmlSqlRegistry(RegistryConfig(url=f"sqlite:///{path}", **config))
    try:
        return registry.read()
    finally:
        registry.close()


@pytest.fixture(scope="module", params=VERSIONS)
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def snapshot(version: str) -> RegistrySnapshot:
    return read(store_file(version))


def expected_specs(version: str) -> list[scenario.ScheduleSpec]:
    # Before 0.93 ZenML had only the hard delete: a deleted schedule leaves no row.
    return [s for s in scenario.SCHEDULES if archives(version) or not s.archived]


def test_every_scenario_schedule_is_read(version: str, snapshot: RegistrySnapshot) -> None:
    got = sorted((s.project, s.original_name) for s in snapshot.schedules)
    assert got == sorted((s.project, s.name) for s in expected_specs(version))
    assert snapshot.schedule_count == sum(1 for s in scenario.SCHEDULES if not s.archived)


def test_schedule_fields_match_the_scenario(version: str, snapshot: RegistrySnapshot) -> None:
    ids = manifest(version)
    components = ids["components"]
    by_name = {s.original_name: s for s in snapshot.schedules}
    for spec in expected_specs(version):
        row = by_name[spec.name]
        assert row.id == ids["schedules"][spec.name]["id"]
        assert row.name == ids["schedules"][spec.name]["stored_name"]
        assert row.project == spec.project
        assert row.pipeline == spec.pipeline
        assert row.archived is spec.archived
        # Archiving also deactivates.
        assert row.active is (spec.active and not spec.archived)
        assert row.cron_expression == spec.cron
        assert row.interval_seconds == spec.interval_seconds
        assert row.start_time == spec.start_time
        assert row.end_time == spec.end_time
        assert row.run_once_start_time == spec.run_once_start_time
        assert row.catchup is spec.catchup
        assert dict(row.metadata) == spec.metadata
        if scenario.component(spec.component).deleted:
            assert row.orchestrator_id is None
        else:
            assert row.orchestrator_id == components[spec.component]


def test_archived_rows_keep_their_original_name(version: str, snapshot: RegistrySnapshot) -> None:
    archived = {s.original_name: s for s in snapshot.schedules if s.archived}
    if not archives(version):
        assert archived == {}
        return
    assert sorted(archived) == sorted(s.name for s in scenario.SCHEDULES if s.archived)
    for original, row in archived.items():
        assert re.fullmatch(re.escape(original) + UUID4_SUFFIX, row.name)
        assert row.active is False


def test_ids_are_32_lowercase_hex(snapshot: RegistrySnapshot) -> None:
    for s in snapshot.schedules:
        assert HEX32.match(s.id)
        assert s.orchestrator_id is None or HEX32.match(s.orchestrator_id)
    for c in snapshot.components:
        assert HEX32.match(c.id)


def test_times_are_utc_aware(snapshot: RegistrySnapshot) -> None:
    for s in snapshot.schedules:
        for value in (s.created, s.updated, s.start_time, s.end_time, s.run_once_start_time):
            assert value is None or value.utcoffset() == timezone.utc.utcoffset(None)


def test_interval_run_once_and_end_times(snapshot: RegistrySnapshot) -> None:
    by_name = {s.original_name: s for s in snapshot.schedules}
    assert by_name["ingest_every_6h"].interval_seconds == 21600.0
    assert by_name["ingest_every_6h"].start_time == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert by_name["ingest_every_6h"].cron_expression is None
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert by_name["backfill_once"].ended(now)
    assert by_name["campaign_2024"].ended(now)
    assert by_name["campaign_2024"].end_time == datetime(2024, 12, 31, 23, 59, tzinfo=timezone.utc)
    assert not by_name["vx_in_sync"].ended(now)
    assert by_name["vx_in_sync"].end_time == datetime(2030, 12, 31, 23, 59, tzinfo=timezone.utc)


def test_cron_job_name_metadata(version: str, snapshot: RegistrySnapshot) -> None:
    with_metadata = {s.original_name: dict(s.metadata) for s in snapshot.schedules if s.metadata}
    expected = {"k8s_nightly": {"cron_job_name": "zenml-0a1b2c3d-k8s-batch"}}
    if archives(version):
        expected["k8s_removed"] = {"cron_job_name": "zenml-4e5f6a7b-k8s-export"}
    assert with_metadata == expected


def test_deleted_component_leaves_null_orchestrators(snapshot: RegistrySnapshot) -> None:
    nulls = sorted(s.original_name for s in snapshot.schedules if s.orchestrator_id is None)
    assert nulls == ["doomed_daily", "doomed_interval"]
    assert "doomed-orchestrator" not in {c.name for c in snapshot.components}


def test_only_orchestrator_components(version: str, snapshot: RegistrySnapshot) -> None:
    expected = {c.name for c in scenario.COMPONENTS if not c.deleted} | {"default"}
    assert {c.name for c in snapshot.components} == expected
    defaults = [c for c in snapshot.components if c.name == "default"]
    # ZenML's default stack has an artifact store (and from 0.9x a deployer) named `default`
    # too; only its orchestrator is read. 0.75 made a default stack per workspace.
    assert len(defaults) == (2 if version == "0.75.0" else 1)
    assert {c.flavor for c in defaults} == {"local"}


def test_component_flavors_and_configuration(version: str, snapshot: RegistrySnapshot) -> None:
    by_name = {c.name: c for c in snapshot.components}
    for spec in scenario.COMPONENTS:
        if spec.deleted:
            continue
        got = by_name[spec.name]
        assert got.id == manifest(version)["components"][spec.name]
        assert got.flavor == spec.flavor
        # ZenML stores the validated config, defaults included (e.g. KFP pod_settings).
        assert {k: got.configuration.get(k) for k in spec.configuration} == spec.configuration
    assert by_name["acme-orchestrator"].flavor == "acme_custom"
    assert dict(by_name["vertex-orchestrator"].configuration) == {"project": "demo-project", "location": "us-central1"}


def test_projects_and_pipelines(snapshot: RegistrySnapshot) -> None:
    assert {s.project for s in snapshot.schedules} == set(scenario.PROJECTS)
    assert snapshot.pipelines == frozenset(scenario.PIPELINES)


def test_projects_filter(version: str) -> None:
    snapshot = read(store_file(version), projects=["analytics"])
    assert {s.project for s in snapshot.schedules} == {"analytics"}
    assert sorted(s.original_name for s in snapshot.schedules) == sorted(
        s.name for s in expected_specs(version) if s.project == "analytics"
    )
    assert snapshot.pipelines == frozenset(s.pipeline for s in scenario.SCHEDULES if s.project == "analytics")


def test_an_unknown_project_is_an_error_not_an_empty_read(version: str) -> None:
    with pytest.raises(RegistryError, match="no project named analytcs"):
        read(store_file(version), projects=["analytics", "analytcs"])


def test_reading_changes_nothing(version: str, tmp_path: Path) -> None:
    path = tmp_path / "zenml.db"
    shutil.copy2(store_file(version), path)
    before = (hashlib.sha256(path.read_bytes()).hexdigest(), os.stat(path).st_mtime_ns, sorted(os.listdir(tmp_path)))
    registry = ZenmlSqlRegistry(RegistryConfig(url=f"sqlite:///{path}"))
    registry.check()
    registry.read()
    registry.read()
    registry.close()
    after = (hashlib.sha256(path.read_bytes()).hexdigest(), os.stat(path).st_mtime_ns, sorted(os.listdir(tmp_path)))
    assert after == before
