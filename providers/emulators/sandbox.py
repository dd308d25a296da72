"""The sandbox: every emulator seeded with drift of every kind, a real ZenML store, the daemon.

The orchestrator side is built from the same scenario data that made the ZenML
store files (`providers/emulators/scenario.py`), so the drift the daemon shows is
the drift the scenario declares. Component ids come from the store itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from providers.emulators import scenario
from providers.emulators.airflow import AirflowEmulator, Dag, timetable_summary
from providers.emulators.kubeflow import KubeflowEmulator, seed_recurring_run
from providers.emulators.kubernetes import KubernetesEmulator, zenml_cron_job
from providers.emulators.vertex import VertexEmulator
from reconciler.config import AirflowTarget, Config, KubeflowTarget, KubernetesTarget, VertexTarget, secret


@dataclass
class Emulators:
    airflow: AirflowEmulator
    vertex: VertexEmulator
    kubeflow: KubeflowEmulator
    kubernetes: KubernetesEmulator

    def all(self) -> list[object]:
        return [self.airflow, self.vertex, self.kubeflow, self.kubernetes]


def seed(emulators: Emulators, component_ids: dict[str, str]) -> None:
    """Put every scenario live schedule, and the unmanaged ones, into its emulator."""
    for spec in scenario.SCHEDULES:
        component = scenario.component(spec.component)
        if component.target_type is None or component.deleted:
            continue
        for live in spec.live:
            _add(emulators, component.target_type, live, spec.pipeline, component_ids.get(spec.component), True)
    for unmanaged in scenario.UNMANAGED:
        _add(emulators, unmanaged.target_type, unmanaged.live, None, None, False)


def _add(emulators: Emulators, target_type: str, live: scenario.LiveSeed, pipeline: str | None,
         component_id: str | None, zenml: bool) -> None:
    if target_type == "airflow":
        emulators.airflow.add(Dag(live.name, timetable_summary(live.cron, live.interval_seconds),
                                  is_paused=not live.enabled, is_stale=not live.file_present, zenml_zip=zenml))
    elif target_type == "vertex":
        assert live.cron is not None, "Vertex schedules in the scenario are crons"
        emulators.vertex.add_schedule(live.name, live.cron, state="ACTIVE" if live.enabled else "PAUSED",
                                      zenml=zenml, pipeline_name=pipeline or live.name,
                                      start_time=live.start_time, end_time=live.end_time)
    elif target_type == "kubeflow":
        experiment = emulators.kubeflow.experiment_named(live.group or pipeline or live.name)
        emulators.kubeflow.add_run(seed_recurring_run(
            live.name, experiment["experiment_id"],
            cron=f"0 {live.cron}" if live.cron else None,  # KFP shows six fields, seconds first
            interval_second=int(live.interval_seconds) if live.interval_seconds else None,
            start_time=_rfc3339(live.start_time), end_time=_rfc3339(live.end_time), enabled=live.enabled,
        ))
    elif target_type == "kubernetes":
        assert live.cron is not None and pipeline is not None and component_id is not None
        emulators.kubernetes.add("cronjobs", zenml_cron_job(pipeline, component_id, live.cron, "zenml",
                                                           name=live.name, suspend=not live.enabled))


def _rfc3339(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def running(config: Config) -> Iterator[Emulators]:
    """Start one emulator per target type on the ports the config names; stop them after."""
    targets = {t.type: t for t in config.targets}
    airflow = targets.get("airflow")
    # The emulator accepts the credentials the config's Airflow target will send.
    username = (secret(airflow.username_env, airflow.username_file) if isinstance(airflow, AirflowTarget) else None)
    password = (secret(airflow.password_env, airflow.password_file) if isinstance(airflow, AirflowTarget) else None)
    emulators = Emulators(
        AirflowEmulator(username or "admin", password or "admin"),
        VertexEmulator(), KubeflowEmulator(), KubernetesEmulator(),
    )
    started: list[object] = []
    try:
        emulators.airflow.start(_port(targets, AirflowTarget, "url"))
        started.append(emulators.airflow)
        emulators.vertex.start(0, _port(targets, VertexTarget, "endpoint"))
        started.append(emulators.vertex)
        emulators.kubeflow.start(_port(targets, KubeflowTarget, "host"))
        started.append(emulators.kubeflow)
        emulators.kubernetes.start(_port(targets, KubernetesTarget, "host"))
        started.append(emulators.kubernetes)
        yield emulators
    finally:
        for emulator in reversed(started):
            emulator.stop()  # type: ignore[attr-defined]


def _port(targets: dict[str, object], kind: type, field: str) -> int:
    target = next((t for t in targets.values() if isinstance(t, kind)), None)
    url = getattr(target, field, None) if target is not None else None
    if not url:
        raise ValueError(f"the sandbox config needs a {kind.__name__} target with {field} on 127.0.0.1")
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
        raise ValueError(f"the sandbox serves on 127.0.0.1 only: {url}")
    return parts.port


def default_store() -> Path:
    return Path(__file__).resolve().parents[2] / "tests" / "zenml_stores" / "files" / "zenml-0.98.0.db"
