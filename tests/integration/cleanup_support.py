"""Shared parts of the cleanup end-to-end tests (restore, crash safety).

- `write_config`: a daemon config over the sandbox's targets on free ports, a
  SQLite state store file in the test's temp dir, cleanup settings of the test's
  choosing; the Airflow target either the emulator or a real server.
- `emulated`: the Vertex, KFP and Kubernetes emulators (and the Airflow one when
  the config's Airflow target is not a real server) on the config's ports.
- orphan makers: a ZenML-made live schedule with no registry row, put into an
  emulator through its own add helper, as ZenML's orchestrator would have made it.
- `cli`: the real command line as a subprocess, from the repository root.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from providers.emulators.airflow import AirflowEmulator, Dag
from providers.emulators.kubeflow import KubeflowEmulator, seed_recurring_run
from providers.emulators.kubernetes import KubernetesEmulator, zenml_cron_job
from providers.emulators.sandbox import Emulators, default_store
from providers.emulators.vertex import VertexEmulator
from reconciler.config import Config
from tests.support.procs import REPO, free_port

CLI_TIMEOUT = 180


@dataclass
class Setup:
    path: Path  # the config file the daemon and the CLI read
    raw: dict[str, Any]  # its content, to change and write back
    state_db: Path

    @property
    def config(self) -> Config:
        return Config.model_validate(self.raw)

    def write(self) -> None:
        self.path.write_text(yaml.safe_dump(self.raw), encoding="utf-8")

    def set_cleanup(self, **values: Any) -> None:
        self.raw["cleanup"].update(values)
        self.write()

    def target(self, type_: str) -> dict[str, Any]:
        return next(t for t in self.raw["targets"] if t["type"] == type_)


def write_config(tmp_path: Path, *, airflow: Mapping[str, Any] | None = None, cleanup: Mapping[str, Any] | None = None,
                 actions: Mapping[str, str] | None = None, targets: tuple[str, ...] | None = None) -> Setup:
    """The sandbox config with free ports; `airflow` replaces the Airflow target's connection fields."""
    raw = yaml.safe_load((REPO / "config" / "sandbox.yaml").read_text(encoding="utf-8"))
    raw["registry"]["url"] = f"sqlite:///{default_store()}"
    password = tmp_path / "airflow-password"
    password.write_text(secrets.token_urlsafe(12) + "\n")
    chosen = []
    for target in raw["targets"]:
        if targets is not None and target["type"] not in targets:
            continue
        if target["type"] == "airflow":
            target["url"] = f"http://127.0.0.1:{free_port()}"
            target["username_file"] = str(REPO / target["username_file"])
            target["password_file"] = str(password)
            target.update(airflow or {})
        elif target["type"] == "vertex":
            target["endpoint"] = f"http://127.0.0.1:{free_port()}"
        else:
            target["host"] = f"http://127.0.0.1:{free_port()}"
        if actions and target["type"] in actions:
            target["action"] = actions[target["type"]]
        chosen.append(target)
    raw["targets"] = chosen
    raw["cleanup"].update(cleanup or {})
    state_db = tmp_path / "state.db"
    raw["state"] = {"url": f"sqlite:///{state_db}"}
    raw["metrics"]["port"] = free_port()
    raw["log"] = {"format": "json", "level": "info"}
    setup = Setup(tmp_path / "schedule-reconciler.yaml", raw, state_db)
    setup.write()
    return setup


def _at_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.hostname}:{port}").geturl()


