"""Which ZenML orchestrator components feed a target.

Named in config (names or ids), or matched automatically by flavor and the
component's configuration. A target whose scope cannot be found is an error,
not an empty expected set: an empty scope would make every ZenML-made live
schedule look orphaned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from reconciler.config import (
    AirflowTarget,
    KubeflowTarget,
    KubernetesTarget,
    Ownership,
    TargetConfig,
    VertexTarget,
)
from reconciler.model import Component, RegistrySnapshot


class ScopeError(Exception):
    """The target's components cannot be determined; its drift is unknown."""


@dataclass(frozen=True)
class TargetScope:
    """What the diff needs to know about a target, beyond its live schedules."""

    name: str
    flavor: str
    component_ids: frozenset[str]
    name_template: str | None = None
    ownership: Ownership = Ownership()


def resolve_scope(target: TargetConfig, snapshot: RegistrySnapshot, all_targets: list[TargetConfig]) -> TargetScope:
    if target.components:
        ids = _named_components(target.components, snapshot.components, target.name)
    else:
        ids = frozenset(c.id for c in snapshot.components if _auto_match(target, c, all_targets))
        if not ids:
            raise ScopeError(
                f"no ZenML {target.type} orchestrator component matches target {target.name}; "
                "name them in `components:`"
            )
    return TargetScope(target.name, target.type, ids, target.name_template, target.ownership)


def normalize_id(value: str) -> str:
    return value.replace("-", "").lower()


def _named_components(wanted: list[str], components: tuple[Component, ...], target: str) -> frozenset[str]:
    by_name = {c.name: c.id for c in components}
    by_id = {c.id: c.id for c in components}
    found: set[str] = set()
    for item in wanted:
        component_id = by_name.get(item) or by_id.get(normalize_id(item))
        if component_id is None:
            raise ScopeError(f"target {target}: component {item!r} is not an orchestrator in the registry")
        found.add(component_id)
    return frozenset(found)


def _auto_match(target: TargetConfig, component: Component, all_targets: list[TargetConfig]) -> bool:
    if component.flavor != target.type:
        return False
    config = component.configuration
    if isinstance(target, VertexTarget):
        return config.get("project") == target.project and config.get("location", "us-central1") == target.location
    if isinstance(target, KubeflowTarget):
        return (config.get("kubeflow_namespace", "kubeflow") == target.namespace
                and _host(config.get("kubeflow_hostname")) == _host(target.host))
    if isinstance(target, KubernetesTarget):
        return config.get("kubernetes_namespace", "zenml") == target.namespace
    if isinstance(target, AirflowTarget):
        # An Airflow component's configuration does not name its deployment: only
        # a lone Airflow target can claim the Airflow components without naming them.
        return sum(1 for t in all_targets if t.type == "airflow") == 1
    return False


def _host(url: object) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    parts = urlsplit(url if "://" in url else f"https://{url}")
    return re.sub(r":443$", "", parts.netloc.lower())
