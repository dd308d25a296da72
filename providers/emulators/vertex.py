"""A wire-level emulator of Vertex AI's ScheduleService, speaking gRPC and REST.

The real `aiplatform_v1.ScheduleServiceClient` works against it unchanged with
either transport: gRPC (`google.cloud.aiplatform.v1.ScheduleService` plus
`google.longrunning.Operations/GetOperation`) and REST (`/v1/...` paths,
`:pause` / `:resume` custom verbs, camelCase JSON as `json_format` emits it,
Google's `{"error": {"code", "message", "status"}}` body). Both transports share
one state, one fault plan and one request log, with the same operation names:
list_schedules, get_schedule, create_schedule, pause_schedule, resume_schedule,
delete_schedule, get_operation.

Deleting is a long-running operation: the schedule disappears and the operation
turns `done` after `operation_delay` seconds, so the client's operation future
has something real to poll.

Standalone (the sandbox runs it this way), bound to 127.0.0.1:

    python -m providers.emulators.vertex --port 8123 --grpc-port 8124 --seed seed.json
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn

import grpc
from google.cloud.aiplatform_v1.types import (
    CreatePipelineJobRequest,
    CreateScheduleRequest,
    DeleteScheduleRequest,
    GetScheduleRequest,
    ListSchedulesRequest,
    ListSchedulesResponse,
    PauseScheduleRequest,
    PipelineJob,
    ResumeScheduleRequest,
    Schedule,
)
from google.cloud.aiplatform_v1.types.operation import DeleteOperationMetadata, GenericOperationMetadata
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2, json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from providers.emulators.base import Fault, HttpEmulator, LoggedRequest, Request, Response, serve_until_signalled

SERVICE = "google.cloud.aiplatform.v1.ScheduleService"
OPERATIONS_SERVICE = "google.longrunning.Operations"
MAX_PAGE_SIZE = 100  # the real service caps page_size at 100
DEFAULT_PAGE_SIZE = 100

# How ZenML's step containers start (zenml.entrypoints.base_entrypoint_configuration:
# DEFAULT_ENTRYPOINT_COMMAND, with the step configuration class as an argument).
ZENML_ENTRYPOINT_COMMAND = ["python", "-m", "zenml.entrypoints.entrypoint"]
ZENML_STEP_CONFIG_SOURCE = "zenml.entrypoints.step_entrypoint_configuration.StepEntrypointConfiguration"
# The Vertex SDK's PipelineJob adds this label to every job it builds.
SDK_BILLING_LABEL = "vertex-ai-pipelines-run-billing-id"

# Bytes that no protobuf message parses: field 1, length-delimited, 4 GiB long.
MALFORMED_PROTO = b"\x0a\xff\xff\xff\xff\x0f"

_NAME = r"projects/[^/]+/locations/[^/]+"
_SCHEDULE = _NAME + r"/schedules/[^/:]+"
_OPERATION = _NAME + r"/(?:schedules/[^/]+/)?operations/[^/:]+"

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# A fault names an HTTP status; over gRPC it becomes the code Google maps it from.
_GRPC_CODE = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    410: grpc.StatusCode.NOT_FOUND,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def grpc_code_for(status: int) -> grpc.StatusCode:
    return _GRPC_CODE.get(status, grpc.StatusCode.UNKNOWN)


def http_status_for(code: grpc.StatusCode) -> int:
    return _HTTP_STATUS.get(code, 500)


class ApiError(Exception):
    """An answer the real service would give as an error status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return http_status_for(self.code)


@dataclass
class _Operation:
    name: str
    schedule: str
    created: datetime
    due: float  # time.monotonic() at which it is done
    done: bool = False


def zenml_pipeline_spec(pipeline_name: str, steps: Iterable[str] = ("trainer",),
                        image: str = "europe-docker.pkg.dev/demo/zenml/pipeline:latest") -> dict[str, Any]:
    """A compiled KFP v2 pipeline spec shaped like the one ZenML's Vertex orchestrator submits."""
    deployment_id = "5c1e0b4e-0c67-4b1e-9a53-3a1c3f0e7d21"
    executors = {}
    tasks = {}
    for step in steps:
        executors[f"exec-{step}"] = {"container": {
            "image": image,
            "command": list(ZENML_ENTRYPOINT_COMMAND),
            "args": ["--entrypoint_config_source", ZENML_STEP_CONFIG_SOURCE,
                     "--deployment_id", deployment_id, "--step_name", step],
            "env": [{"name": "ZENML_VERTEX_RUN_ID", "value": "{{$.pipeline_job_name}}"}],
        }}
        tasks[step] = {"taskInfo": {"name": step}, "componentRef": {"name": f"comp-{step}"},
                       "cachingOptions": {}}
    return {
        "pipelineInfo": {"name": re.sub(r"[^a-z0-9-]", "-", pipeline_name.lower())},
        "deploymentSpec": {"executors": executors},
        "components": {f"comp-{s}": {"executorLabel": f"exec-{s}"} for s in steps},
        "root": {"dag": {"tasks": tasks}},
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.13.0",
    }


