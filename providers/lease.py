"""Leader election on a coordination.k8s.io/v1 Lease, written the way client-go's leaderelection writes it.

The Lease's spec carries `holderIdentity`, `leaseDurationSeconds`, `acquireTime`,
`renewTime` (MicroTime, RFC 3339 with microseconds) and `leaseTransitions`.
Acquire: read the Lease; create it when missing (losing that race, 409
AlreadyExists, means not leader); follow while another replica holds it and
its `renewTime + leaseDurationSeconds` is in the future; otherwise replace it
carrying the resourceVersion just read, so of two replicas racing for an
expired Lease exactly one wins and the other gets 409 Conflict. Release is
client-go's ReleaseOnCancel: holder emptied, duration 1s, renewTime now, so a
follower takes over on its next attempt.

Expiry compares the holder's renewTime with this replica's clock, as client-go
does; `Leadership`'s safety margin absorbs the skew between nodes' clocks.

Every call has an explicit timeout and no retry of its own: the renew loop
retries every lease_duration/3, and a replica that cannot reach the API server
is not the leader.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from kubernetes.config import ConfigException, incluster_config, kube_config

from providers.base import RequestRecorder, null_recorder
from providers.openapi import api_failure, raw_call
from providers.retry import Retryable
from reconciler.config import ConfigError, LeaderElectionConfig
from reconciler.leader import ErrorLog

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class LeaseError(Exception):
    """A Lease call that failed; one line, never a credential."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def default_namespace() -> str:
    """The pod's own namespace when running in a cluster, else "default"."""
    try:
        namespace = NAMESPACE_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        return "default"
    return namespace or "default"


