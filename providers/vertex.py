"""The Vertex AI target: the pipeline schedules of one project and location.

Talks to `aiplatform_v1.ScheduleServiceClient` directly (not `PipelineJobSchedule`,
whose properties each send a GET), over gRPC by default or REST. The client's own
retry is switched off (`retry=None`) and every call carries an explicit timeout:
retries, backoff and the `Retry-After` / `RetryInfo` hint are `providers.retry`'s,
so every attempt is counted once in `api_requests_total`. A client-side rate
limit keeps a cycle well inside Vertex's quota (about 600 CRUD requests per
minute per project and region).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from providers.deferred import defer_package_init

# The schedule service's own modules only, not every Vertex API (providers/deferred.py).
defer_package_init("google.cloud.aiplatform_v1")
defer_package_init("google.cloud.aiplatform_v1.types")

import grpc  # noqa: E402 - after the deferral above, which must come first
import requests  # noqa: E402
from google.api_core import exceptions as api_exceptions  # noqa: E402
from google.api_core import retry as api_retry  # noqa: E402
from google.api_core.client_options import ClientOptions  # noqa: E402
from google.auth import exceptions as auth_exceptions  # noqa: E402
from google.cloud.aiplatform_v1.services.schedule_service.client import ScheduleServiceClient  # noqa: E402
from google.cloud.aiplatform_v1.services.schedule_service.transports.grpc import (  # noqa: E402
    ScheduleServiceGrpcTransport,
)
from google.cloud.aiplatform_v1.types.schedule import Schedule  # noqa: E402
from google.cloud.aiplatform_v1.types.schedule_service import (  # noqa: E402
    CreateScheduleRequest,
    DeleteScheduleRequest,
    GetScheduleRequest,
    ListSchedulesRequest,
    ListSchedulesResponse,
    PauseScheduleRequest,
    ResumeScheduleRequest,
)
from google.protobuf import json_format, struct_pb2, timestamp_pb2  # noqa: E402
from google.protobuf.message import DecodeError  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402

from providers.base import RequestRecorder, null_recorder  # noqa: E402
from providers.http import pin_verify, tls_verify  # noqa: E402
from providers.retry import Backoff, RateLimiter, Retryable, call_with_retries, parse_retry_after  # noqa: E402
from reconciler.config import VertexTarget as VertexTargetConfig  # noqa: E402
from reconciler.model import ListingError, LiveSchedule, LiveState  # noqa: E402

T = TypeVar("T")

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# 600 CRUD requests/min per project+region is 10/s; leave room for other clients.
DEFAULT_RATE_LIMIT = 8.0
# The modules ZenML's step containers run with `python -m`: `entrypoint` since
# 0.20 (with `--entrypoint_config_source ...StepEntrypointConfiguration`),
# `step_entrypoint` before that.
ZENML_ENTRYPOINT_MODULES = frozenset({"zenml.entrypoints.entrypoint", "zenml.entrypoints.step_entrypoint"})
# ZenML's Vertex orchestrator sets no labels of its own: the job's labels are
# only the user's `VertexOrchestratorSettings.labels` (plus the Vertex SDK's billing
# label), so no label is evidence that ZenML made a schedule.

_STATES = {
    Schedule.State.ACTIVE: LiveState.ENABLED,
    Schedule.State.PAUSED: LiveState.PAUSED,
    Schedule.State.COMPLETED: LiveState.COMPLETED,
}
# Transient on Google APIs: retried with backoff. INTERNAL is the 5xx of gRPC.
_RETRY_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INTERNAL"})
_RETRY_HTTP = frozenset({429, 500, 502, 503, 504})
_AUTH_CODES = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})
# Google's mapping, for REST errors whose body names no status.
_HTTP_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
               409: "ABORTED", 412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
               500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
               504: "DEADLINE_EXCEEDED"}
_NO_RETRY = api_retry.Retry(predicate=lambda exc: False)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ENTRYPOINT_BYTES = b"zenml.entrypoints."  # common to every module in ZENML_ENTRYPOINT_MODULES
_ENTRYPOINT_MARK = frozenset({"entrypoint"})
_NO_MARKS: frozenset[str] = frozenset()
# Listed schedules share one read-only empty `raw` instead of an empty dict each.
_NO_RAW: Mapping[str, Any] = MappingProxyType({})


class VertexError(Exception):
    """A call that failed for good: one line, never a credential.

    `code` is the gRPC code name (over REST too, from the error body).
    """

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class VertexTarget:
    flavor = "vertex"

    def __init__(self, config: VertexTargetConfig, recorder: RequestRecorder = null_recorder,
                 *, backoff: Backoff | None = None) -> None:
        self.config = config
        self.name = config.name
        self.parent = f"projects/{config.project}/locations/{config.location}"
        # The global endpoint does not serve regional resources.
        self.endpoint = config.endpoint or f"https://{config.location}-aiplatform.googleapis.com"
        # target_info shows the endpoint: credentials in it (https://user:pass@host) stay out of metrics.
        self.endpoint = _without_userinfo(self.endpoint)
        self._recorder = recorder
        self._backoff = backoff or Backoff(max_retries=config.max_retries)
        self._limiter = RateLimiter(config.rate_limit or DEFAULT_RATE_LIMIT)
        self._client: ScheduleServiceClient | None = None

    # -- reading -------------------------------------------------------------------

    def list_schedules(self) -> list[LiveSchedule]:
        """Every schedule under the parent, all pages, one request per page."""
        deadline = time.monotonic() + self.config.list_deadline
        mapped: list[Future[list[LiveSchedule]]] = []
        tokens: set[str] = set()
        token = ""
        page = 1
        # Mapping a page is CPU (about 15 us per schedule); fetching the next one is mostly
        # waiting on the network. A second thread maps each page while the next is in
        # flight: the same requests, one after another.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vertex-map-{self.name}") as mapper:
            while True:
                request = ListSchedulesRequest(parent=self.parent, page_size=self.config.page_size, page_token=token)
                try:
                    response = self._call("list_schedules", lambda timeout: self._page(request, timeout), deadline)
                except VertexError as exc:
                    raise ListingError(f"{self._where()}: listing page {page}: {exc}") from None
                mapped.append(mapper.submit(_map_page, response))
                token = response.next_page_token
                if not token:
                    break
                if token in tokens:
                    raise ListingError(f"{self._where()}: listing page {page}: the server repeated a page token")
                tokens.add(token)
                page += 1
            return [live for future in mapped for live in future.result()]

    def get(self, native_id: str) -> LiveSchedule | None:
        """The schedule as it is now; None when it is gone. Raises ListingError."""
        try:
            schedule = self._call("get_schedule", lambda timeout: self._client_().get_schedule(
                request=GetScheduleRequest(name=native_id), retry=None, timeout=timeout))
        except VertexError as exc:
            if exc.code == "NOT_FOUND":
                return None
            raise ListingError(f"{self._where()}: {exc}") from None
        return to_live_schedule(schedule)

    def check(self) -> None:
        """One small listing call: reaches the API and proves the credentials."""
        request = ListSchedulesRequest(parent=self.parent, page_size=1)
        try:
            self._call("list_schedules", lambda timeout: self._page(request, timeout))
        except VertexError as exc:
            raise ListingError(f"{self._where()}: {exc}") from None

    # -- acting --------------------------------------------------------------------

    def pause(self, native_id: str) -> bool:
        """Pause the schedule. False when it does not exist. Raises VertexError."""
        return self._toggle("pause_schedule", native_id, Schedule.State.PAUSED)

    def resume(self, native_id: str) -> bool:
        return self._toggle("resume_schedule", native_id, Schedule.State.ACTIVE)

    def delete(self, native_id: str) -> bool:
        """Delete and wait for the long-running operation. False when it was already gone."""
        deadline = time.monotonic() + self.config.list_deadline
        try:
            future = self._call("delete_schedule", lambda timeout: self._client_().delete_schedule(
                request=DeleteScheduleRequest(name=native_id), retry=None, timeout=timeout), deadline)
        except VertexError as exc:
            if exc.code == "NOT_FOUND":
                return False
            raise VertexError(f"{self._where()}: delete {native_id}: {exc}", exc.code) from None
        pause = 0.2
        while True:
            try:
                # `done()` asks the operations service once (GetOperation) through the
                # future itself, so the real client's future completes; never-retry keeps
                # the retrying ours.
                if self._call("get_operation", lambda timeout: future.done(retry=_NO_RETRY), deadline):
                    break
            except VertexError as exc:
                raise VertexError(f"{self._where()}: delete {native_id}: waiting for the operation: {exc}",
                                  exc.code) from None
            if time.monotonic() + pause >= deadline:
                raise VertexError(f"{self._where()}: delete {native_id}: the operation "
                                  f"{future.operation.name} did not finish within {self.config.list_deadline:g}s",
                                  "DEADLINE_EXCEEDED")
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
        error = future.exception(timeout=0)
        if isinstance(error, api_exceptions.NotFound):
            return False
        if error is not None:
            raise VertexError(f"{self._where()}: delete {native_id}: the operation failed: "
                              f"{_one_line(str(error))}", _code_name(error) if isinstance(
                                  error, api_exceptions.GoogleAPICallError) else "UNKNOWN")
        return True

    def create(self, snapshot: Mapping[str, Any]) -> LiveSchedule:
        """Recreate a schedule from a `raw` snapshot (restore). Raises VertexError.

        Vertex gives it a new name; the snapshot's output-only fields are dropped.
        """
        pb = Schedule.pb()()
        try:
            json_format.ParseDict(dict(snapshot), pb, ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise VertexError(f"{self._where()}: the snapshot is not a Vertex schedule: {_one_line(str(exc))}",
                              "INVALID_ARGUMENT") from None
        for output_only in ("name", "state", "create_time", "update_time", "next_run_time", "last_pause_time",
                            "last_resume_time", "started_run_count", "last_scheduled_run_response"):
            pb.ClearField(output_only)
        schedule = Schedule.wrap(pb)
        try:
            created = self._call("create_schedule", lambda timeout: self._client_().create_schedule(
                request=CreateScheduleRequest(parent=self.parent, schedule=schedule), retry=None, timeout=timeout))
        except VertexError as exc:
            raise VertexError(f"{self._where()}: create {schedule.display_name!r}: {exc}", exc.code) from None
        return to_live_schedule(created)

    def close(self) -> None:
        if self._client is not None:
            self._client.transport.close()
            self._client = None

    # -- plumbing ------------------------------------------------------------------

    def _toggle(self, operation: str, native_id: str, wanted: Schedule.State) -> bool:
        def call(timeout: float) -> None:
            client = self._client_()
            if operation == "pause_schedule":
                client.pause_schedule(request=PauseScheduleRequest(name=native_id), retry=None, timeout=timeout)
            else:
                client.resume_schedule(request=ResumeScheduleRequest(name=native_id), retry=None, timeout=timeout)

        try:
            self._call(operation, call)
        except VertexError as exc:
            if exc.code == "NOT_FOUND":
                return False
            # Pausing a paused schedule is refused (FAILED_PRECONDITION, a 400 over REST):
            # if it is already where we want it, the action is done.
            if exc.code in ("FAILED_PRECONDITION", "INVALID_ARGUMENT"):
                current = self.get(native_id)
                if current is None:
                    return False
                if current.state is _STATES[wanted]:
                    return True
            raise VertexError(f"{self._where()}: {operation.split('_')[0]} {native_id}: {exc}", exc.code) from None
        return True

    def _page(self, request: ListSchedulesRequest, timeout: float) -> ListSchedulesResponse:
        pager = self._client_().list_schedules(request=request, retry=None, timeout=timeout)
        # The pager's first page is this request's answer; its later pages would be
        # fetched inside iteration, out of reach of our retries, so we ask for each page ourselves.
        return next(iter(pager.pages))

    def _call(self, operation: str, call: Callable[[float], T], deadline: float | None = None) -> T:
        """One logical call with rate limit, timeout, counted attempts and bounded retries."""
        rest = self.config.transport == "rest"

        def attempt() -> T:
            self._limiter.acquire()
            timeout = self.config.timeout
            if deadline is not None:
                timeout = max(0.001, min(timeout, deadline - time.monotonic()))
            try:
                result = call(timeout)
            except api_exceptions.GoogleAPICallError as exc:
                code = _code_name(exc)
                self._recorder(operation, str(exc.code) if rest and exc.code else code)
                text = _describe(operation, exc, code, rest)
                if code in _RETRY_CODES or (rest and exc.code in _RETRY_HTTP):
                    raise Retryable(text, retry_after=_retry_hint(exc)) from None
                raise VertexError(text, code) from None
            except requests.Timeout:
                self._recorder(operation, "timeout")
                raise Retryable(f"{operation}: timed out after {timeout:.1f}s") from None
            except requests.ConnectionError as exc:
                self._recorder(operation, "error")
                raise Retryable(f"{operation}: cannot connect ({_connection_reason(exc)})") from None
            except auth_exceptions.GoogleAuthError as exc:
                # Includes a 401 over REST: the session tries to refresh the credentials and fails.
                self._recorder(operation, "error")
                raise VertexError(
                    f"{operation}: UNAUTHENTICATED: the credentials were refused or cannot be refreshed "
                    f"({type(exc).__name__}: {_one_line(str(exc))}); check `credentials` "
                    f"({_credentials_kind(self.config.credentials)})", "UNAUTHENTICATED") from None
            except (json_format.ParseError, DecodeError, UnicodeDecodeError) as exc:
                self._recorder(operation, "error")
                raise VertexError(f"{operation}: the answer is malformed ({type(exc).__name__})",
                                      "DATA_LOSS") from None
            self._recorder(operation, "200" if rest else "OK")
            return result

        try:
            return call_with_retries(attempt, self._backoff, deadline)
        except Retryable as exc:
            raise VertexError(f"{exc} (gave up after retries)", "UNAVAILABLE") from None

    def _client_(self) -> ScheduleServiceClient:
        """Built on first use, so missing credentials fail the target's listing, not the daemon."""
        if self._client is None:
            try:
                self._client = self._build_client()
            except auth_exceptions.GoogleAuthError as exc:
                raise VertexError(
                    f"credentials ({_credentials_kind(self.config.credentials)}): {type(exc).__name__}: "
                    f"{_one_line(str(exc))}", "UNAUTHENTICATED") from None
            except OSError as exc:
                raise VertexError(f"credentials file: {exc.strerror or exc}", "UNAUTHENTICATED") from None
        return self._client

    def _build_client(self) -> ScheduleServiceClient:
        config = self.config
        plain_http = self.endpoint.startswith("http://")
        if config.transport == "grpc" and plain_http:
            host = self.endpoint.removeprefix("http://").rstrip("/")
            return ScheduleServiceClient(transport=ScheduleServiceGrpcTransport(channel=grpc.insecure_channel(host)))
        credentials = _credentials(config.credentials)
        if config.transport == "grpc":
            host = re.sub(r"^https://", "", self.endpoint).rstrip("/")
            ssl = None
            if config.ca_bundle:
                with open(config.ca_bundle, "rb") as handle:
                    ssl = grpc.ssl_channel_credentials(root_certificates=handle.read())
            return ScheduleServiceClient(transport=ScheduleServiceGrpcTransport(
                host=host, credentials=credentials, ssl_channel_credentials=ssl))
        client = ScheduleServiceClient(credentials=credentials, transport="rest",
                                       client_options=ClientOptions(api_endpoint=self.endpoint))
        # The REST transport's AuthorizedSession is a requests.Session built without our TLS settings.
        pin_verify(client._transport._session, tls_verify(config.verify_tls, config.ca_bundle))
        return client

    def _where(self) -> str:
        return f"vertex target {self.name!r} ({self.parent})"


