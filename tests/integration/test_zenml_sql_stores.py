"""ZenmlSqlRegistry against real ZenML 0.98 (the venv tests/setup/zenml.sh prepares).

- ZenML's own models, read from the committed 0.98 file, agree with the reconciler's read.
- populate.py run now reproduces the committed file's content (the files are not stale).
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from providers.zenml_sql import ZenmlSqlRegistry
from reconciler.config import RegistryConfig
from reconciler.model import RegistrySnapshot
from tests.support.zenml import populate, run_in_zenml
from tests.zenml_stores.stores import LATEST, comparable, manifest, store_file

pytestmark = pytest.mark.integration

DUMP = Path(__file__).resolve().parents[1] / "zenml_stores" / "dump.py"


def read(path: Path) -> RegistrySnapshot:
    registry = ZenmlSqlRegistry(RegistryConfig(url=f"sqlite:///{path}"))
    try:
        return registry.read()
    finally:
        registry.close()


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def test_zenml_itself_reads_the_committed_file_the_same_way(tmp_path: Path) -> None:
    copy = tmp_path / "zenml.db"
    shutil.copy2(store_file(LATEST), copy)  # ZenML may write on connect; never to the committed file
    ours = read(copy)
    zenml = json.loads(run_in_zenml([str(DUMP)], f"sqlite:///{copy}", tmp_path / "work").stdout)

    theirs = {s["id"]: s for s in zenml["schedules"]}
    assert sorted(theirs) == sorted(s.id for s in ours.schedules)
    for s in ours.schedules:
        z = theirs[s.id]
        assert (s.name, s.project, s.active, s.archived, s.cron_expression, s.interval_seconds, s.catchup) == (
            z["name"], z["project"], z["active"], z["archived"], z["cron_expression"], z["interval_seconds"],
            z["catchup"],
        )
        assert (iso(s.start_time), iso(s.end_time), iso(s.run_once_start_time)) == (
            z["start_time"], z["end_time"], z["run_once_start_time"],
        )
        assert (iso(s.created), iso(s.updated)) == (z["created"], z["updated"])
        assert s.orchestrator_id == z["orchestrator_id"]
        assert dict(s.metadata) == z["metadata"]

    assert sorted((c.id, c.name, c.flavor, json.dumps(dict(c.configuration), sort_keys=True))
                  for c in ours.components) == sorted(
        (c["id"], c["name"], c["flavor"], json.dumps(c["configuration"], sort_keys=True)) for c in zenml["components"]
    )
    assert sorted(ours.pipelines) == zenml["pipelines"]


def test_populate_now_reproduces_the_committed_file(tmp_path: Path) -> None:
    fresh = tmp_path / "zenml.db"
    fresh_manifest = populate(f"sqlite:///{fresh}", tmp_path / "work")
    assert json.loads(fresh_manifest.read_text())["zenml_version"] == manifest(LATEST)["zenml_version"]
    assert comparable(read(fresh)) == comparable(read(store_file(LATEST)))