def plain_pipeline_spec(pipeline_name: str) -> dict[str, Any]:
    """A pipeline spec someone wrote by hand: no ZenML entrypoint anywhere."""
    return {
        "pipelineInfo": {"name": pipeline_name},
        "deploymentSpec": {"executors": {"exec-train": {"container": {
            "image": "python:3.11", "command": ["python", "train.py"], "args": ["--epochs", "3"]}}}},
        "components": {"comp-train": {"executorLabel": "exec-train"}},
        "root": {"dag": {"tasks": {"train": {"taskInfo": {"name": "train"},
                                              "componentRef": {"name": "comp-train"}}}}},
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.13.0",
    }


class VertexEmulator(HttpEmulator):
    """ScheduleService state behind one REST server and one gRPC server."""

    name = "vertex-emulator"

    def __init__(self, project: str = "demo-project", location: str = "us-central1",
                 operation_delay: float = 0.2) -> None:
        super().__init__()
        self.project = project
        self.location = location
        self.operation_delay = operation_delay
        self._schedules: dict[str, Schedule] = {}
        self._listing_cache: dict[str, list[Schedule]] = {}  # parent -> its schedules in listing order
        self._name_cache: dict[str, dict[str, list[Schedule]]] = {}  # parent -> display name -> schedules
        self._operations: dict[str, _Operation] = {}
        self._ids = itertools.count(1_000_000_001)
        self._grpc_server: grpc.Server | None = None
        self._grpc_port: int | None = None
        self._grpc_stopping = threading.Event()

        parent = f"/v1/({_NAME})/schedules"
        self.route("GET", parent, "list_schedules", self._rest_list)
        self.route("POST", parent, "create_schedule", self._rest_create)
        self.route("GET", f"/v1/({_SCHEDULE})", "get_schedule", self._rest_get)
        self.route("DELETE", f"/v1/({_SCHEDULE})", "delete_schedule", self._rest_delete)
        self.route("POST", f"/v1/({_SCHEDULE}):pause", "pause_schedule", self._rest_pause)
        self.route("POST", f"/v1/({_SCHEDULE}):resume", "resume_schedule", self._rest_resume)
        # The client's REST operations mixin tries the `/ui/` binding first.
        self.route("GET", f"/(?:v1|ui)/({_OPERATION})", "get_operation", self._rest_get_operation)

    # -- seeding -------------------------------------------------------------------

    def add_schedule(
        self,
        display_name: str,
        cron: str,
        *,
        state: str = "ACTIVE",
        labels: Mapping[str, str] | None = None,
        zenml: bool = True,
        pipeline_name: str | None = None,
        pipeline_spec: Mapping[str, Any] | None = None,
        create_time: datetime | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        project: str | None = None,
        location: str | None = None,
    ) -> str:
        """Add a schedule as ZenML (or, with `zenml=False`, someone else) created it; returns its name."""
        project = project or self.project
        location = location or self.location
        parent = f"projects/{project}/locations/{location}"
        pipeline_name = pipeline_name or display_name
        if pipeline_spec is None:
            pipeline_spec = zenml_pipeline_spec(pipeline_name) if zenml else plain_pipeline_spec(pipeline_name)
        job_labels = {SDK_BILLING_LABEL: f"{next(self._ids)}"}
        job_labels.update(labels or {})
        created = create_time or _now()
        schedule = Schedule(
            display_name=display_name,
            cron=cron,
            state=Schedule.State[state],
            max_concurrent_run_count=1,
            create_pipeline_job_request=CreatePipelineJobRequest(
                parent=parent,
                pipeline_job=PipelineJob(
                    display_name=pipeline_name,
                    pipeline_spec=dict(pipeline_spec),
                    labels=job_labels,
                    runtime_config=PipelineJob.RuntimeConfig(
                        gcs_output_directory=f"gs://{project}-zenml/vertex_pipeline_root/{pipeline_name}",
                    ),
                ),
            ),
        )
        with self.lock:
            return self._store(parent, schedule, created, start_time, end_time).name

    def seed(self, data: Any) -> list[str]:
        """Seed from JSON: a list of schedules or {"project", "location", "schedules": [...]}.

        Each schedule takes `add_schedule`'s arguments; times are ISO-8601 strings.
        """
        if isinstance(data, dict):
            project, location = data.get("project"), data.get("location")
            items = data.get("schedules", [])
        else:
            project, location, items = None, None, data
        names = []
        for item in items:
            spec = dict(item)
            for key in ("create_time", "start_time", "end_time"):
                if spec.get(key):
                    spec[key] = _parse_time(spec[key])
            spec.setdefault("project", project)
            spec.setdefault("location", location)
            names.append(self.add_schedule(**spec))
        return names

    def schedules(self) -> list[Schedule]:
        with self.lock:
            self._settle()
            return [Schedule.deserialize(Schedule.serialize(s)) for s in self._sorted()]

    def reset(self) -> None:
        """Forget every schedule, operation, fault and logged request."""
        with self.lock:
            self._schedules.clear()
            self._operations.clear()
            self._changed()
        self.faults.clear()
        self.log.clear()

    # -- the service, transport-free -------------------------------------------------

    def list_schedules(self, request: ListSchedulesRequest) -> ListSchedulesResponse:
        _require_parent(request.parent)
        self._settle()
        size = request.page_size or DEFAULT_PAGE_SIZE
        if size < 0:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "page_size must not be negative")
        size = min(size, MAX_PAGE_SIZE)
        start = _decode_token(request.page_token, request.parent)
        wanted = _parse_filter(request.filter)
        items = self._under(request.parent)
        display_name = wanted.get("display_name", wanted.get("displayName"))
        if display_name is not None:
            items = self._named(request.parent).get(display_name, [])
        if wanted:
            items = [s for s in items if _matches(s, wanted)]
        page = items[start:start + size]
        end = start + len(page)
        token = _encode_token(end, request.parent) if end < len(items) else ""
        return ListSchedulesResponse(schedules=page, next_page_token=token)

    def get_schedule(self, request: GetScheduleRequest) -> Schedule:
        self._settle()
        return self._find(request.name)

    def create_schedule(self, request: CreateScheduleRequest) -> Schedule:
        _require_parent(request.parent)
        self._settle()
        given = request.schedule
        if not given.display_name:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "schedule.display_name is required")
        if not given.cron:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "schedule.cron is required")
        if given.max_concurrent_run_count <= 0:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "schedule.max_concurrent_run_count must be positive")
        if not given.create_pipeline_job_request.pipeline_job.pipeline_spec:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT,
                           "schedule.create_pipeline_job_request.pipeline_job.pipeline_spec is required")
        schedule = Schedule.deserialize(Schedule.serialize(given))
        # Output-only fields are the service's to set, whatever the request says.
        for output_only in ("name", "state", "create_time", "update_time", "next_run_time", "last_pause_time",
                            "last_resume_time", "started_run_count", "last_scheduled_run_response"):
            Schedule.pb(schedule).ClearField(output_only)
        return self._store(request.parent, schedule, _now(), given.start_time, given.end_time)

    def pause_schedule(self, request: PauseScheduleRequest) -> None:
        self._settle()
        schedule = self._find(request.name)
        if schedule.state != Schedule.State.ACTIVE:
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"Cannot pause schedule {request.name} in state {schedule.state.name}.")
        schedule.state = Schedule.State.PAUSED
        schedule.last_pause_time = schedule.update_time = _now()

    def resume_schedule(self, request: ResumeScheduleRequest) -> None:
        self._settle()
        schedule = self._find(request.name)
        if schedule.state != Schedule.State.PAUSED:
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"Cannot resume schedule {request.name} in state {schedule.state.name}.")
        schedule.state = Schedule.State.ACTIVE
        schedule.last_resume_time = schedule.update_time = _now()

    def delete_schedule(self, request: DeleteScheduleRequest) -> operations_pb2.Operation:
        self._settle()
        schedule = self._find(request.name)
        project_location = schedule.name.split("/schedules/")[0]
        name = f"{project_location}/operations/{next(self._ids)}"
        operation = _Operation(name, schedule.name, _now(), time.monotonic() + self.operation_delay)
        self._operations[name] = operation
        self._settle()
        return self._operation_pb(operation)

    def get_operation(self, request: operations_pb2.GetOperationRequest) -> operations_pb2.Operation:
        self._settle()
        operation = self._operations.get(request.name)
        if operation is None:
            raise ApiError(grpc.StatusCode.NOT_FOUND, f"Operation {request.name} not found.")
        return self._operation_pb(operation)

    def _store(self, parent: str, schedule: Schedule, created: datetime,
               start_time: datetime | None, end_time: datetime | None) -> Schedule:
        schedule.name = f"{parent}/schedules/{next(self._ids)}"
        schedule.create_time = created
        schedule.update_time = created
        # Vertex starts a schedule at its creation unless told otherwise.
        schedule.start_time = start_time or created
        if end_time is not None:
            schedule.end_time = end_time
        if schedule.state == Schedule.State.STATE_UNSPECIFIED:
            schedule.state = Schedule.State.ACTIVE
        self._schedules[schedule.name] = schedule
        self._changed()
        return schedule

    def _find(self, name: str) -> Schedule:
        schedule = self._schedules.get(name)
        if schedule is None:
            raise ApiError(grpc.StatusCode.NOT_FOUND, f"Schedule {name} not found.")
        return schedule

    def _sorted(self) -> list[Schedule]:
        return sorted(self._schedules.values(), key=lambda s: (s.create_time, s.name))

    def _under(self, parent: str) -> list[Schedule]:
        """The schedules of one parent in listing order, sorted once per change, not once per page.

        A schedule's name, display name and create time never change, so only adding
        or removing one (`_changed`) makes the order stale.
        """
        if parent not in self._listing_cache:
            prefix = parent + "/"
            self._listing_cache[parent] = [s for s in self._sorted() if s.name.startswith(prefix)]
        return self._listing_cache[parent]

    def _named(self, parent: str) -> dict[str, list[Schedule]]:
        """The same, by display name: a `display_name="..."` filter is a lookup, as on the real service."""
        if parent not in self._name_cache:
            by_name: dict[str, list[Schedule]] = {}
            for schedule in self._under(parent):
                by_name.setdefault(schedule.display_name, []).append(schedule)
            self._name_cache[parent] = by_name
        return self._name_cache[parent]

    def _changed(self) -> None:
        self._listing_cache.clear()
        self._name_cache.clear()

    def _settle(self) -> None:
        """Finish every deletion whose time has come."""
        now = time.monotonic()
        for operation in self._operations.values():
            if not operation.done and operation.due <= now:
                self._schedules.pop(operation.schedule, None)
                operation.done = True
                self._changed()

    def _operation_pb(self, operation: _Operation) -> operations_pb2.Operation:
        metadata = DeleteOperationMetadata(generic_metadata=GenericOperationMetadata(
            create_time=operation.created, update_time=_now()))
        result = operations_pb2.Operation(name=operation.name, done=operation.done)
        result.metadata.Pack(DeleteOperationMetadata.pb(metadata))
        if operation.done:
            result.response.Pack(empty_pb2.Empty())
        return result

    # -- REST ----------------------------------------------------------------------

    def error_body(self, status: int, message: str) -> Any:
        code = grpc_code_for(status)
        return {"error": {"code": status, "message": message, "status": code.name}}

    def _rest(self, request: Request, call: Callable[[], Any]) -> Response:
        try:
            result = call()
        except ApiError as exc:
            return Response(exc.http_status, self.error_body(exc.http_status, exc.message))
        if result is None:
            return Response(200, {})
        integers = "enum-encoding=int" in request.params.get("$alt", "")
        return Response(200, _to_json(result, integers))

    def _rest_list(self, request: Request) -> Response:
        def call() -> Any:
            try:
                size = int(request.params.get("pageSize") or 0)
            except ValueError:
                raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "pageSize must be an integer") from None
            return self.list_schedules(ListSchedulesRequest(
                parent=request.match.group(1), page_size=size, page_token=request.params.get("pageToken", ""),
                filter=request.params.get("filter", ""), order_by=request.params.get("orderBy", "")))
        return self._rest(request, call)

    def _rest_create(self, request: Request) -> Response:
        def call() -> Any:
            schedule = _from_json(Schedule, request.body)
            return self.create_schedule(CreateScheduleRequest(parent=request.match.group(1), schedule=schedule))
        return self._rest(request, call)

    def _rest_get(self, request: Request) -> Response:
        return self._rest(request, lambda: self.get_schedule(GetScheduleRequest(name=request.match.group(1))))

    def _rest_delete(self, request: Request) -> Response:
        return self._rest(request, lambda: self.delete_schedule(DeleteScheduleRequest(name=request.match.group(1))))

    def _rest_pause(self, request: Request) -> Response:
        return self._rest(request, lambda: self.pause_schedule(PauseScheduleRequest(name=request.match.group(1))))

    def _rest_resume(self, request: Request) -> Response:
        return self._rest(request, lambda: self.resume_schedule(ResumeScheduleRequest(name=request.match.group(1))))

    def _rest_get_operation(self, request: Request) -> Response:
        return self._rest(request, lambda: self.get_operation(
            operations_pb2.GetOperationRequest(name=request.match.group(1))))

    # -- gRPC ----------------------------------------------------------------------

    def start(self, port: int = 0, grpc_port: int = 0, tls: tuple[str, str] | None = None) -> int:
        """Start the REST server on `port` and the gRPC server on `grpc_port` (0: any free port).

        `tls` = (certfile, keyfile): both serve TLS with that certificate.
        """
        http_port = super().start(port, tls)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="vertex-grpc"))
        server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler(SERVICE, {
                "ListSchedules": self._grpc_method("ListSchedules", "list_schedules", "GET",
                                                   ListSchedulesRequest.deserialize, self.list_schedules),
                "GetSchedule": self._grpc_method("GetSchedule", "get_schedule", "GET",
                                                 GetScheduleRequest.deserialize, self.get_schedule),
                "CreateSchedule": self._grpc_method("CreateSchedule", "create_schedule", "POST",
                                                    CreateScheduleRequest.deserialize, self.create_schedule),
                "PauseSchedule": self._grpc_method("PauseSchedule", "pause_schedule", "POST",
                                                   PauseScheduleRequest.deserialize, self.pause_schedule),
                "ResumeSchedule": self._grpc_method("ResumeSchedule", "resume_schedule", "POST",
                                                    ResumeScheduleRequest.deserialize, self.resume_schedule),
                "DeleteSchedule": self._grpc_method("DeleteSchedule", "delete_schedule", "DELETE",
                                                    DeleteScheduleRequest.deserialize, self.delete_schedule),
            }),
            grpc.method_handlers_generic_handler(OPERATIONS_SERVICE, {
                "GetOperation": self._grpc_method("GetOperation", "get_operation", "GET",
                                                  operations_pb2.GetOperationRequest.FromString,
                                                  self.get_operation, service=OPERATIONS_SERVICE),
            }),
        ))
        if tls is None:
            self._grpc_port = server.add_insecure_port(f"127.0.0.1:{grpc_port}")
        else:
            certfile, keyfile = tls
            with open(keyfile, "rb") as key, open(certfile, "rb") as cert:
                credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
            self._grpc_port = server.add_secure_port(f"127.0.0.1:{grpc_port}", credentials)
        if not self._grpc_port:
            raise OSError(f"cannot bind the gRPC server to 127.0.0.1:{grpc_port}")
        server.start()
        self._grpc_server = server
        return http_port

    @property
    def grpc_port(self) -> int:
        assert self._grpc_port is not None, "emulator not started"
        return self._grpc_port

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stop(self) -> None:
        self._grpc_stopping.set()
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=0).wait(5)
            self._grpc_server = None
        super().stop()

    def _grpc_method(self, method: str, operation: str, verb: str, deserialize: Callable[[bytes], Any],
                     handler: Callable[[Any], Any], service: str = SERVICE) -> grpc.RpcMethodHandler:
        """A unary method; `verb` is the REST binding's, so the log tells reads from writes."""
        path = f"/{service}/{method}"

        def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
            return self._serve_grpc(operation, verb, path, request, context, handler)

        return grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=deserialize, response_serializer=_serialize)

    def _serve_grpc(self, operation: str, verb: str, path: str, request: Any, context: grpc.ServicerContext,
                    handler: Callable[[Any], Any]) -> Any:
        body = _to_json(request, integers=False)
        fault = self.faults.take(operation)
        if fault is not None and fault.latency:
            time.sleep(fault.latency)
        if fault is not None and fault.status is not None:
            self.log.add(LoggedRequest(verb, path, operation, {}, body, fault.status))
            _abort(context, grpc_code_for(fault.status), f"injected fault on {operation}", fault.retry_after)
        try:
            with self.lock:
                response = handler(request)
        except ApiError as exc:
            self.log.add(LoggedRequest(verb, path, operation, {}, body, exc.http_status))
            _abort(context, exc.code, exc.message)
        except Exception as exc:  # noqa: BLE001 - an emulator bug must still answer
            self.log.add(LoggedRequest(verb, path, operation, {}, body, 500))
            _abort(context, grpc.StatusCode.INTERNAL, f"emulator error: {exc}")
        self.log.add(LoggedRequest(verb, path, operation, {}, body, 200))
        return self._faulted_grpc_answer(fault, context, empty_pb2.Empty() if response is None else response)

    def _faulted_grpc_answer(self, fault: Fault | None, context: grpc.ServicerContext, response: Any) -> Any:
        if fault is not None and fault.hang is not None:
            # Hold the call past the client's deadline; by then nobody is listening.
            self._grpc_stopping.wait(fault.hang)
            _abort(context, grpc.StatusCode.UNAVAILABLE, "connection dropped")
        if fault is not None and fault.malformed:
            return MALFORMED_PROTO
        return response