# -- mapping -------------------------------------------------------------------------


def _map_page(response: ListSchedulesResponse) -> list[LiveSchedule]:
    """A listing page, read from the protobuf messages themselves, without `raw`.

    `raw` (a dict copy of the whole API object, 7-10 KB each) stays out of listings:
    at 100,000 schedules it was most of the daemon's memory. `get()` fills it for the
    audit snapshot before an action.
    """
    return [_listed(pb) for pb in ListSchedulesResponse.pb(response).schedules]


def to_live_schedule(schedule: Schedule) -> LiveSchedule:
    """A single schedule (get, create) with its `raw` API object for audit snapshots."""
    pb = Schedule.pb(schedule)
    return replace(_listed(pb), raw=json_format.MessageToDict(pb))


def _listed(pb: Any) -> LiveSchedule:
    """The LiveSchedule of a raw `Schedule` protobuf message, `raw` left empty."""
    job = pb.create_pipeline_job_request.pipeline_job
    created = _pb_time(pb, "create_time")
    start = _pb_time(pb, "start_time")
    return LiveSchedule(
        native_id=pb.name,
        name=pb.display_name,
        # An unknown or unspecified state runs nothing we can vouch for: report it paused.
        state=_STATES.get(pb.state, LiveState.PAUSED),
        # Vertex starts a schedule at its creation unless told otherwise: one object for both.
        start_time=created if start == created else start,
        end_time=_pb_time(pb, "end_time"),
        created=created,
        # Interned: the same few strings on every schedule (label keys, crons) are kept once.
        cron=sys.intern(pb.cron) if pb.cron else None,
        labels={sys.intern(k): v for k, v in job.labels.items()},
        zenml_marks=_ENTRYPOINT_MARK if _spec_runs_zenml_entrypoint(job.pipeline_spec) else _NO_MARKS,
        raw=_NO_RAW,
    )


