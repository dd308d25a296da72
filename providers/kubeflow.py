"""Kubeflow Pipelines (kfp 2.x, API v2beta1): recurring runs as live schedules.

Speaks through `kfp_server_api`, the client generated inside kfp, configured
directly: `kfp.Client` probes healthz while it is being constructed and has no
per-call timeout. Every call here has an explicit `_request_timeout` (a
(connect, read) pair: the generated client silently drops a float), goes
through the shared retry policy, and counts itself once per attempt.

Responses are read as the server's JSON (`_preload_content=False`). `get()`
keeps it as `raw`, exactly what the API returned, ready for an audit snapshot and
a restore; listings leave `raw` empty (at 100,000 runs the copies were most of
the daemon's memory) and map each page as it arrives.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import kfp_server_api
from kfp_server_api.api.experiment_service_api import ExperimentServiceApi
from kfp_server_api.api.recurring_run_service_api import RecurringRunServiceApi
from kfp_server_api.exceptions import ApiException

from providers.base import RequestRecorder, null_recorder
from providers.openapi import api_failure, raw_call
from providers.retry import Backoff, RateLimiter, Retryable, call_with_retries
from reconciler.config import KubeflowTarget as KubeflowConfig
from reconciler.config import secret
from reconciler.model import ListingError, LiveSchedule, LiveState

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# ZenML's step entrypoint: the command of every step container ZenML compiles into a KFP spec.
ZENML_ENTRYPOINT_MODULE = "zenml.entrypoints.entrypoint"
# Fields the server sets on create; a restore sends the rest of the snapshot back.
_SERVER_FIELDS = ("recurring_run_id", "created_at", "updated_at", "status", "error", "namespace")
_ENTRYPOINT_MARK = frozenset({"entrypoint"})
_NO_MARKS: frozenset[str] = frozenset()
# Listed runs share one read-only empty mapping for `raw` (and for no tags) instead of an empty dict each.
_NO_RAW: Mapping[str, Any] = MappingProxyType({})


class KubeflowError(Exception):
    """A KFP call that failed for good. One line, never a credential. `status` None: no answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KubeflowTarget:
    flavor = "kubeflow"

    def __init__(self, config: KubeflowConfig, recorder: RequestRecorder = null_recorder) -> None:
        self.name = config.name
        self.endpoint = _safe_endpoint(config.host)
        self._config = config
        self._recorder = recorder
        self._backoff = Backoff(max_retries=config.max_retries)
        self._limiter = RateLimiter(config.rate_limit)
        self._static_token = secret(config.token_env, None) if config.token_env and not config.token_file else None
        self._token: str | None = self._static_token
        self._cookies = secret(config.cookies_env, None) if config.cookies_env else None

        configuration = kfp_server_api.Configuration(host=config.host.rstrip("/"))
        configuration.verify_ssl = config.verify_tls
        if config.ca_bundle:
            configuration.ssl_ca_cert = config.ca_bundle
        configuration.retries = False  # urllib3 would retry connects 3 times behind our backoff
        configuration.api_key_prefix["authorization"] = "Bearer"
        self._configuration = configuration
        self._client = kfp_server_api.ApiClient(configuration, cookie=self._cookies)
        self._client.rest_client.request = _with_error_body(self._client.rest_client.request)
        self._runs = RecurringRunServiceApi(self._client)
        self._experiments = ExperimentServiceApi(self._client)

    # -- the TargetProvider protocol ---------------------------------------------------

    def list_schedules(self) -> list[LiveSchedule]:
        deadline = time.monotonic() + self._config.list_deadline
        try:
            # Each page is mapped as it arrives, with the run's experiment id standing in
            # for its group until the experiments (listed after the runs) name it.
            runs = self._list_all(
                "list_schedules", self._runs.recurring_run_service_list_recurring_runs, "recurringRuns",
                "recurring_run_id", deadline,
                convert=lambda run: self._to_live(run, run.get("experiment_id") or None, keep_raw=False),
            )
            experiments = self._list_all(
                "list_experiments", self._experiments.experiment_service_list_experiments, "experiments",
                "experiment_id", deadline,
            )
        except KubeflowError as exc:
            raise ListingError(f"kubeflow target {self.name}: {exc}") from None
        names = {e["experiment_id"]: e.get("display_name") for e in experiments}
        for i, live in enumerate(runs):  # in place: never two copies of 100,000s of runs at once
            if live.group is not None:
                runs[i] = replace(live, group=names.get(live.group))
        return runs

    def check(self) -> None:
        try:
            self._call("list_schedules", self._runs.recurring_run_service_list_recurring_runs,
                       page_size=1, namespace=self._config.namespace)
        except KubeflowError as exc:
            raise ListingError(f"kubeflow target {self.name}: {exc}") from None

    def close(self) -> None:
        self._client.rest_client.pool_manager.clear()
        self._client.close()

    # -- single objects and actions ----------------------------------------------------

    def get(self, native_id: str) -> LiveSchedule | None:
        """The recurring run now, or None when it is gone. Raises ListingError."""
        try:
            run = self._call("get_schedule", self._runs.recurring_run_service_get_recurring_run, native_id)
            group = None
            if run.get("experiment_id"):
                try:
                    experiment = self._call("get_experiment", self._experiments.experiment_service_get_experiment,
                                            run["experiment_id"])
                    group = experiment.get("display_name")
                except KubeflowError as exc:
                    if exc.status != 404:
                        raise
        except KubeflowError as exc:
            if exc.status == 404:
                return None
            raise ListingError(f"kubeflow target {self.name}: {exc}") from None
        return self._to_live(run, group)

    def pause(self, native_id: str) -> bool:
        """Disable the recurring run (KFP's pause). False when it does not exist."""
        return self._act("pause_schedule", self._runs.recurring_run_service_disable_recurring_run, native_id)

    def resume(self, native_id: str) -> bool:
        return self._act("resume_schedule", self._runs.recurring_run_service_enable_recurring_run, native_id)

    def delete(self, native_id: str) -> bool:
        return self._act("delete_schedule", self._runs.recurring_run_service_delete_recurring_run, native_id)

    def create(self, snapshot: Mapping[str, Any]) -> LiveSchedule:
        """Recreate a recurring run from an audit snapshot (its `raw`). KFP gives it a new id."""
        body = {k: v for k, v in snapshot.items() if k not in _SERVER_FIELDS}
        body["mode"] = "DISABLE" if snapshot.get("status") == "DISABLED" else "ENABLE"
        try:
            run = self._call("create_schedule", self._runs.recurring_run_service_create_recurring_run, body)
        except KubeflowError as exc:
            raise KubeflowError(f"kubeflow target {self.name}: {exc}", exc.status) from None
        return self._to_live(run, None)

    def _act(self, operation: str, method: Callable[..., Any], native_id: str) -> bool:
        try:
            self._call(operation, method, native_id)
        except KubeflowError as exc:
            if exc.status == 404:
                return False
            raise KubeflowError(f"kubeflow target {self.name}: {exc}", exc.status) from None
        return True

    # -- transport ---------------------------------------------------------------------

    def _list_all(self, operation: str, method: Callable[..., Any], key: str, id_field: str,
                  deadline: float, convert: Callable[[dict[str, Any]], Any] | None = None) -> list[Any]:
        """Every page of one listing in the namespace, each item `convert`ed as its page arrives.

        Any bad page fails the whole listing.
        """
        items: list[Any] = []
        token: str | None = None
        seen_tokens: set[str] = set()
        page_number = 1
        while True:
            body = self._call(operation, method, deadline=deadline, page_size=self._config.page_size,
                              page_token=token, namespace=self._config.namespace)
            page = body.get(key) if isinstance(body, dict) else None
            if page is None and isinstance(body, dict):
                page = []  # the server leaves out an empty list
            if not isinstance(page, list) or not all(isinstance(i, dict) and i.get(id_field) for i in page):
                raise KubeflowError(f"{operation}: page {page_number} is malformed (no {key} list of objects)")
            items.extend(page if convert is None else map(convert, page))
            token = body.get("next_page_token") or None
            if token is None:
                return items
            if token in seen_tokens:
                raise KubeflowError(f"{operation}: the server repeated a page token on page {page_number}")
            seen_tokens.add(token)
            if time.monotonic() >= deadline:
                raise KubeflowError(f"{operation}: not done within list_deadline ({self._config.list_deadline:g}s)")
            page_number += 1

    def _call(self, operation: str, method: Callable[..., Any], *args: Any, deadline: float | None = None,
              **kwargs: Any) -> Any:
        """One logical call, retried; returns the decoded JSON body or raises KubeflowError."""
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
                    raise KubeflowError(f"{operation}: not done within list_deadline ({self._config.list_deadline:g}s)")
            data, status = raw_call(method, operation, self._recorder, timeout, ApiException,
                                    lambda exc: self._api_failure(operation, exc), *args, **kwargs)
            if not data:
                return {}
            try:
                return json.loads(data)
            except ValueError:
                raise KubeflowError(f"{operation}: the answer is not valid JSON (HTTP {status})") from None

        try:
            return call_with_retries(attempt, self._backoff, deadline)
        except Retryable as exc:
            raise KubeflowError(f"{exc} (gave up after {attempts} attempts)") from None

    def _api_failure(self, operation: str, exc: ApiException) -> Exception:
        return api_failure(
            exc, operation, self._recorder, self.endpoint, KubeflowError, "the KFP API",
            f"check token_env, token_file or cookies_env, and the namespace {self._config.namespace!r}",
            (self._token, self._cookies))

    def _apply_auth(self) -> None:
        token = self._read_token_file() if self._config.token_file else self._static_token
        self._token = token
        if token:
            self._configuration.api_key["authorization"] = token
        else:
            self._configuration.api_key.pop("authorization", None)

    def _read_token_file(self) -> str:
        # Read on every call: a few hundred bytes, and unlike an mtime check it also sees
        # a token rewritten in place within the filesystem's timestamp granularity.
        path = self._config.token_file or ""
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise KubeflowError(f"token file {path}: {exc.strerror or type(exc).__name__}") from None
        if not token:
            raise KubeflowError(f"token file {path} is empty")
        return token

    # -- mapping -----------------------------------------------------------------------

    def _to_live(self, run: Mapping[str, Any], group: str | None, keep_raw: bool = True) -> LiveSchedule:
        """The run as a LiveSchedule; `keep_raw` keeps the API object for audit snapshots (get, create).

        A run whose fields have the wrong types raises KubeflowError, which fails the whole
        listing (the target is unknown): a guess could hide an orphan or crash the diff.
        """
        try:
            live = self._map_run(run, group, keep_raw)
        except (AttributeError, TypeError, ValueError, KeyError, OverflowError) as exc:
            raise KubeflowError(f"recurring run {str(run.get('recurring_run_id'))[:80]!r} is malformed "
                                f"({type(exc).__name__})") from None
        if live.cron is not None and not isinstance(live.cron, str):
            raise KubeflowError(f"recurring run {live.native_id[:80]!r} is malformed (its cron is not a string)")
        return live

    def _map_run(self, run: Mapping[str, Any], group: str | None, keep_raw: bool) -> LiveSchedule:
        trigger = run.get("trigger") or {}
        cron_schedule = trigger.get("cron_schedule") or None
        periodic = trigger.get("periodic_schedule") or None
        schedule = cron_schedule or periodic or {}
        interval: float | None = None
        if periodic and periodic.get("interval_second") not in (None, ""):
            interval = float(periodic["interval_second"])
        tags = run.get("tags") if isinstance(run.get("tags"), dict) else {}
        return LiveSchedule(
            native_id=str(run["recurring_run_id"]),
            name=str(run.get("display_name") or ""),
            state=_state(run),
            cron=_interned(cron_schedule.get("cron")) if cron_schedule else None,
            interval_seconds=interval,
            start_time=_time(schedule.get("start_time")),
            end_time=_time(schedule.get("end_time")),
            created=_time(run.get("created_at")),
            group=group,
            labels={str(k): str(v) for k, v in tags.items()} if tags else _NO_RAW,
            zenml_marks=_ENTRYPOINT_MARK if _has_zenml_entrypoint(run.get("pipeline_spec")) else _NO_MARKS,
            raw=dict(run) if keep_raw else _NO_RAW,
        )


