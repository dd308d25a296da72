"""Kubernetes CronJobs (batch/v1) in one namespace as live schedules.

Credentials, first that is configured: `host` (+ `token_file`, e.g. an emulator
or a proxy), an explicit `kubeconfig`/`context`, the in-cluster service account,
then the default kubeconfig. Explicit settings win over the environment so a
sidecar can be pointed elsewhere.

Listing pages with `limit`/`continue`, each page mapped as it arrives; listed
schedules carry no `raw` (`get()` does, for audit snapshots). A continue token
the server has compacted away answers 410 Gone; the listing then starts over
from the first page, at most twice, and otherwise fails: never a partial list.
Every call has
an explicit `_request_timeout` ((connect, read): the generated client drops a
float), goes through the shared retry policy and counts itself per attempt.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from providers.deferred import defer_package_init

# The CronJob API and the client's plumbing only, not every API and model class
# (providers/deferred.py). The config loaders need `Configuration` and `ApiClient`
# from the package, which their own modules answer.
_CLIENT_EXPORTS = {"Configuration": "configuration", "ApiClient": "api_client"}
defer_package_init("kubernetes")
defer_package_init("kubernetes.client", light=_CLIENT_EXPORTS)
defer_package_init("kubernetes.client.api")
defer_package_init("kubernetes.client.models")
defer_package_init("kubernetes.config")

from kubernetes.client.api.batch_v1_api import BatchV1Api  # noqa: E402 - after the deferral above
from kubernetes.client.api_client import ApiClient  # noqa: E402
from kubernetes.client.configuration import Configuration  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402
from kubernetes.config import incluster_config, kube_config  # noqa: E402
from kubernetes.config.config_exception import ConfigException  # noqa: E402

from providers.base import RequestRecorder, null_recorder  # noqa: E402
from providers.openapi import api_failure, raw_call  # noqa: E402
from providers.retry import Backoff, RateLimiter, Retryable, call_with_retries  # noqa: E402
from reconciler.config import ConfigError  # noqa: E402
from reconciler.config import KubernetesTarget as KubernetesConfig  # noqa: E402
from reconciler.model import ListingError, LiveSchedule, LiveState  # noqa: E402

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_LIST_RESTARTS = 2
ORCHESTRATOR_ANNOTATION = "zenml.io/orchestrator"  # ZenML's ORCHESTRATOR_ANNOTATION_KEY: the component id
ZENML_ANNOTATION_PREFIX = "zenml.io/"
# Modules ZenML's orchestrator pods run: evidence that survives a missing annotation (older ZenML).
ZENML_ENTRYPOINT_MODULES = (
    "zenml.integrations.kubernetes.orchestrators.kubernetes_orchestrator_entrypoint",
    "zenml.entrypoints.entrypoint",
)
# Annotations too big or too noisy to carry as labels.
_SKIPPED_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration"}
_SERVER_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink",
                    "deletionTimestamp", "deletionGracePeriodSeconds")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
# Listed CronJobs share one read-only empty `raw`, and each distinct set of marks is kept once.
_NO_RAW: Mapping[str, Any] = MappingProxyType({})
_MARK_SETS: dict[frozenset[str], frozenset[str]] = {}


class KubernetesError(Exception):
    """A Kubernetes call that failed for good. One line, never a credential."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _Expired(Exception):
    """The continue token expired (410 Gone): the listing must start over."""


_JSON = "json"  # `_call` response type: the decoded JSON as it came, no model classes


class _Shim:
    """What ApiClient.deserialize reads from a response: its text."""

    def __init__(self, data: str) -> None:
        self.data = data