def _spec_runs_zenml_entrypoint(spec: struct_pb2.Struct) -> bool:
    """`runs_zenml_entrypoint` of a pipeline spec still in protobuf form.

    Every string the check can match contains `zenml.entrypoints.`, and protobuf
    stores strings as their UTF-8 bytes, so a part of the spec whose encoding lacks
    those bytes (all of a spec not made by ZenML, most of one made by it) is
    skipped without being walked.
    """
    return _ENTRYPOINT_BYTES in spec.SerializeToString() and _struct_runs(spec)


# The same walk as runs_zenml_entrypoint, over Struct / ListValue / Value messages,
# entering only the parts whose encoding holds the entrypoint's prefix.
def _struct_runs(struct: struct_pb2.Struct) -> bool:
    return any(_value_runs(value) for value in struct.fields.values()
               if _ENTRYPOINT_BYTES in value.SerializeToString())


def _list_runs(values: Any) -> bool:
    strings = [v.string_value if v.WhichOneof("kind") == "string_value" else None for v in values]
    for i, item in enumerate(strings[:-1]):
        if item == "-m" and strings[i + 1] in ZENML_ENTRYPOINT_MODULES:
            return True
    return any(_value_runs(v) for v in values if _ENTRYPOINT_BYTES in v.SerializeToString())