@contextmanager
def emulated(setup: Setup, airflow: bool = True) -> Iterator[Emulators]:
    """Start the emulators of the config's targets (Airflow's only when `airflow`); stop them after.

    Each binds a port the kernel picks and the config file is rewritten with it: a port chosen
    earlier and bound later can be taken in between (CI once lost a run to exactly that).
    The Airflow emulator object always exists so that `sandbox.seed` can fill it; it
    serves only when started here.
    """
    types = {t["type"] for t in setup.raw["targets"]}
    emulators = Emulators(AirflowEmulator(*_airflow_credentials(setup)), VertexEmulator(), KubeflowEmulator(),
                          KubernetesEmulator())
    started: list[Any] = []
    try:
        if airflow and "airflow" in types:
            emulators.airflow.start(0)
            started.append(emulators.airflow)
            setup.target("airflow")["url"] = emulators.airflow.url
        if "vertex" in types:
            emulators.vertex.start(0, 0)
            started.append(emulators.vertex)
            vertex = setup.target("vertex")
            vertex["endpoint"] = _at_port(vertex["endpoint"], emulators.vertex.grpc_port)
        if "kubeflow" in types:
            emulators.kubeflow.start(0)
            started.append(emulators.kubeflow)
            setup.target("kubeflow")["host"] = emulators.kubeflow.url
        if "kubernetes" in types:
            emulators.kubernetes.start(0)
            started.append(emulators.kubernetes)
            setup.target("kubernetes")["host"] = emulators.kubernetes.url
        setup.write()
        yield emulators
    finally:
        for emulator in reversed(started):
            emulator.stop()


def _airflow_credentials(setup: Setup) -> tuple[str, str]:
    target = next((t for t in setup.raw["targets"] if t["type"] == "airflow"), None)
    if target is None:
        return "admin", "admin"
    return (Path(target["username_file"]).read_text().strip(), Path(target["password_file"]).read_text().strip())


def component_ids() -> dict[str, str]:
    """ZenML's component ids in the committed store, read the way the daemon reads them."""
    from providers import build_registry

    raw = yaml.safe_load((REPO / "config" / "sandbox.yaml").read_text(encoding="utf-8"))
    raw["registry"]["url"] = f"sqlite:///{default_store()}"
    registry = build_registry(Config.model_validate(raw).registry)
    try:
        return {c.name: c.id for c in registry.read().components}
    finally:
        close = getattr(registry, "close", None)
        if close is not None:
            close()


# -- orphans: ZenML-made live schedules that no registry row owns -----------------------------------


def vertex_orphan(emulators: Emulators, name: str, cron: str = "7 7 * * *") -> str:
    """A schedule ZenML's Vertex orchestrator made (its step entrypoint in the spec); returns its resource name."""
    return emulators.vertex.add_schedule(name, cron, zenml=True, pipeline_name=name,
                                         labels={"team": "orphans", "origin": name})


def kfp_orphan(emulators: Emulators, pipeline: str, cron: str = "0 8 8 * * *") -> str:
    """A recurring run with ZenML's compiled IR, in the experiment of its pipeline; returns its id."""
    experiment = emulators.kubeflow.experiment_named(pipeline)
    run = emulators.kubeflow.add_run(seed_recurring_run(f"{pipeline}_{secrets.token_hex(16)}",
                                                        experiment["experiment_id"], cron=cron))
    return str(run["recurring_run_id"])


def k8s_orphan(emulators: Emulators, component_id: str, name: str, cron: str = "9 9 * * *") -> str:
    """A CronJob with ZenML's orchestrator annotation; returns `namespace/name`."""
    pipeline = name.split("-", 2)[-1]
    emulators.kubernetes.add("cronjobs", zenml_cron_job(pipeline, component_id, cron, "zenml", name=name))
    return f"zenml/{name}"


def airflow_orphan(emulators: Emulators, pipeline: str, stale: bool = False, cron: str = "11 11 * * *") -> str:
    """A ZenML DAG zip (`<pipeline>_<32 hex>`); `stale`: its file is gone. Returns the dag_id."""
    dag_id = f"{pipeline}_{secrets.token_hex(16)}"
    emulators.airflow.add(Dag(dag_id, cron, is_paused=False, is_stale=stale, zenml_zip=True))
    return dag_id


# -- the command line -----------------------------------------------------------------------------


def cli(setup: Setup, *args: str, env: Mapping[str, str] | None = None,
        timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.pop("SCHEDULE_RECONCILER_FAILPOINTS", None)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "reconciler", *args, "--config", str(setup.path)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env=full)


def history(setup: Setup, *extra: str) -> list[dict[str, Any]]:
    """Every audit record, dry runs included, oldest first, through `history --output json`."""
    result = cli(setup, "history", "--output", "json", "--dry-run", "--limit", "100000", *extra)
    assert result.returncode == 0, result.stderr
    return sorted(json.loads(result.stdout), key=lambda r: r["id"])