class KubernetesTarget:
    flavor = "kubernetes"

    def __init__(self, config: KubernetesConfig, recorder: RequestRecorder = null_recorder) -> None:
        self.name = config.name
        self._config = config
        self._recorder = recorder
        self._propagation_policy = config.propagation_policy
        self._backoff = Backoff(max_retries=config.max_retries)
        self._limiter = RateLimiter(config.rate_limit)
        self._token: str | None = None
        self._configuration = self._load_configuration(config)
        self._configuration.retries = False  # urllib3 would retry connects 3 times behind our backoff
        self.endpoint = _safe_endpoint(self._configuration.host)
        self._api_client = ApiClient(self._configuration)
        self._batch = BatchV1Api(self._api_client)

    def _load_configuration(self, config: KubernetesConfig) -> Configuration:
        configuration = Configuration()
        try:
            if config.host:
                configuration.host = config.host.rstrip("/")
                configuration.verify_ssl = config.verify_tls
                configuration.api_key_prefix["authorization"] = "Bearer"
            elif config.kubeconfig or config.context:
                kube_config.load_kube_config(config_file=config.kubeconfig, context=config.context,
                                             client_configuration=configuration)
            else:
                try:
                    # Re-reads the projected service-account token as it rotates.
                    incluster_config.load_incluster_config(client_configuration=configuration)
                except ConfigException:
                    kube_config.load_kube_config(client_configuration=configuration)
        except (ConfigException, OSError) as exc:
            where = config.kubeconfig or "in-cluster service account or ~/.kube/config"
            raise ConfigError(f"kubernetes target {config.name}: cannot load credentials from {where}: "
                              f"{_first_line(exc)}") from None
        if config.ca_bundle:
            configuration.ssl_ca_cert = config.ca_bundle
        if not config.verify_tls:
            configuration.verify_ssl = False
        return configuration

    # -- the TargetProvider protocol ---------------------------------------------------

    def list_schedules(self) -> list[LiveSchedule]:
        deadline = time.monotonic() + self._config.list_deadline
        restarts = 0
        while True:
            try:
                items = self._list_once(deadline)
                break
            except _Expired:
                restarts += 1
                if restarts > MAX_LIST_RESTARTS:
                    raise ListingError(
                        f"kubernetes target {self.name}: the continue token expired (410 Gone) in "
                        f"{restarts} listings in a row; the listing never completed") from None
            except KubernetesError as exc:
                raise ListingError(f"kubernetes target {self.name}: {exc}") from None
        return items

    def check(self) -> None:
        try:
            self._call("list_schedules", self._batch.list_namespaced_cron_job, "V1CronJobList",
                       self._config.namespace, limit=1)
        except (KubernetesError, _Expired) as exc:
            raise ListingError(f"kubernetes target {self.name}: {exc}") from None

    def close(self) -> None:
        self._api_client.rest_client.pool_manager.clear()
        self._api_client.close()

    # -- single objects and actions ----------------------------------------------------

    def get(self, native_id: str) -> LiveSchedule | None:
        """The CronJob now, or None when it is gone. Raises ListingError."""
        namespace, name = self._split(native_id)
        try:
            cron_job = self._call("get_schedule", self._batch.read_namespaced_cron_job, "V1CronJob", name, namespace)
        except (KubernetesError, _Expired) as exc:
            if isinstance(exc, KubernetesError) and exc.status == 404:
                return None
            raise ListingError(f"kubernetes target {self.name}: {exc}") from None
        return self._to_live(cron_job)

    def pause(self, native_id: str) -> bool:
        """Suspend the CronJob. False when it does not exist."""
        return self._patch_suspend("pause_schedule", native_id, True)

    def resume(self, native_id: str) -> bool:
        return self._patch_suspend("resume_schedule", native_id, False)

    def delete(self, native_id: str) -> bool:
        """Delete with an explicit propagation policy (its Jobs go too). False when already gone."""
        namespace, name = self._split(native_id)
        try:
            self._call("delete_schedule", self._batch.delete_namespaced_cron_job, None, name, namespace,
                       propagation_policy=self._propagation_policy)
        except KubernetesError as exc:
            if exc.status == 404:
                return False
            raise KubernetesError(f"kubernetes target {self.name}: {exc}", exc.status) from None
        return True

    def create(self, snapshot: Mapping[str, Any]) -> LiveSchedule:
        """Recreate a CronJob from an audit snapshot (its `raw`)."""
        body = json.loads(json.dumps(dict(snapshot)))
        metadata = body.setdefault("metadata", {})
        for field in _SERVER_METADATA:
            metadata.pop(field, None)
        body.pop("status", None)
        body["apiVersion"], body["kind"] = "batch/v1", "CronJob"
        namespace = metadata.get("namespace") or self._config.namespace
        try:
            created = self._call("create_schedule", self._batch.create_namespaced_cron_job, "V1CronJob",
                                 namespace, body)
        except KubernetesError as exc:
            raise KubernetesError(f"kubernetes target {self.name}: {exc}", exc.status) from None
        return self._to_live(created)

    def _patch_suspend(self, operation: str, native_id: str, suspend: bool) -> bool:
        namespace, name = self._split(native_id)
        try:
            self._call(operation, self._batch.patch_namespaced_cron_job, "V1CronJob", name, namespace,
                       {"spec": {"suspend": suspend}})
        except KubernetesError as exc:
            if exc.status == 404:
                return False
            raise KubernetesError(f"kubernetes target {self.name}: {exc}", exc.status) from None
        return True

    def _split(self, native_id: str) -> tuple[str, str]:
        namespace, _, name = native_id.rpartition("/")
        return namespace or self._config.namespace, name

    # -- transport ---------------------------------------------------------------------

    def _list_once(self, deadline: float) -> list[LiveSchedule]:
        items: list[LiveSchedule] = []
        token: str | None = None
        page_number = 1
        while True:
            kwargs: dict[str, Any] = {"limit": self._config.page_size}
            if token:
                kwargs["_continue"] = token
            # Read as plain JSON: the client's model classes cost about 2 ms of CPU per
            # CronJob (a Configuration object per nested model), which at tens of
            # thousands of CronJobs is most of a cycle.
            page = self._call("list_schedules", self._batch.list_namespaced_cron_job, _JSON,
                              self._config.namespace, deadline=deadline, **kwargs)
            page_items = page.get("items") if isinstance(page, dict) else None
            if not isinstance(page_items, list) or not all(_is_cron_job(i) for i in page_items):
                raise KubernetesError(f"list_schedules: page {page_number} is malformed (no items list of CronJobs)")
            items.extend(self._to_live(item, keep_raw=False) for item in page_items)
            metadata = page.get("metadata")
            token = metadata.get("continue") if isinstance(metadata, dict) else None
            if not token:
                return items
            if time.monotonic() >= deadline:
                raise KubernetesError(f"list_schedules: not done within list_deadline "
                                      f"({self._config.list_deadline:g}s)")
            page_number += 1

    def _call(self, operation: str, method: Callable[..., Any], response_type: str | None, *args: Any,
              deadline: float | None = None, **kwargs: Any) -> Any:
        """One logical call, retried; returns the typed object or raises KubernetesError / _Expired."""
        attempts = 0

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            self._limiter.acquire()
            self._apply_auth()
            timeout = self._config.timeout
            if deadline is not None:
                timeout = min(timeout, deadline - time.monotonic())
                if timeout <= 0:
                    raise KubernetesError(f"{operation}: not done within list_deadline "
                                          f"({self._config.list_deadline:g}s)")
            data, status = raw_call(method, operation, self._recorder, timeout, ApiException,
                                    lambda exc: self._api_failure(operation, exc), *args, **kwargs)
            return self._decode(operation, data, status, response_type)

        try:
            return call_with_retries(attempt, self._backoff, deadline)
        except Retryable as exc:
            raise KubernetesError(f"{exc} (gave up after {attempts} attempts)") from None

    def _decode(self, operation: str, data: bytes, status: int, response_type: str | None) -> Any:
        text = data.decode("utf-8", errors="replace") if data else ""
        try:
            decoded = json.loads(text or "{}")
        except ValueError:
            raise KubernetesError(f"{operation}: the answer is not valid JSON (HTTP {status})") from None
        if response_type is None:
            return None
        if response_type == _JSON:
            return decoded
        try:
            return self._api_client.deserialize(_Shim(text), response_type)
        except (ValueError, TypeError, AttributeError) as exc:
            raise KubernetesError(f"{operation}: malformed {response_type} ({_first_line(exc)})") from None

    def _api_failure(self, operation: str, exc: ApiException) -> Exception:
        if exc.status == 410:
            self._recorder(operation, "410")
            return _Expired(f"{operation}: HTTP 410 Gone (the continue token expired)")
        return api_failure(
            exc, operation, self._recorder, self.endpoint, KubernetesError, "the API server",
            "check the service account's RBAC for cronjobs.batch in namespace "
            f"{self._config.namespace!r}, or the kubeconfig / token_file", (self._token,))

    def _apply_auth(self) -> None:
        if not (self._config.host and self._config.token_file):
            return
        # Read on every call: tiny, and it follows a rotated (projected) token at once.
        path = self._config.token_file
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise KubernetesError(f"token file {path}: {exc.strerror or type(exc).__name__}") from None
        if not token:
            raise KubernetesError(f"token file {path} is empty")
        self._token = token
        self._configuration.api_key["authorization"] = token

    # -- mapping -----------------------------------------------------------------------

    def _to_live(self, cron_job: Any, keep_raw: bool = True) -> LiveSchedule:
        """From a typed V1CronJob or its wire JSON (camelCase), which `keep_raw` keeps as its `raw` snapshot.

        A CronJob whose fields have the wrong types raises KubernetesError, which fails the
        whole listing (the target is unknown): a guess could hide an orphan or crash the diff.
        """
        try:
            live = self._map_cron_job(cron_job, keep_raw)
        except (AttributeError, TypeError, ValueError, KeyError, OverflowError) as exc:
            raise KubernetesError(f"a CronJob is malformed ({type(exc).__name__})") from None
        if live.cron is not None and not isinstance(live.cron, str):
            raise KubernetesError(f"CronJob {live.native_id[:120]!r} is malformed (spec.schedule is not a string)")
        return live

    def _map_cron_job(self, cron_job: Any, keep_raw: bool) -> LiveSchedule:
        raw = cron_job if isinstance(cron_job, dict) else self._api_client.sanitize_for_serialization(cron_job)
        if keep_raw:
            raw.setdefault("apiVersion", "batch/v1")  # list items come without their type
            raw.setdefault("kind", "CronJob")
        metadata = raw.get("metadata") or {}
        spec = raw.get("spec") or {}
        namespace = metadata.get("namespace") or self._config.namespace
        # Interned: keys and many values (project, pipeline, component) repeat on every CronJob.
        labels = {sys.intern(str(k)): sys.intern(str(v)) for k, v in (metadata.get("labels") or {}).items()}
        annotations = {sys.intern(str(k)): sys.intern(str(v)) for k, v in (metadata.get("annotations") or {}).items()
                       if k not in _SKIPPED_ANNOTATIONS}
        marks = {f"annotation:{key}" for key in annotations if key.startswith(ZENML_ANNOTATION_PREFIX)}
        if _runs_zenml_entrypoint(raw):
            marks.add("entrypoint")
        zenml_marks = _MARK_SETS.setdefault(frozenset(marks), frozenset(marks))
        cron = spec.get("schedule")
        if type(cron) is str:
            cron = sys.intern(cron)  # the same cron on thousands of CronJobs, kept once
        time_zone = spec.get("timeZone")
        if cron and time_zone and not re.match(r"^\s*(CRON_)?TZ=", cron):
            cron = f"CRON_TZ={time_zone} {cron}"
        return LiveSchedule(
            native_id=f"{namespace}/{metadata['name']}",
            name=metadata["name"],
            state=LiveState.PAUSED if spec.get("suspend") else LiveState.ENABLED,
            cron=cron,
            created=_timestamp(metadata.get("creationTimestamp")),
            labels={**labels, **annotations},
            zenml_marks=zenml_marks,
            component_id=_component_id(annotations.get(ORCHESTRATOR_ANNOTATION)),
            raw=raw if keep_raw else _NO_RAW,
        )


@lru_cache(maxsize=1024)  # a handful of components: one string each, shared by every CronJob
def _component_id(value: str | None) -> str | None:
    """ZenML writes `str(component.id)`, a dashed UUID; the core keys components by 32 hex."""
    if not value:
        return None
    normalized = value.strip().lower().replace("-", "")
    return normalized if _HEX32.match(normalized) else None


def _runs_zenml_entrypoint(raw: Mapping[str, Any]) -> bool:
    pod_spec = (((raw.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    for container in (pod_spec.get("spec") or {}).get("containers") or []:
        command = list(container.get("command") or []) + list(container.get("args") or [])
        if any(module in command for module in ZENML_ENTRYPOINT_MODULES):
            return True
    return False


def _is_cron_job(item: Any) -> bool:
    metadata = item.get("metadata") if isinstance(item, dict) else None
    return isinstance(metadata, dict) and isinstance(metadata.get("name"), str) and isinstance(
        item.get("spec", {}), dict)


def _timestamp(value: Any) -> datetime | None:
    """An RFC 3339 time as the API server writes it (or as `sanitize_for_serialization` does)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _safe_endpoint(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
