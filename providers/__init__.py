"""Adapters from outside systems (ZenML, orchestrators) to the core's model.

`build_registry` and `build_target` import a provider only when a config names
it, so a daemon watching Airflow never loads the Vertex SDK.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from reconciler.config import LeaderElectionConfig, RegistryConfig, TargetConfig

from providers.base import RegistryProvider, RequestRecorder, TargetProvider, null_recorder

if TYPE_CHECKING:
    from reconciler.leader import Elector
    from reconciler.state import StateStore


def build_registry(config: RegistryConfig, recorder: RequestRecorder = null_recorder) -> RegistryProvider:
    if config.type == "zenml-sql":
        from providers.zenml_sql import ZenmlSqlRegistry

        return ZenmlSqlRegistry(config)
    from providers.zenml_rest import ZenmlRestRegistry

    return ZenmlRestRegistry(config, recorder)


def build_target(config: TargetConfig, recorder: RequestRecorder = null_recorder) -> TargetProvider:
    if config.type == "airflow":
        from providers.airflow import AirflowTarget

        return AirflowTarget(config, recorder)
    if config.type == "vertex":
        from providers.vertex import VertexTarget

        return VertexTarget(config, recorder)
    if config.type == "kubeflow":
        from providers.kubeflow import KubeflowTarget

        return KubeflowTarget(config, recorder)
    from providers.kubernetes import KubernetesTarget

    return KubernetesTarget(config, recorder)


def build_elector(config: LeaderElectionConfig, store: StateStore, identity: str | None = None,
                  recorder: RequestRecorder = null_recorder) -> Elector:
    """The lease backend `leader_election.backend` names; the identity defaults to identity_for(os.environ)."""
    from reconciler.leader import DatabaseLease, identity_for

    identity = identity or identity_for(os.environ)
    if config.backend == "database":
        return DatabaseLease(store.engine, config.lease_name, identity, config.lease_duration)
    from providers.lease import KubernetesLease

    return KubernetesLease(config, identity, recorder)