def _value_runs(value: struct_pb2.Value) -> bool:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return _struct_runs(value.struct_value)
    if kind == "list_value":
        return _list_runs(value.list_value.values)
    if kind == "string_value":
        return runs_zenml_entrypoint(value.string_value)
    return False


def runs_zenml_entrypoint(spec: Any) -> bool:
    """Whether a pipeline spec starts a container with `python -m <ZenML's entrypoint>`.

    Looks at every command list, also inside JSON strings (a step run as a
    custom training job carries its worker pool spec as a JSON payload).
    """
    if isinstance(spec, Mapping):
        return any(runs_zenml_entrypoint(v) for v in spec.values())
    if isinstance(spec, list):
        for i, item in enumerate(spec[:-1]):
            # isinstance first: a list or dict after "-m" is unhashable, and no module name.
            if item == "-m" and isinstance(spec[i + 1], str) and spec[i + 1] in ZENML_ENTRYPOINT_MODULES:
                return True
        return any(runs_zenml_entrypoint(v) for v in spec)
    if isinstance(spec, str) and spec[:1] in ("{", "[") and "zenml.entrypoints." in spec:
        try:
            return runs_zenml_entrypoint(json.loads(spec))
        except ValueError:
            return False
    return False


def _pb_time(pb: Any, field: str) -> datetime | None:
    """A Timestamp field as an aware UTC datetime (microseconds, as proto-plus gives it); None when unset."""
    if not pb.HasField(field):
        return None
    value: timestamp_pb2.Timestamp = getattr(pb, field)
    return _EPOCH + timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