class KubernetesLease:
    def __init__(self, config: LeaderElectionConfig, identity: str, recorder: RequestRecorder = null_recorder,
                 clock: Callable[[], float] = time.time) -> None:
        self.identity = identity
        self.name = config.lease_name
        self.namespace = config.namespace or default_namespace()
        self.lease_duration_seconds = max(1, math.ceil(config.lease_duration))
        # An acquire is at most two calls and must finish within the renew period (a third of the lease).
        self.timeout = max(1.0, config.lease_duration / 6)
        self._config = config
        self._recorder = recorder
        self._clock = clock
        self._token: str | None = None
        self._configuration = _load_configuration(config)
        self._configuration.retries = False
        self.endpoint = _safe_endpoint(self._configuration.host)
        self._api_client = k8s.ApiClient(self._configuration)
        self._api = k8s.CoordinationV1Api(self._api_client)
        self._held: dict[str, Any] | None = None  # the Lease as we last wrote it, while we hold it
        self._errors = ErrorLog(f"kubernetes lease {self.namespace}/{self.name}")

    # -- the Elector protocol ------------------------------------------------------------

    def acquire(self) -> bool:
        try:
            held = self._acquire()
        except LeaseError as exc:
            self._errors.failed(str(exc))
            self._held = None
            return False
        self._errors.ok()
        return held

    def release(self) -> None:
        if self._held is None:
            return
        body = copy.deepcopy(self._held)
        self._held = None
        now = _micro_time(self._clock())
        body["spec"] = {"holderIdentity": "", "leaseDurationSeconds": 1, "acquireTime": now, "renewTime": now,
                        "leaseTransitions": int((body.get("spec") or {}).get("leaseTransitions") or 0)}
        try:
            # Conflict: the Lease changed since we last wrote it, so it is no longer ours to release.
            self._replace(body)
        except LeaseError as exc:
            self._errors.failed(f"release: {exc}")

    def close(self) -> None:
        self._api_client.rest_client.pool_manager.clear()
        self._api_client.close()

    # -- the algorithm -----------------------------------------------------------------

    def _acquire(self) -> bool:
        now = self._clock()
        current = self._get()
        if current is None:
            self._held = self._create(self._spec(None, now))
            return self._held is not None
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity and not _expired(spec, now):
            self._held = None
            return False
        body = copy.deepcopy(current)
        body["spec"] = self._spec(spec, now)
        self._held = self._replace(body)
        return self._held is not None

    def _spec(self, old: dict[str, Any] | None, now: float) -> dict[str, Any]:
        stamp = _micro_time(now)
        if old is None:
            acquired, transitions = stamp, 0
        elif old.get("holderIdentity") == self.identity:
            acquired, transitions = old.get("acquireTime") or stamp, int(old.get("leaseTransitions") or 0)
        else:
            acquired, transitions = stamp, int(old.get("leaseTransitions") or 0) + 1
        return {"holderIdentity": self.identity, "leaseDurationSeconds": self.lease_duration_seconds,
                "acquireTime": acquired, "renewTime": stamp, "leaseTransitions": transitions}

    # -- calls ---------------------------------------------------------------------------

    def _get(self) -> dict[str, Any] | None:
        try:
            return self._call("get_lease", self._api.read_namespaced_lease, self.name, self.namespace)
        except LeaseError as exc:
            if exc.status == 404:
                return None
            raise

    def _create(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}
        try:
            return self._call("create_lease", self._api.create_namespaced_lease, self.namespace, body)
        except LeaseError as exc:
            if exc.status == 409:  # AlreadyExists: another replica created it first
                return None
            raise

    def _replace(self, body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self._call("replace_lease", self._api.replace_namespaced_lease, self.name, self.namespace, body)
        except LeaseError as exc:
            if exc.status == 409:  # Conflict: our resourceVersion is stale, someone else wrote first
                return None
            raise

    def _call(self, operation: str, method: Callable[..., Any], *args: Any) -> dict[str, Any]:
        self._apply_auth()
        try:
            data, status = raw_call(method, operation, self._recorder, self.timeout, ApiException,
                                    lambda exc: self._api_failure(operation, exc), *args)
        except Retryable as exc:
            raise LeaseError(str(exc)) from None
        try:
            decoded = json.loads(data or b"{}")
        except ValueError:
            raise LeaseError(f"{operation}: the answer is not valid JSON (HTTP {status})") from None
        if not isinstance(decoded, dict) or not isinstance(decoded.get("metadata"), dict):
            raise LeaseError(f"{operation}: the answer is not a Lease (HTTP {status})")
        return decoded

    def _api_failure(self, operation: str, exc: ApiException) -> Exception:
        failure = api_failure(
            exc, operation, self._recorder, self.endpoint, LeaseError, "the API server",
            "check the service account's RBAC for leases.coordination.k8s.io (get, create, update) in namespace "
            f"{self.namespace!r}, or the kubeconfig / token_file", (self._token,))
        if isinstance(failure, Retryable):  # 429/5xx: the renew loop is the retry
            return LeaseError(str(failure), int(exc.status or 0))
        return failure

    def _apply_auth(self) -> None:
        if not (self._config.host and self._config.token_file):
            return
        # Read on every call: tiny, and it follows a rotated (projected) token at once.
        path = self._config.token_file
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise LeaseError(f"token file {path}: {exc.strerror or type(exc).__name__}") from None
        if not token:
            raise LeaseError(f"token file {path} is empty")
        self._token = token
        self._configuration.api_key["authorization"] = token


def _load_configuration(config: LeaderElectionConfig) -> k8s.Configuration:
    configuration = k8s.Configuration()
    try:
        if config.host:
            configuration.host = config.host.rstrip("/")
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
        raise ConfigError(f"leader_election: cannot load Kubernetes credentials from {where}: "
                          f"{_first_line(exc)}") from None
    if config.ca_bundle:
        configuration.ssl_ca_cert = config.ca_bundle
    if not config.verify_tls:
        configuration.verify_ssl = False
    return configuration


def _expired(spec: dict[str, Any], now: float) -> bool:
    """A Lease without a readable renewTime or duration has no live holder (client-go reads nil as zero)."""
    renewed = _parse_time(spec.get("renewTime"))
    duration = spec.get("leaseDurationSeconds")
    if renewed is None or not isinstance(duration, (int, float)):
        return True
    return renewed + duration <= now


def _micro_time(epoch: float) -> str:
    """metav1.MicroTime on the wire: RFC 3339, UTC, exactly six fractional digits."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _safe_endpoint(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