# -- helpers -----------------------------------------------------------------------


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str,
           retry_after: float | None = None) -> NoReturn:
    status = status_pb2.Status(code=code.value[0], message=message)
    if retry_after is not None:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromTimedelta(timedelta(seconds=retry_after))
        status.details.add().Pack(info)
    context.abort_with_status(rpc_status.to_status(status))


def _serialize(message: Any) -> bytes:
    if isinstance(message, bytes):
        return message
    if isinstance(message, Message):
        return message.SerializeToString()
    return type(message).serialize(message)


def _to_json(message: Any, integers: bool) -> dict[str, Any]:
    pb = message if isinstance(message, Message) else type(message).pb(message)
    return json_format.MessageToDict(pb, use_integers_for_enums=integers)


def _from_json(message_type: Any, body: Any) -> Any:
    if not isinstance(body, dict):
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "the request body must be a JSON object")
    pb = message_type.pb()()
    try:
        json_format.ParseDict(body, pb, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid {message_type.__name__}: {exc}") from None
    return message_type.wrap(pb)


def _require_parent(parent: str) -> None:
    if not re.fullmatch(_NAME, parent or ""):
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid parent {parent!r}")


def _encode_token(offset: int, parent: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "p": parent}).encode()).decode()


def _decode_token(token: str, parent: str) -> int:
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = int(data["o"])
    except (ValueError, KeyError, TypeError):
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "Invalid page_token.") from None
    if data.get("p") != parent or offset < 0:
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "The page_token does not belong to this request.")
    return offset


