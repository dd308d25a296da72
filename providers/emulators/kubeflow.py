"""A Kubeflow Pipelines API server (v2beta1) on 127.0.0.1: recurring runs and experiments.

It answers the JSON that `kfp_server_api` (the client generated inside kfp 2.x)
reads: snake_case fields as the API server's grpc-gateway emits them, except the
list key `recurringRuns`; int64 fields (`max_concurrency`, `interval_second`) as
strings; RFC 3339 times; page tokens that are opaque and a page size capped at
200. Errors carry the server's body `{"error", "code", "message", "details"}`
with the gRPC code beside the HTTP status.

Recurring runs made by `seed_recurring_run` look like the ones ZenML's Kubeflow
orchestrator creates with kfp 2.x: display name `<pipeline>-<32 hex>` (ZenML
replaces `_` with `-` in the orchestrator run name), inside an experiment named
after the pipeline, with a pipeline spec whose executors run ZenML's step
entrypoint `python -m zenml.entrypoints.entrypoint`.

Run standalone: `python -m providers.emulators.kubeflow --port P --seed FILE.json`,
where the seed file holds `{"experiments": [...], "recurring_runs": [...],
"tokens": [...], "cookies": [...]}` in wire shape (no tokens: no auth required).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import threading
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from providers.emulators.base import HttpEmulator, Request, Response, serve_until_signalled

API = "/apis/v2beta1"
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 20  # the server's default when page_size is 0 or absent
ZENML_STEP_COMMAND = ["python", "-m", "zenml.entrypoints.entrypoint"]
ZENML_STEP_CONFIG_SOURCE = "zenml.entrypoints.step_entrypoint_configuration.StepEntrypointConfiguration"

# HTTP status -> the gRPC code the API server puts beside it.
_GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 500: 13, 501: 12, 503: 14, 504: 4}
_RUN_SORT_FIELDS = {"created_at", "display_name", "updated_at", "recurring_run_id"}
_RUN_ID = r"(?P<id>[^/:]+)"


def rfc3339(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339() -> str:
    return rfc3339(datetime.now(timezone.utc))


class KubeflowEmulator(HttpEmulator):
    name = "kubeflow-emulator"

    def __init__(self, tokens: Iterable[str] = (), cookies: Iterable[str] = ()) -> None:
        super().__init__()
        self.experiments: dict[str, dict[str, Any]] = {}
        self.recurring_runs: dict[str, dict[str, Any]] = {}
        # Accepted credentials; both empty means the server asks for none.
        self.tokens: set[str] = set(tokens)
        self.cookies: set[str] = set(cookies)
        # Every bearer token presented, in order: lets tests watch a token rotate.
        self.tokens_seen: list[str] = []
        self._tokens_lock = threading.Lock()
        # Bumped by every change the emulator makes, so a listing's sorted order is
        # computed once per change rather than once per page (that made paging quadratic).
        self._version = 0
        self._order_cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self.route("GET", f"{API}/healthz", "healthz", self._healthz)
        self.route("GET", f"{API}/recurringruns", "list_schedules", self._auth(self._list_runs))
        self.route("POST", f"{API}/recurringruns", "create_schedule", self._auth(self._create_run))
        self.route("GET", f"{API}/recurringruns/{_RUN_ID}", "get_schedule", self._auth(self._get_run))
        self.route("DELETE", f"{API}/recurringruns/{_RUN_ID}", "delete_schedule", self._auth(self._delete_run))
        self.route("POST", f"{API}/recurringruns/{_RUN_ID}:enable", "resume_schedule", self._auth(self._enable))
        self.route("POST", f"{API}/recurringruns/{_RUN_ID}:disable", "pause_schedule", self._auth(self._disable))
        self.route("GET", f"{API}/experiments", "list_experiments", self._auth(self._list_experiments))
        self.route("POST", f"{API}/experiments", "create_experiment", self._auth(self._create_experiment))
        self.route("GET", f"{API}/experiments/{_RUN_ID}", "get_experiment", self._auth(self._get_experiment))

    def error_body(self, status: int, message: str) -> Any:
        code = _GRPC_CODES.get(status, 2)
        return {
            "error": message,
            "code": code,
            "message": message,
            "details": [{"@type": "type.googleapis.com/api.Error", "error_message": message.split(":")[0],
                         "error_details": message}],
        }

    def _error(self, status: int, message: str) -> Response:
        return Response(status, self.error_body(status, message))

    # -- seeding -------------------------------------------------------------------

    def load(self, seed: Mapping[str, Any]) -> None:
        with self.lock:
            for experiment in seed.get("experiments", []):
                self.experiments[experiment["experiment_id"]] = dict(experiment)
            for run in seed.get("recurring_runs", []):
                self.recurring_runs[run["recurring_run_id"]] = dict(run)
            self._version += 1
        self.tokens.update(seed.get("tokens", []))
        self.cookies.update(seed.get("cookies", []))

    def add_experiment(self, name: str, namespace: str = "kubeflow", created_at: str | None = None) -> dict[str, Any]:
        experiment = {
            "experiment_id": str(uuid.uuid4()),
            "display_name": name,
            "description": "",
            "created_at": created_at or now_rfc3339(),
            "namespace": namespace,
            "storage_state": "AVAILABLE",
        }
        with self.lock:
            self.experiments[experiment["experiment_id"]] = experiment
            self._version += 1
        return experiment

    def experiment_named(self, name: str, namespace: str = "kubeflow") -> dict[str, Any]:
        """The experiment of that name in the namespace, created when missing (as ZenML does)."""
        with self.lock:
            for experiment in self.experiments.values():
                if experiment["display_name"] == name and experiment.get("namespace") == namespace:
                    return experiment
            return self.add_experiment(name, namespace)

    def add_run(self, run: Mapping[str, Any]) -> dict[str, Any]:
        stored = dict(run)
        with self.lock:
            self.recurring_runs[stored["recurring_run_id"]] = stored
            self._version += 1
        return stored

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "experiments": [dict(e) for e in self.experiments.values()],
                "recurring_runs": [json.loads(json.dumps(r)) for r in self.recurring_runs.values()],
            }

    # -- auth ----------------------------------------------------------------------

    def _auth(self, handler: Any) -> Any:
        def checked(request: Request) -> Response:
            header = request.headers.get("Authorization") or ""
            token = header[len("Bearer "):] if header.startswith("Bearer ") else None
            if token is not None:
                with self._tokens_lock:
                    self.tokens_seen.append(token)
            if self.tokens or self.cookies:
                cookie = request.headers.get("Cookie") or ""
                if token not in self.tokens and cookie not in self.cookies:
                    return self._error(401, "Unauthenticated: Request header error: there is no user identity header.")
            return handler(request)

        return checked

    # -- handlers ------------------------------------------------------------------

    def _healthz(self, request: Request) -> Response:
        return Response(200, {"multi_user": bool(self.tokens or self.cookies), "pipeline_store": "database"})

    def _list_runs(self, request: Request) -> Response:
        items = list(self.recurring_runs.values())
        namespace = request.params.get("namespace")
        if namespace:
            items = [r for r in items if r.get("namespace") == namespace]
        experiment_id = request.params.get("experiment_id")
        if experiment_id:
            items = [r for r in items if r.get("experiment_id") == experiment_id]
        return self._page(request, items, "recurringRuns", _RUN_SORT_FIELDS, "recurring_run_id")

    def _list_experiments(self, request: Request) -> Response:
        items = list(self.experiments.values())
        namespace = request.params.get("namespace")
        if namespace:
            items = [e for e in items if e.get("namespace") == namespace]
        return self._page(request, items, "experiments", {"created_at", "display_name", "experiment_id"},
                          "experiment_id")

    def _page(self, request: Request, items: list[dict[str, Any]], key: str, sort_fields: set[str],
              id_field: str) -> Response:
        sort_by = (request.params.get("sort_by") or "").strip()
        field, descending = "created_at", False
        if sort_by:
            parts = sort_by.split()
            if parts[0] not in sort_fields or len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
                return self._error(400, f"Invalid input error: Invalid sorting field: {sort_by!r}")
            field, descending = parts[0], len(parts) == 2 and parts[1] == "desc"
        stamp = (key, field, descending, request.params.get("namespace"), request.params.get("experiment_id"),
                 self._version, len(self.recurring_runs), len(self.experiments), len(items))
        ordered = self._order_cache.get(stamp)
        if ordered is None:
            ordered = sorted(items, key=lambda item: (str(item.get(field) or ""), item[id_field]), reverse=descending)
            if len(self._order_cache) >= 16:
                self._order_cache.clear()
            self._order_cache[stamp] = ordered
        items = ordered
        try:
            size = int(request.params.get("page_size") or 0)
        except ValueError:
            return self._error(400, "Invalid input error: page_size must be an integer")
        if size < 0:
            return self._error(400, "Invalid input error: the page size must not be negative")
        size = min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        token = request.params.get("page_token") or ""
        start = 0
        if token:
            start = _decode_token(token, sort_by)
            if start is None:
                return self._error(400, "Invalid input error: Invalid package token.")
        page = items[start:start + size]
        body: dict[str, Any] = {key: page, "total_size": len(items)}
        if start + size < len(items):
            body["next_page_token"] = _encode_token(start + size, sort_by)
        if not page:
            del body[key]  # the gateway omits empty repeated fields
        return Response(200, body)

    def _get_run(self, request: Request) -> Response:
        run = self.recurring_runs.get(request.match["id"])
        if run is None:
            return self._not_found("recurring run", request.match["id"])
        return Response(200, run)

    def _set_status(self, request: Request, status: str, mode: str) -> Response:
        run = self.recurring_runs.get(request.match["id"])
        if run is None:
            return self._not_found("recurring run", request.match["id"])
        run["status"] = status
        run["mode"] = mode
        run["updated_at"] = now_rfc3339()
        self._version += 1
        return Response(200, {})

    def _enable(self, request: Request) -> Response:
        return self._set_status(request, "ENABLED", "ENABLE")

    def _disable(self, request: Request) -> Response:
        return self._set_status(request, "DISABLED", "DISABLE")

    def _delete_run(self, request: Request) -> Response:
        if self.recurring_runs.pop(request.match["id"], None) is None:
            return self._not_found("recurring run", request.match["id"])
        self._version += 1
        return Response(200, {})

    def _create_run(self, request: Request) -> Response:
        body = request.body
        if not isinstance(body, dict):
            return self._error(400, "Invalid input error: the request body must be a recurring run")
        if not body.get("display_name"):
            return self._error(400, "Invalid input error: The recurring run name is empty. Please specify a valid name.")
        trigger = body.get("trigger") or {}
        if bool(trigger.get("cron_schedule")) == bool(trigger.get("periodic_schedule")):
            return self._error(400, "Invalid input error: A recurring run needs exactly one of a cron or a periodic schedule.")
        if not body.get("pipeline_spec") and not body.get("pipeline_version_reference"):
            return self._error(400, "Invalid input error: Failed to create a recurring run: no pipeline spec or version.")
        experiment = self.experiments.get(body.get("experiment_id") or "")
        if experiment is None:
            return self._not_found("experiment", str(body.get("experiment_id")))
        now = now_rfc3339()
        run = {k: v for k, v in body.items() if k not in ("recurring_run_id", "status", "created_at", "updated_at")}
        run.update({
            "recurring_run_id": str(uuid.uuid4()),
            "created_at": now,
            "updated_at": now,
            "namespace": experiment.get("namespace", ""),
            "status": "DISABLED" if body.get("mode") == "DISABLE" else "ENABLED",
            "mode": body.get("mode") or "ENABLE",
            "max_concurrency": str(body.get("max_concurrency") or "1"),
            "no_catchup": bool(body.get("no_catchup", False)),
        })
        periodic = trigger.get("periodic_schedule")
        if periodic and "interval_second" in periodic:
            periodic["interval_second"] = str(periodic["interval_second"])
        self.recurring_runs[run["recurring_run_id"]] = run
        self._version += 1
        return Response(200, run)

    def _get_experiment(self, request: Request) -> Response:
        experiment = self.experiments.get(request.match["id"])
        if experiment is None:
            return self._not_found("experiment", request.match["id"])
        return Response(200, experiment)

    def _create_experiment(self, request: Request) -> Response:
        body = request.body if isinstance(request.body, dict) else {}
        name = body.get("display_name")
        if not name:
            return self._error(400, "Invalid input error: Experiment must have a non-empty name.")
        namespace = body.get("namespace") or "kubeflow"
        if any(e["display_name"] == name and e.get("namespace") == namespace for e in self.experiments.values()):
            return self._error(409, f"Already exist error: Failed to create a new experiment: {name} already exists.")
        return Response(200, self.add_experiment(name, namespace))

    def _not_found(self, kind: str, ident: str) -> Response:
        return self._error(404, f"Failed to get a {kind}: {kind.capitalize()} {ident} not found: ResourceNotFoundError")


def _encode_token(offset: int, sort_by: str) -> str:
    raw = json.dumps({"offset": offset, "sort_by": sort_by}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str, sort_by: str) -> int | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = int(data["offset"])
    except (ValueError, TypeError, KeyError):
        return None
    # A token is only good for the listing (sort order) that issued it.
    if data.get("sort_by") != sort_by or offset < 0:
        return None
    return offset


# -- seeds that look like ZenML's ---------------------------------------------------


def zenml_display_name(pipeline: str, hex32: str | None = None, style: str = "dash") -> str:
    """The recurring run name ZenML gives: kfp 2.x orchestrator `<pipeline>-<hex>` with `_` -> `-`.

    `style="underscore"` gives `get_orchestrator_run_name` unchanged: `<pipeline>_<hex>`.
    """
    suffix = hex32 or f"{random.getrandbits(128):032x}"
    name = f"{pipeline}_{suffix}"
    return name.replace("_", "-") if style == "dash" else name


def zenml_pipeline_spec(name: str, steps: Iterable[str] = ("trainer",),
                        image: str = "registry.example.com/zenml:training-pipeline-orchestrator") -> dict[str, Any]:
    """The compiled KFP IR (as MessageToDict emits it) of a ZenML pipeline: one container per step."""
    executors: dict[str, Any] = {}
    tasks: dict[str, Any] = {}
    components: dict[str, Any] = {}
    snapshot_id = str(uuid.uuid4())
    previous: str | None = None
    for step in steps:
        executors[f"exec-{step}"] = {"container": {
            "image": image,
            "command": list(ZENML_STEP_COMMAND),
            "args": ["--entrypoint_config_source", ZENML_STEP_CONFIG_SOURCE, "--step_name", step,
                     "--snapshot_id", snapshot_id],
            "env": [{"name": "KFP_RUN_ID", "value": "{{$.pipeline_job_name}}"}],
        }}
        components[f"comp-{step}"] = {"executorLabel": f"exec-{step}"}
        task: dict[str, Any] = {"cachingOptions": {}, "componentRef": {"name": f"comp-{step}"},
                                "taskInfo": {"name": step}}
        if previous:
            task["dependentTasks"] = [previous]
        tasks[step] = task
        previous = step
    return {
        "components": components,
        "deploymentSpec": {"executors": executors},
        "pipelineInfo": {"name": name},
        "root": {"dag": {"tasks": tasks}},
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.13.0",
    }


def seed_recurring_run(
    display_name: str,
    experiment_id: str,
    namespace: str = "kubeflow",
    *,
    cron: str | None = None,
    interval_second: int | None = None,
    start_time: str | None = None,
    end_time: str | None = None,
    enabled: bool = True,
    created_at: str | None = None,
    pipeline_spec: Mapping[str, Any] | None = None,
    pipeline_version_reference: Mapping[str, str] | None = None,
    no_catchup: bool = True,
) -> dict[str, Any]:
    """A recurring run as the server returns it. Without a spec or version: ZenML's IR."""
    if (cron is None) == (interval_second is None):
        raise ValueError("a recurring run needs exactly one of cron and interval_second")
    schedule: dict[str, Any] = {}
    if start_time:
        schedule["start_time"] = start_time
    if end_time:
        schedule["end_time"] = end_time
    if cron is not None:
        trigger = {"cron_schedule": {**schedule, "cron": cron}}
    else:
        trigger = {"periodic_schedule": {**schedule, "interval_second": str(interval_second)}}
    created = created_at or now_rfc3339()
    run: dict[str, Any] = {
        "recurring_run_id": str(uuid.uuid4()),
        "display_name": display_name,
        "description": "",
        "runtime_config": {},
        "service_account": "pipeline-runner",
        "max_concurrency": "1",
        "trigger": trigger,
        "mode": "ENABLE" if enabled else "DISABLE",
        "created_at": created,
        "updated_at": created,
        "status": "ENABLED" if enabled else "DISABLED",
        "no_catchup": no_catchup,
        "namespace": namespace,
        "experiment_id": experiment_id,
    }
    if pipeline_version_reference is not None:
        run["pipeline_version_reference"] = dict(pipeline_version_reference)
    else:
        run["pipeline_spec"] = dict(pipeline_spec) if pipeline_spec is not None else zenml_pipeline_spec(display_name)
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Kubeflow Pipelines v2beta1 API emulator (127.0.0.1 only)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=Path, help="JSON: experiments, recurring_runs, tokens, cookies")
    args = parser.parse_args(argv)
    emulator = KubeflowEmulator()
    if args.seed:
        emulator.load(json.loads(args.seed.read_text(encoding="utf-8")))
    port = emulator.start(args.port)
    serve_until_signalled(emulator, f"kubeflow emulator listening on http://127.0.0.1:{port}")


if __name__ == "__main__":
    main()
