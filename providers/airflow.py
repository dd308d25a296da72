"""The Airflow target: every DAG of one Airflow deployment, as live schedules.

Airflow 3 speaks `/api/v2` with a JWT from `POST /auth/token`; it is reached
through `apache-airflow-client` 3.x. Airflow 2 speaks `/api/v1` with basic
auth; its client (2.x) cannot be installed beside the 3.x one, so it is plain
HTTP through providers.http.HttpClient. `api_version: auto` asks the server
once which of the two it speaks.

Each DAG becomes one LiveSchedule: native_id = name = dag_id; paused or enabled;
the cron or interval from `timetable_summary` (v2) or `schedule_interval` (v1);
stale when Airflow has seen its file disappear. A listing that fails or does
not add up part way raises ListingError: never a partial list.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import urllib3
from airflow_client.client import ApiClient, Configuration
from airflow_client.client.api.dag_api import DAGApi
from airflow_client.client.models.dag_patch_body import DAGPatchBody

from providers.base import RequestRecorder, null_recorder
from providers.http import RETRY_STATUSES, HttpClient, HttpError, tls_verify
from providers.retry import Backoff, RateLimiter, Retryable, call_with_retries, parse_retry_after
from reconciler.config import AirflowTarget as AirflowTargetConfig
from reconciler.config import ConfigError, secret
from reconciler.model import ListingError, LiveSchedule, LiveState

# ZenML's Airflow orchestrator ships every pipeline as `<dag_id>.zip` holding its
# generator module as `dag.py` (zenml/integrations/airflow/orchestrators:
# `_write_dag`), so Airflow reports the DAG's file as `.../<dag_id>.zip/dag.py`.
# It sets no tags of its own (only the user's `dag_tags`), so this is its one mark.
ZENML_DAG_ZIP_MARK = "zenml_dag_zip"

# `str(datetime.timedelta)`: "6:00:00", "1 day, 0:00:00", "2 days, 1:30:00.500000".
_TIMEDELTA = re.compile(r"^(?:(-?\d+) days?, )?(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$")
# A cron as Airflow shows it: 5 fields (6 with seconds/years), or an @-preset Airflow
# expands into a cron itself. Anything else (assets, @once, custom timetables) has no cron.
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?#LW-]+$")
_TOKEN_MARGIN = 60.0  # refresh a JWT this long before it expires
_NO_RAW: Mapping[str, Any] = MappingProxyType({})  # shared by listed DAGs, which keep no `raw`


class AirflowTarget:
    flavor = "airflow"

    def __init__(self, config: AirflowTargetConfig, recorder: RequestRecorder = null_recorder) -> None:
        self.name = config.name
        self.endpoint = _without_userinfo(config.url.rstrip("/"))
        self._config = config
        self._base_url = config.url.rstrip("/")
        self._recorder = recorder
        self._backoff = Backoff(max_retries=config.max_retries)
        self._version: str | None = None if config.api_version == "auto" else config.api_version
        self._credentials: tuple[str, str] | None = None
        self._credentials_read = False
        self._token: str | None = None
        self._token_expires = 0.0
        verify = tls_verify(config.verify_tls, config.ca_bundle)
        self._http = HttpClient(
            self._base_url, recorder, timeout=config.timeout, backoff=self._backoff, verify=verify,
            rate_limit=config.rate_limit, auth_headers=self._v1_auth_headers,
        )
        self._v2_api: DAGApi | None = None
        self._v2_limiter = RateLimiter(config.rate_limit)

    # -- the TargetProvider protocol ------------------------------------------------

    def list_schedules(self) -> list[LiveSchedule]:
        deadline = time.monotonic() + self._config.list_deadline
        try:
            version = self._api_version(deadline)
            fetch = self._v2_page if version == "v2" else self._v1_page
            dags = _all_pages(fetch, self._config.page_size, deadline)
            # No `raw` in a listing (memory at scale); get() keeps it for audit snapshots.
            return [_live(dag, version, keep_raw=False) for dag in dags]
        except (HttpError, _CallError, ConfigError) as exc:
            raise ListingError(f"airflow target {self.name}: listing DAGs failed: {exc}") from None

    @property
    def api_version(self) -> str:
        """v2 or v1; with `auto`, asked of the server on first use and kept."""
        try:
            return self._api_version(self._one_call_deadline())
        except (HttpError, _CallError, ConfigError) as exc:
            raise ListingError(f"airflow target {self.name}: {exc}") from None

    def check(self) -> None:
        deadline = self._one_call_deadline()
        try:
            version = self._api_version(deadline)
            # One small authenticated page proves both reachability and credentials.
            (self._v2_page if version == "v2" else self._v1_page)(0, 1, deadline)
        except (HttpError, _CallError, ConfigError) as exc:
            raise ListingError(f"airflow target {self.name}: {exc}") from None

    def close(self) -> None:
        self._http.close()
        if self._v2_api is not None:
            self._v2_api.api_client.rest_client.pool_manager.clear()

    # -- single DAGs, for cleanup ---------------------------------------------------

    def get(self, native_id: str) -> LiveSchedule | None:
        """The DAG now, or None when Airflow does not know it."""
        return self._one_dag(native_id, "get_dag", "GET")

    def pause(self, native_id: str) -> LiveSchedule | None:
        """Pause the DAG; returns it as Airflow now shows it, None when it is gone."""
        return self._one_dag(native_id, "patch_dag", "PATCH", paused=True)

    def resume(self, native_id: str) -> LiveSchedule | None:
        return self._one_dag(native_id, "patch_dag", "PATCH", paused=False)

    def delete(self, native_id: str) -> bool:
        """Delete the DAG's metadata; False when it was already gone.

        Airflow brings back a DAG whose file still exists at the next parse
        (unpaused), so callers delete only DAGs that are stale.
        """
        try:
            deadline = self._one_call_deadline()
            if self._api_version(deadline) == "v2":
                status, _ = self._v2_call(
                    "delete_dag", "DELETE", f"/api/v2/dags/{native_id}", deadline,
                    lambda api, **kw: api.delete_dag_without_preload_content(dag_id=native_id, **kw),
                    accept=(200, 204, 404),
                )
            else:
                status, _ = self._v1_call("DELETE", native_id, "delete_dag", deadline)
        except (HttpError, _CallError, ConfigError) as exc:
            raise ListingError(f"airflow target {self.name}: deleting DAG {native_id} failed: {exc}") from None
        return status != 404

    def _one_dag(self, native_id: str, operation: str, method: str, paused: bool | None = None) -> LiveSchedule | None:
        try:
            deadline = self._one_call_deadline()
            version = self._api_version(deadline)
            if version == "v2":
                if paused is None:
                    call = lambda api, **kw: api.get_dag_without_preload_content(dag_id=native_id, **kw)  # noqa: E731
                else:
                    body = DAGPatchBody(is_paused=paused)
                    call = lambda api, **kw: api.patch_dag_without_preload_content(  # noqa: E731
                        dag_id=native_id, dag_patch_body=body, update_mask=["is_paused"], **kw)
                status, dag = self._v2_call(operation, method, f"/api/v2/dags/{native_id}", deadline, call,
                                            accept=(200, 404))
            elif paused is None:
                status, dag = self._v1_call(method, native_id, operation, deadline)
            else:
                status, dag = self._v1_call(method, native_id, operation, deadline, json={"is_paused": paused},
                                            params={"update_mask": "is_paused"})
            return None if status == 404 else _live(_object(dag, "DAG"), version)
        except (HttpError, _CallError, ConfigError) as exc:
            raise ListingError(f"airflow target {self.name}: {method} DAG {native_id} failed: {exc}") from None

    def _one_call_deadline(self) -> float:
        return time.monotonic() + self._config.timeout * (self._config.max_retries + 2)

    # -- version and credentials --------------------------------------------------

    def _api_version(self, deadline: float) -> str:
        """v2 or v1: from config, or asked once of the server and kept."""
        if self._version is not None:
            return self._version
        # Both version endpoints answer without credentials; a server without the
        # path answers 404 (Airflow 3 dropped /api/v1, Airflow 2 has no /api/v2).
        for version in ("v2", "v1"):
            try:
                self._http.request("GET", f"/api/{version}/version", "version", deadline=deadline,
                                   authenticated=False)
            except HttpError as exc:
                if exc.status in (401, 403):
                    self._version = version
                    return version
                if exc.status == 404:
                    continue
                raise
            self._version = version
            return version
        raise _CallError("neither /api/v2/version nor /api/v1/version exists: is this an Airflow API server?")

    def _read_credentials(self) -> tuple[str, str] | None:
        if not self._credentials_read:
            cfg = self._config
            username = secret(cfg.username_env, cfg.username_file)
            password = secret(cfg.password_env, cfg.password_file)
            if (username is None) != (password is None):
                raise ConfigError(f"airflow target {cfg.name}: set both a username and a password, or neither")
            self._credentials = None if username is None or password is None else (username, password)
            self._credentials_read = True
        return self._credentials

    def _v1_auth_headers(self) -> Mapping[str, str]:
        if self._version != "v1":
            return {}
        credentials = self._read_credentials()
        if credentials is None:
            return {}
        raw = f"{credentials[0]}:{credentials[1]}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    def _bearer(self, deadline: float) -> dict[str, str]:
        credentials = self._read_credentials()
        if credentials is None:
            return {}  # a server that lets everyone in (simple_auth_manager_all_admins)
        if self._token is None or time.time() >= self._token_expires - _TOKEN_MARGIN:
            self._login(credentials, deadline)
        return {"Authorization": f"Bearer {self._token}"}

    def _login(self, credentials: tuple[str, str], deadline: float) -> None:
        # `/auth/token` belongs to the auth manager (simple or FAB), not to the public
        # REST API, so the generated client has no method for it.
        try:
            response = self._http.request(
                "POST", "/auth/token", "auth_token", json={"username": credentials[0], "password": credentials[1]},
                deadline=deadline, authenticated=False,
            )
            token = response.json().get("access_token")
        except HttpError as exc:
            raise _CallError(f"login as {credentials[0]!r} failed: {exc}") from None
        except (ValueError, AttributeError):
            raise _CallError("login failed: POST /auth/token did not answer with an access_token") from None
        if not isinstance(token, str) or not token:
            raise _CallError("login failed: POST /auth/token did not answer with an access_token")
        self._token = token
        self._token_expires = _jwt_expiry(token)

    # -- Airflow 3: /api/v2 through apache-airflow-client ---------------------------

    def _v2_client(self) -> DAGApi:
        if self._v2_api is None:
            configuration = Configuration(host=self._base_url)
            configuration.verify_ssl = self._config.verify_tls
            configuration.ssl_ca_cert = self._config.ca_bundle
            # Our own retries (counted per attempt) replace urllib3's silent ones.
            configuration.retries = False
            self._v2_api = DAGApi(ApiClient(configuration))
        return self._v2_api

    def _v2_page(self, offset: int, limit: int, deadline: float) -> Any:
        # The `_without_preload_content` variant returns the raw answer: the 3.x
        # client's models are strict (e.g. DAGResponse requires `timetable_partitioned`,
        # which Airflow 3.0/3.1 servers do not send), so deserialising through them
        # would break against any server older than the client. The raw JSON of a
        # single DAG (get) also is the audit snapshot kept in LiveSchedule.raw.
        _, body = self._v2_call(
            "list_dags", "GET", "/api/v2/dags", deadline,
            lambda api, **kw: api.get_dags_without_preload_content(
                limit=limit, offset=offset, exclude_stale=False, order_by=["dag_id"], **kw),
        )
        return body

    def _v2_call(
        self, operation: str, method: str, path: str, deadline: float, call: Callable[..., Any],
        accept: tuple[int, ...] = (200,),
    ) -> tuple[int, Any]:
        """One logical v2 call with retries; returns (status, parsed JSON or None)."""
        api = self._v2_client()
        relogged = False

        def attempt() -> tuple[int, Any]:
            nonlocal relogged
            self._v2_limiter.acquire()
            timeout = max(0.001, min(self._config.timeout, deadline - time.monotonic()))
            headers = self._bearer(deadline)
            try:
                response = call(api, _request_timeout=float(timeout), _headers=headers)
                status = int(response.status)
                data = response.data
                response.release_conn()
            except urllib3.exceptions.NewConnectionError as exc:
                # Caught before TimeoutError: urllib3 derives it from ConnectTimeoutError, so a refused
                # connection would otherwise be reported (and recorded) as a timeout.
                self._recorder(operation, "error")
                reason = "connection refused" if "refused" in str(exc).lower() else type(exc).__name__
                raise Retryable(f"{method} {path}: cannot connect ({reason})") from None
            except urllib3.exceptions.TimeoutError:
                self._recorder(operation, "timeout")
                raise Retryable(f"{method} {path}: timed out after {timeout:.1f}s") from None
            except urllib3.exceptions.HTTPError as exc:
                self._recorder(operation, "error")
                raise Retryable(f"{method} {path}: cannot connect ({type(exc).__name__})") from None
            self._recorder(operation, str(status))
            if status == 401 and headers and not relogged:
                relogged = True
                self._token = None  # expired or revoked early: log in again, once
                raise Retryable(f"{method} {path}: 401, token refreshed", retry_after=0)
            if status in RETRY_STATUSES:
                raise Retryable(
                    f"{method} {path}: HTTP {status}",
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                )
            return status, data

        try:
            status, data = call_with_retries(attempt, self._backoff, deadline)
        except Retryable as exc:
            raise _CallError(f"{exc} (gave up after retries)") from None
        if status not in accept:
            raise _CallError(f"{method} {path}: HTTP {status}{_detail(data)}")
        if status == 404 or not data:
            return status, None
        try:
            return status, json.loads(data)
        except ValueError:
            raise _CallError(f"{method} {path}: the answer is not JSON") from None

    # -- Airflow 2: /api/v1 over plain HTTP ---------------------------------------

    def _v1_page(self, offset: int, limit: int, deadline: float) -> Any:
        # only_active=false: inactive DAGs (file gone) are the orphans worth seeing.
        return self._http.get_json(
            "/api/v1/dags", "list_dags", deadline=deadline,
            params={"limit": limit, "offset": offset, "only_active": "false", "order_by": "dag_id"},
        )

    def _v1_call(self, method: str, dag_id: str, operation: str, deadline: float, **kwargs: Any) -> tuple[int, Any]:
        try:
            response = self._http.request(method, f"/api/v1/dags/{quote(dag_id, safe='')}", operation,
                                          deadline=deadline, **kwargs)
        except HttpError as exc:
            if exc.status == 404:
                return 404, None
            raise
        if response.status_code == 204 or not response.content:
            return response.status_code, None
        try:
            return response.status_code, response.json()
        except ValueError:
            raise _CallError(f"{method} /api/v1/dags/{dag_id}: the answer is not JSON") from None


class _CallError(Exception):
    """A v2 call or a login that failed for good; the message is safe to show."""


def _all_pages(fetch: Callable[[int, int, float], Any], page_size: int, deadline: float) -> list[dict[str, Any]]:
    """Every DAG, page by page; raises ListingError unless the pages add up.

    Offset paging over a list that changes can skip or repeat a DAG, so the
    total must stay the same on every page and the pages must hold exactly that
    many distinct dag_ids. A moving total means: try again next cycle.
    """
    dags: dict[str, dict[str, Any]] = {}
    total: int | None = None
    offset = 0
    while True:
        if time.monotonic() >= deadline:
            raise _CallError(f"listing DAGs took longer than the list deadline (stopped at offset {offset})")
        page = _object(fetch(offset, page_size, deadline), "page")
        items = page.get("dags")
        page_total = page.get("total_entries")
        if not isinstance(items, list) or not isinstance(page_total, int) or isinstance(page_total, bool):
            raise _CallError(f"the DAG page at offset {offset} is malformed (no dags list or total_entries)")
        if total is None:
            total = page_total
        elif page_total != total:
            raise _CallError(f"the DAG count changed from {total} to {page_total} while paging; listing discarded")
        for item in items:
            dag = _object(item, "DAG")
            dag_id = dag.get("dag_id")
            if not isinstance(dag_id, str) or not dag_id:
                raise _CallError(f"a DAG at offset {offset} has no dag_id")
            if dag_id in dags:
                raise _CallError(f"DAG {dag_id} came back twice while paging; listing discarded")
            dags[dag_id] = dag
        offset += len(items)
        if offset >= total:
            break
        if not items:
            raise _CallError(f"the DAG page at offset {offset} is empty but {total} DAGs were announced")
    if len(dags) != total:
        raise _CallError(f"paging returned {len(dags)} DAGs but {total} were announced; listing discarded")
    return list(dags.values())


def _live(dag: Mapping[str, Any], version: str, keep_raw: bool = True) -> LiveSchedule:
    dag_id = dag.get("dag_id")
    if not isinstance(dag_id, str) or not dag_id:
        raise _CallError("a DAG without a dag_id")
    if version == "v2":
        cron, interval = _from_summary(dag.get("timetable_summary"))
        stale = bool(dag.get("is_stale"))
    else:
        cron, interval = _from_schedule_interval(dag.get("schedule_interval"))
        stale = dag.get("is_active") is False
    marks = frozenset({ZENML_DAG_ZIP_MARK}) if _zenml_zip(dag_id, dag.get("fileloc")) else frozenset()
    return LiveSchedule(
        native_id=dag_id,
        name=dag_id,
        state=LiveState.PAUSED if dag.get("is_paused") else LiveState.ENABLED,
        cron=cron,
        interval_seconds=interval,
        labels=_labels(dag.get("tags")),
        zenml_marks=marks,
        stale=stale,
        raw=dict(dag) if keep_raw else _NO_RAW,
    )


def _from_summary(summary: Any) -> tuple[str | None, float | None]:
    """Airflow 3's `timetable_summary`: a cron, `str(timedelta)`, or something else."""
    if not isinstance(summary, str) or not summary.strip() or summary.strip() == "None":
        return None, None
    text = summary.strip()
    match = _TIMEDELTA.match(text)
    if match:
        days, hours, minutes, seconds = match.groups()
        return None, int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if _looks_like_cron(text):
        return text, None
    return None, None