def _interned(value: Any) -> Any:
    """The same cron on thousands of runs, kept once."""
    return sys.intern(value) if type(value) is str else value


def _state(run: Mapping[str, Any]) -> LiveState:
    status = run.get("status")
    if status == "ENABLED":
        return LiveState.ENABLED
    if status in (None, "", "STATUS_UNSPECIFIED") and run.get("mode") == "ENABLE":
        return LiveState.ENABLED
    return LiveState.PAUSED


def _has_zenml_entrypoint(spec: Any) -> bool:
    """Whether a compiled KFP spec runs ZenML's step entrypoint in any executor."""
    if not isinstance(spec, dict):
        return False
    if isinstance(spec.get("pipeline_spec"), dict):  # a spec with a platform spec beside it
        spec = spec["pipeline_spec"]
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
    if not isinstance(executors, dict):
        return False
    for executor in executors.values():
        container = executor.get("container") if isinstance(executor, dict) else None
        command = container.get("command") if isinstance(container, dict) else None
        if isinstance(command, list) and ZENML_ENTRYPOINT_MODULE in command:
            return True
    return False


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    # An unset protobuf Timestamp can come back as the epoch.
    return None if parsed.timestamp() <= 0 else parsed.astimezone(timezone.utc)


def _with_error_body(request: Callable[..., Any]) -> Callable[..., Any]:
    """kfp_server_api's ApiClient decodes the body of every ApiException, but the one its REST
    layer raises for a TLS failure (status 0) has none: an AttributeError escaped instead of the
    error. Giving it an empty body lets the TLS failure reach api_failure as itself."""

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return request(*args, **kwargs)
        except ApiException as exc:
            if exc.body is None:
                exc.body = b""
            raise

    return call


def _safe_endpoint(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