# -- errors ----------------------------------------------------------------------------


def _code_name(exc: api_exceptions.GoogleAPICallError) -> str:
    """The gRPC code name; over REST from the error body's `status`, else from the HTTP status."""
    code = exc.grpc_status_code
    if isinstance(code, grpc.StatusCode):
        return code.name
    try:
        status = exc.response.json()["error"]["status"]
    except (AttributeError, ValueError, KeyError, TypeError):
        status = None
    if isinstance(status, str) and status.isupper():
        return status
    return _HTTP_CODES.get(exc.code or 0, "UNKNOWN")


def _describe(operation: str, exc: api_exceptions.GoogleAPICallError, code: str, rest: bool) -> str:
    status = f"{code} (HTTP {exc.code})" if rest and exc.code else code
    if "CERTIFICATE_VERIFY_FAILED" in (exc.message or ""):
        # gRPC's own text is long and cut before this, the part that says what to fix.
        return f"{operation}: {status}: TLS certificate verify failed (set ca_bundle to the server's CA)"
    text = f"{operation}: {status}: {_one_line(exc.message or '')}"
    if code in _AUTH_CODES:
        text += "; check the target's credentials and their Vertex AI permissions"
    return text


def _retry_hint(exc: api_exceptions.GoogleAPICallError) -> float | None:
    """Seconds to wait: google.rpc.RetryInfo in the error details, else a Retry-After header."""
    for detail in exc.details or []:
        if isinstance(detail, error_details_pb2.RetryInfo):
            return detail.retry_delay.ToTimedelta().total_seconds()
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = str(detail.get("retryDelay", ""))
            if re.fullmatch(r"\d+(\.\d+)?s", delay):
                return float(delay[:-1])
    headers = getattr(exc.response, "headers", None)
    if headers is not None:
        return parse_retry_after(headers.get("Retry-After"))
    return None


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    # The REST client puts the request URL in its messages; drop the query string.
    line = re.sub(r"(https?://\S+?)\?\S*", r"\1", line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _connection_reason(exc: requests.ConnectionError) -> str:
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in text else "TLS handshake failed"
    for marker in ("Connection refused", "Name or service not known", "No route to host", "Connection reset"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _credentials_kind(value: str) -> str:
    return value if value in ("default", "anonymous") else "key file"


def _credentials(value: str) -> Any:
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    if value == "anonymous":
        return AnonymousCredentials()
    if value == "default":
        credentials, _ = google.auth.default(scopes=SCOPES)
        return credentials
    credentials, _ = google.auth.load_credentials_from_file(value, scopes=SCOPES)
    return credentials