def _from_schedule_interval(value: Any) -> tuple[str | None, float | None]:
    """Airflow 2's `schedule_interval`: `{"__type": "CronExpression" | "TimeDelta" | ...}`."""
    if not isinstance(value, Mapping):
        return None, None
    kind = value.get("__type", value.get("type"))
    if kind == "CronExpression":
        cron = value.get("value")
        return (cron.strip() if isinstance(cron, str) and _looks_like_cron(cron.strip()) else None), None
    if kind == "TimeDelta":
        try:
            seconds = (float(value.get("days") or 0) * 86400 + float(value.get("seconds") or 0)
                       + float(value.get("microseconds") or 0) / 1e6)
        except (TypeError, ValueError):
            return None, None
        return None, seconds
    return None, None  # RelativeDelta and anything newer: no cron, no fixed interval


def _looks_like_cron(text: str) -> bool:
    fields = text.split()
    return 5 <= len(fields) <= 7 and all(_CRON_FIELD.match(f) for f in fields)


def _zenml_zip(dag_id: str, fileloc: Any) -> bool:
    return isinstance(fileloc, str) and fileloc.replace("\\", "/").endswith(f"/{dag_id}.zip/dag.py")


def _labels(tags: Any) -> dict[str, str]:
    """Airflow tags are plain strings; `key=value` or `key:value` become a label, others map to ""."""
    labels: dict[str, str] = {}
    if not isinstance(tags, list):
        return labels
    for tag in tags:
        name = tag.get("name") if isinstance(tag, Mapping) else tag
        if not isinstance(name, str) or not name:
            continue
        for separator in ("=", ":"):
            if separator in name:
                key, value = name.split(separator, 1)
                labels[key] = value
                break
        else:
            labels[name] = ""
    return labels


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _CallError(f"the Airflow API answered a {what} that is not a JSON object")
    return value


def _jwt_expiry(token: str) -> float:
    """The `exp` claim (epoch seconds), read without verifying: only to refresh in time."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return float("inf")  # no readable expiry: keep it until the server answers 401


def _detail(data: bytes | None) -> str:
    """A short, secret-free hint from an error body (`detail` when it is a string)."""
    try:
        body = json.loads(data or b"")
    except ValueError:
        return ""
    detail = body.get("detail") if isinstance(body, dict) else None
    return f": {detail[:200]}" if isinstance(detail, str) and detail else ""


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