def _parse_filter(text: str) -> dict[str, str]:
    """The plain `field="value" AND ...` subset; other expressions are ignored."""
    wanted = {}
    for part in re.split(r"\s+AND\s+", (text or "").strip()):
        match = re.fullmatch(r'(\w+)\s*=\s*"?(.*?)"?', part.strip())
        if match:
            wanted[match.group(1)] = match.group(2)
    return wanted


def _matches(schedule: Schedule, wanted: Mapping[str, str]) -> bool:
    for key, value in wanted.items():
        if key in ("display_name", "displayName") and schedule.display_name != value:
            return False
        if key == "state" and schedule.state.name != value:
            return False
    return True


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m providers.emulators.vertex",
                                     description="Vertex AI ScheduleService emulator (REST and gRPC) on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="REST port (0: any free port)")
    parser.add_argument("--grpc-port", type=int, default=0, help="gRPC port (0: any free port)")
    parser.add_argument("--seed", type=Path, help="JSON file of schedules to start with")
    parser.add_argument("--project", default="demo-project")
    parser.add_argument("--location", default="us-central1")
    parser.add_argument("--operation-delay", type=float, default=0.2,
                        help="seconds until a deletion's long-running operation is done")
    args = parser.parse_args(argv)
    emulator = VertexEmulator(args.project, args.location, args.operation_delay)
    if args.seed is not None:
        emulator.seed(json.loads(args.seed.read_text(encoding="utf-8")))
    emulator.start(args.port, args.grpc_port)
    serve_until_signalled(emulator, f"vertex emulator: REST {emulator.url} gRPC {emulator.grpc_target} "
                                    f"({len(emulator.schedules())} schedules)")


if __name__ == "__main__":
    main()
