"""A Kubernetes API server on 127.0.0.1: batch/v1 CronJobs and coordination.k8s.io/v1 Leases.

Enough of the API server for the `kubernetes` client to work unchanged:
namespaced CronJobs (list with `limit`/`continue`, get, create, patch as
merge / strategic-merge / JSON patch, delete with `propagationPolicy` and
preconditions) and Leases (get, list, create, replace, patch, delete, with
`resourceVersion` optimistic concurrency), plus `/version`. Objects carry
`metadata.resourceVersion` from one cluster-wide counter, lists carry
`metadata.resourceVersion` and `metadata.continue`, and every error is a `Status`.

Continue tokens are what the API server hands out: base64 of
`{"v": "meta.k8s.io/v1", "rv": N, "start": "<name>\\u0000"}`. `compact()` plays
etcd compaction: every token issued before it answers 410 Gone, reason
`Expired`, as a real server does once the revision is compacted away.
Strategic merge patch is applied as a JSON merge patch: the same for the scalar
fields (`spec.suspend`) that matter here; list merge keys are not emulated.

CronJobs made by `zenml_cron_job` look like the ones ZenML's Kubernetes
orchestrator creates: name `sanitize_label("<prefix>-<8 hex>-<pipeline>")`,
labels `project_id` and `pipeline`, annotation `zenml.io/orchestrator: <component
uuid>`, one `main` container running ZenML's orchestrator entrypoint.

Run standalone: `python -m providers.emulators.kubernetes --port P --seed FILE.json`
with `{"cronjobs": [...], "leases": [...], "tokens": [...]}` (no tokens: no auth).
"""

from __future__ import annotations

import argparse
import base64
import bisect
import copy
import json
import random
import re
import threading
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from providers.emulators.base import HttpEmulator, Request, Response, serve_until_signalled

BATCH = "/apis/batch/v1/namespaces/(?P<ns>[^/]+)/cronjobs"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/(?P<ns>[^/]+)/leases"
NAME = "(?P<name>[^/]+)"
ORCHESTRATOR_ANNOTATION = "zenml.io/orchestrator"
ORCHESTRATOR_ENTRYPOINT = ["python", "-m", "zenml.integrations.kubernetes.orchestrators.kubernetes_orchestrator_entrypoint"]
EXPIRED_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new list "
    "without the continue parameter, or use the continue token in this response to retrieve the remainder of the "
    "results. Continuing with the provided token results in an inconsistent list - objects that were created, "
    "modified, or deleted between the time the first chunk was returned and now may show up in the list."
)
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
            409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests",
            500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KINDS = {
    "cronjobs": {"group": "batch", "apiVersion": "batch/v1", "kind": "CronJob", "list": "CronJobList",
                 "resource": "cronjobs.batch"},
    "leases": {"group": "coordination.k8s.io", "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "list": "LeaseList", "resource": "leases.coordination.k8s.io"},
}


def rfc3339(value: datetime | None = None) -> str:
    return (value or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_object(code: int, message: str, reason: str | None = None,
                  details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason or _REASONS.get(code, "InternalError"), "code": code}
    if details:
        body["details"] = dict(details)
    return body


class KubernetesEmulator(HttpEmulator):
    name = "kubernetes-emulator"

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        super().__init__()
        self.tokens: set[str] = set(tokens)  # empty: the server asks for no credentials
        self.tokens_seen: list[str] = []
        # (resource, namespace, name) -> the stored object, in wire shape
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.deletions: list[dict[str, Any]] = []  # every delete with its propagation policy
        self._rv = 1000
        self._compacted_rv = 0
        self._names_cache: tuple[tuple[str, str, int, int], list[str]] | None = None
        self._tokens_lock = threading.Lock()
        self.route("GET", "/version/?", "version", self._version)
        self.route("GET", BATCH, "list_schedules", self._auth(self._list("cronjobs")))
        self.route("POST", BATCH, "create_schedule", self._auth(self._create("cronjobs")))
        self.route("GET", f"{BATCH}/{NAME}", "get_schedule", self._auth(self._get("cronjobs")))
        self.route("PATCH", f"{BATCH}/{NAME}", "patch_schedule", self._auth(self._patch("cronjobs")))
        self.route("PUT", f"{BATCH}/{NAME}", "replace_schedule", self._auth(self._replace("cronjobs")))
        self.route("DELETE", f"{BATCH}/{NAME}", "delete_schedule", self._auth(self._delete("cronjobs")))
        self.route("GET", LEASES, "list_leases", self._auth(self._list("leases")))
        self.route("POST", LEASES, "create_lease", self._auth(self._create("leases")))
        self.route("GET", f"{LEASES}/{NAME}", "get_lease", self._auth(self._get("leases")))
        self.route("PUT", f"{LEASES}/{NAME}", "replace_lease", self._auth(self._replace("leases")))
        self.route("PATCH", f"{LEASES}/{NAME}", "patch_lease", self._auth(self._patch("leases")))
        self.route("DELETE", f"{LEASES}/{NAME}", "delete_lease", self._auth(self._delete("leases")))

    def error_body(self, status: int, message: str) -> Any:
        if status == 410:
            return status_object(410, EXPIRED_MESSAGE, "Expired")
        if status == 429:
            return status_object(429, "Too many requests, please try again later.", "TooManyRequests",
                                 {"retryAfterSeconds": 1})
        return status_object(status, message)

    # -- seeding and inspection -----------------------------------------------------------

    def load(self, seed: Mapping[str, Any]) -> None:
        for cron_job in seed.get("cronjobs", []):
            self.add("cronjobs", cron_job)
        for lease in seed.get("leases", []):
            self.add("leases", lease)
        self.tokens.update(seed.get("tokens", []))

    def add(self, resource: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store an object as if created through the API, keeping a given creationTimestamp."""
        with self.lock:
            stored = self._admit(resource, copy.deepcopy(dict(obj)), obj["metadata"].get("namespace") or "default")
            key = (resource, stored["metadata"]["namespace"], stored["metadata"]["name"])
            self.objects[key] = stored
            return copy.deepcopy(stored)

    def object(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.objects.get((resource, namespace, name))
            return copy.deepcopy(found) if found else None

    def compact(self) -> None:
        """Compact history: continue tokens issued so far now answer 410 Expired."""
        with self.lock:
            self._rv += 1
            self._compacted_rv = self._rv

    def _sorted_names(self, resource: str, namespace: str) -> list[str]:
        """The names of one listing in order; sorted again only when the set of objects may have changed.

        Every create bumps the resourceVersion and every delete changes the count, so the
        pair tells a stale order apart; sorting every page made paging quadratic.
        """
        stamp = (resource, namespace, self._rv, len(self.objects))
        if self._names_cache is None or self._names_cache[0] != stamp:
            names = sorted(n for (r, ns, n) in self.objects if r == resource and ns == namespace)
            self._names_cache = (stamp, names)
        return self._names_cache[1]

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    # -- auth -------------------------------------------------------------------------------

    def _auth(self, handler: Any) -> Any:
        def checked(request: Request) -> Response:
            header = request.headers.get("Authorization") or ""
            token = header[len("Bearer "):] if header.startswith("Bearer ") else None
            if token is not None:
                with self._tokens_lock:
                    self.tokens_seen.append(token)
            if self.tokens and token not in self.tokens:
                return Response(401, status_object(401, "Unauthorized"))
            return handler(request)

        return checked

    # -- handlers ---------------------------------------------------------------------------

    def _version(self, request: Request) -> Response:
        return Response(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.4",
                              "gitCommit": "a51b3b711150f57ffc1f526a640ec058514ed596", "gitTreeState": "clean",
                              "buildDate": "2024-08-14T19:04:29Z", "goVersion": "go1.22.5", "compiler": "gc",
                              "platform": "linux/amd64"})

    def _list(self, resource: str) -> Any:
        def handler(request: Request) -> Response:
            namespace = request.match["ns"]
            try:
                limit = int(request.params.get("limit") or 0)
            except ValueError:
                return self._status(400, "limit: must be an integer")
            token = request.params.get("continue") or ""
            start, list_rv = "", self._rv
            if token:
                decoded = _decode_continue(token)
                if decoded is None:
                    return self._status(400, "continue key is not valid: incorrect encoded start resourceVersion "
                                             "(version meta.k8s.io/v1)")
                list_rv, start = decoded
                if list_rv < self._compacted_rv:
                    return Response(410, status_object(410, EXPIRED_MESSAGE, "Expired"))
            every = self._sorted_names(resource, namespace)
            names = every[bisect.bisect_right(every, start):] if start else every
            page = names[:limit] if limit > 0 else names
            metadata: dict[str, Any] = {"resourceVersion": str(list_rv)}
            if limit > 0 and len(names) > limit:
                metadata["continue"] = _encode_continue(list_rv, page[-1])
                metadata["remainingItemCount"] = len(names) - limit
            # List items come without their type, as from the API server. Encoded here,
            # under the lock, so no copy of the stored objects is needed.
            items = [{k: v for k, v in self.objects[(resource, namespace, name)].items()
                      if k not in ("apiVersion", "kind")} for name in page]
            kind = _KINDS[resource]
            return Response(200, json.dumps({"kind": kind["list"], "apiVersion": kind["apiVersion"],
                                             "metadata": metadata, "items": items}).encode())

        return handler

    def _get(self, resource: str) -> Any:
        def handler(request: Request) -> Response:
            found = self.objects.get((resource, request.match["ns"], request.match["name"]))
            if found is None:
                return self._not_found(resource, request.match["name"])
            return Response(200, found)

        return handler

    def _create(self, resource: str) -> Any:
        def handler(request: Request) -> Response:
            body = request.body
            if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
                return self._status(400, "the body of the request was in an unknown format")
            namespace = request.match["ns"]
            if body["metadata"].get("namespace") not in (None, "", namespace):
                return self._status(400, "the namespace of the provided object does not match the namespace sent "
                                         "on the request")
            problem = _validate(resource, body)
            if problem:
                return self._invalid(resource, str(body["metadata"].get("name")), problem)
            key = (resource, namespace, body["metadata"]["name"])
            if key in self.objects:
                kind = _KINDS[resource]
                return Response(409, status_object(
                    409, f'{kind["resource"]} "{key[2]}" already exists', "AlreadyExists",
                    {"name": key[2], "group": kind["group"], "kind": resource}))
            body["metadata"].pop("creationTimestamp", None)
            stored = self._admit(resource, copy.deepcopy(body), namespace)
            self.objects[key] = stored
            return Response(201, stored)

        return handler

    def _replace(self, resource: str) -> Any:
        def handler(request: Request) -> Response:
            key = (resource, request.match["ns"], request.match["name"])
            current = self.objects.get(key)
            if current is None:
                return self._not_found(resource, key[2])
            body = request.body
            if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
                return self._status(400, "the body of the request was in an unknown format")
            if body["metadata"].get("name") != key[2]:
                return self._status(400, "the name of the object does not match the name on the URL")
            given_rv = body["metadata"].get("resourceVersion")
            if not given_rv:
                return self._invalid(resource, key[2], "metadata.resourceVersion: Invalid value: 0x0: must be "
                                                       "specified for an update")
            if given_rv != current["metadata"]["resourceVersion"]:
                return self._conflict(resource, key[2])
            problem = _validate(resource, body)
            if problem:
                return self._invalid(resource, key[2], problem)
            updated = copy.deepcopy(body)
            updated["metadata"] = {**copy.deepcopy(current["metadata"]),
                                   **{k: v for k, v in body["metadata"].items() if k in ("labels", "annotations")}}
            self._store_update(key, current, updated)
            return Response(200, self.objects[key])

        return handler

    def _patch(self, resource: str) -> Any:
        def handler(request: Request) -> Response:
            key = (resource, request.match["ns"], request.match["name"])
            current = self.objects.get(key)
            if current is None:
                return self._not_found(resource, key[2])
            content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
            patch = request.body
            if content_type == "application/json-patch+json":
                if not isinstance(patch, list):
                    return self._status(400, "the body of the request was in an unknown format")
                try:
                    updated = _json_patch(current, patch)
                except (KeyError, IndexError, ValueError, TypeError) as exc:
                    return self._status(422, f"the server rejected our request due to an error in our request: {exc}")
            elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                if not isinstance(patch, dict):
                    return self._status(400, "the body of the request was in an unknown format")
                wanted_rv = (patch.get("metadata") or {}).get("resourceVersion")
                if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
                    return self._conflict(resource, key[2])
                updated = _merge_patch(current, patch)
            else:
                return Response(415, status_object(415, "the body of the request was in an unknown format - "
                                                        "accepted media types include: application/json-patch+json, "
                                                        "application/merge-patch+json, "
                                                        "application/strategic-merge-patch+json",
                                                   "UnsupportedMediaType"))
            problem = _validate(resource, updated)
            if problem:
                return self._invalid(resource, key[2], problem)
            for field in ("name", "namespace", "uid", "creationTimestamp"):  # immutable, whatever the patch says
                updated["metadata"][field] = current["metadata"][field]
            self._store_update(key, current, updated)
            return Response(200, self.objects[key])

        return handler

    def _delete(self, resource: str) -> Any:
        def handler(request: Request) -> Response:
            key = (resource, request.match["ns"], request.match["name"])
            current = self.objects.get(key)
            if current is None:
                return self._not_found(resource, key[2])
            options = request.body if isinstance(request.body, dict) else {}
            policy = request.params.get("propagationPolicy") or options.get("propagationPolicy")
            preconditions = options.get("preconditions") or {}
            for field in ("uid", "resourceVersion"):
                if preconditions.get(field) and preconditions[field] != current["metadata"].get(field):
                    return self._conflict(resource, key[2], f"Precondition failed: {field} in precondition: "
                                                            f"{preconditions[field]}, {field} in object meta: "
                                                            f"{current['metadata'].get(field)}")
            self.deletions.append({"resource": resource, "namespace": key[1], "name": key[2],
                                   "propagationPolicy": policy})
            del self.objects[key]
            kind = _KINDS[resource]
            if policy == "Foreground":
                # The object is returned with the finalizer the garbage collector removes
                # once the dependents are gone; with no dependents here that is at once.
                gone = copy.deepcopy(current)
                gone["metadata"]["deletionTimestamp"] = rfc3339()
                gone["metadata"]["deletionGracePeriodSeconds"] = 0
                gone["metadata"]["finalizers"] = ["foregroundDeletion"]
                return Response(200, gone)
            return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "details": {"name": key[2], "group": kind["group"], "kind": resource,
                                              "uid": current["metadata"]["uid"]}})

        return handler

    # -- helpers ----------------------------------------------------------------------------

    def _admit(self, resource: str, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
        kind = _KINDS[resource]
        obj["apiVersion"] = kind["apiVersion"]
        obj["kind"] = kind["kind"]
        metadata = obj.setdefault("metadata", {})
        metadata["namespace"] = namespace
        metadata["uid"] = str(uuid.uuid4())
        metadata["resourceVersion"] = self._next_rv()
        metadata.setdefault("creationTimestamp", rfc3339())
        for field in ("deletionTimestamp", "selfLink"):
            metadata.pop(field, None)
        if resource == "cronjobs":
            metadata["generation"] = 1
            spec = obj.setdefault("spec", {})
            spec.setdefault("suspend", False)
            spec.setdefault("concurrencyPolicy", "Allow")
            spec.setdefault("successfulJobsHistoryLimit", 3)
            spec.setdefault("failedJobsHistoryLimit", 1)
            pod_spec = spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
            pod_spec.setdefault("dnsPolicy", "ClusterFirst")
            pod_spec.setdefault("schedulerName", "default-scheduler")
            pod_spec.setdefault("securityContext", {})
            pod_spec.setdefault("terminationGracePeriodSeconds", 30)
            for container in pod_spec.get("containers", []):
                container.setdefault("imagePullPolicy", "IfNotPresent")
                container.setdefault("terminationMessagePath", "/dev/termination-log")
                container.setdefault("terminationMessagePolicy", "File")
            obj.setdefault("status", {})
        return obj

    def _store_update(self, key: tuple[str, str, str], current: dict[str, Any], updated: dict[str, Any]) -> None:
        updated["apiVersion"] = current["apiVersion"]
        updated["kind"] = current["kind"]
        if key[0] == "cronjobs" and updated.get("spec") != current.get("spec"):
            updated["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        updated["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[key] = updated

    def _status(self, code: int, message: str) -> Response:
        return Response(code, status_object(code, message))

    def _not_found(self, resource: str, name: str) -> Response:
        kind = _KINDS[resource]
        return Response(404, status_object(404, f'{kind["resource"]} "{name}" not found', "NotFound",
                                           {"name": name, "group": kind["group"], "kind": resource}))

    def _conflict(self, resource: str, name: str, why: str | None = None) -> Response:
        kind = _KINDS[resource]
        message = (f'Operation cannot be fulfilled on {kind["resource"]} "{name}": '
                   f'{why or "the object has been modified; please apply your changes to the latest version and try again"}')
        return Response(409, status_object(409, message, "Conflict",
                                           {"name": name, "group": kind["group"], "kind": resource}))

    def _invalid(self, resource: str, name: str, problem: str) -> Response:
        kind = _KINDS[resource]
        return Response(422, status_object(
            422, f'{kind["kind"]}.{kind["group"]} "{name}" is invalid: {problem}', "Invalid",
            {"name": name, "group": kind["group"], "kind": kind["kind"],
             "causes": [{"reason": "FieldValueInvalid", "message": problem, "field": problem.split(":")[0]}]}))


def _validate(resource: str, obj: Mapping[str, Any]) -> str | None:
    name = str((obj.get("metadata") or {}).get("name") or "")
    if not name:
        return "metadata.name: Required value: name or generateName is required"
    if not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
        return f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of lower case " \
               f"alphanumeric characters, '-' or '.'"
    if resource != "cronjobs":
        return None
    if len(name) > 52:
        return f"metadata.name: Invalid value: {name!r}: must be no more than 52 characters"
    spec = obj.get("spec") or {}
    schedule = spec.get("schedule")
    if not isinstance(schedule, str) or not schedule.strip():
        return "spec.schedule: Required value"
    if spec.get("timeZone") and re.match(r"^\s*(CRON_)?TZ=", schedule):
        return "spec.schedule: Invalid value: cannot use both timeZone field and TZ or CRON_TZ in schedule"
    if not isinstance(spec.get("jobTemplate"), dict):
        return "spec.jobTemplate: Required value"
    if not isinstance(spec.get("suspend", False), bool):
        return "spec.suspend: Invalid value: must be a boolean"
    return None


def _encode_continue(rv: int, last_name: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": f"{last_name}\x00"}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str] | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if data.get("v") != "meta.k8s.io/v1":
            return None
        return int(data["rv"]), str(data["start"]).rstrip("\x00")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _json_patch(target: dict[str, Any], operations: list[Any]) -> dict[str, Any]:
    """RFC 6902 add / replace / remove / test on JSON pointers."""
    document = copy.deepcopy(target)
    for operation in operations:
        op, path = operation["op"], operation["path"]
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
        parent: Any = document
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if op == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent[last]
            if current != operation["value"]:
                raise ValueError(f"test failed at {path}")
        elif op in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if op == "add":
                    parent.insert(index, operation["value"])
                else:
                    parent[index] = operation["value"]
            else:
                if op == "replace" and last not in parent:
                    raise KeyError(f"replace of a missing path {path}")
                parent[last] = operation["value"]
        elif op == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                del parent[last]
        else:
            raise ValueError(f"unsupported JSON patch operation {op!r}")
    return document


# -- seeds that look like ZenML's ---------------------------------------------------------


def sanitize_label(label: str) -> str:
    """ZenML's kube_utils.sanitize_label: what its CronJob names go through."""
    label = re.sub(r"[^a-z0-9-]", "-", label.lower())
    label = re.sub(r"^[-]+", "", label)
    label = re.sub(r"[-]+", "-", label)
    label = label[:63]
    return re.sub(r"[-]+$", "", label)


def zenml_cron_job_name(pipeline: str, prefix: str | None = None, hex8: str | None = None) -> str:
    suffix = hex8 or "".join(random.choices("0123456789abcdef", k=8))
    return sanitize_label(f"{prefix or ''}-{suffix}-{pipeline}")


def zenml_cron_job(
    pipeline: str,
    component_id: str,
    schedule: str,
    namespace: str = "zenml",
    *,
    name: str | None = None,
    prefix: str | None = None,
    suspend: bool = False,
    time_zone: str | None = None,
    project_id: str | None = None,
    created: str | None = None,
    image: str = "registry.example.com/zenml:training-pipeline-orchestrator",
) -> dict[str, Any]:
    """A CronJob as ZenML's Kubernetes orchestrator builds it (before the server adds its fields)."""
    job_name = name or zenml_cron_job_name(pipeline, prefix)
    labels = {"project_id": sanitize_label(project_id or str(uuid.uuid4())), "pipeline": sanitize_label(pipeline)}
    annotations = {ORCHESTRATOR_ANNOTATION: str(uuid.UUID(component_id))}
    metadata: dict[str, Any] = {"name": job_name, "namespace": namespace, "labels": labels,
                                "annotations": annotations}
    if created:
        metadata["creationTimestamp"] = created
    pod_spec = {
        "restartPolicy": "Never",
        "serviceAccountName": "zenml-service-account",
        "containers": [{
            "name": "main",
            "image": image,
            "command": list(ORCHESTRATOR_ENTRYPOINT),
            "args": ["--snapshot_id", str(uuid.uuid4())],
            "env": [{"name": "ZENML_STORE_URL", "value": "https://zenml.example.com"}],
            "resources": {"requests": {"cpu": "100m", "memory": "400Mi"}},
        }],
    }
    spec: dict[str, Any] = {
        "schedule": schedule,
        "suspend": suspend,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 1,
        "jobTemplate": {
            "metadata": {"name": job_name, "labels": dict(labels), "annotations": dict(annotations)},
            "spec": {
                "backoffLimit": 0,
                "parallelism": 1,
                "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
            },
        },
    }
    if time_zone:
        spec["timeZone"] = time_zone
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata, "spec": spec}


def plain_cron_job(name: str, schedule: str, namespace: str = "zenml", *, suspend: bool = False,
                   labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A CronJob someone else made: no ZenML marks."""
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {"app": name})},
        "spec": {"schedule": schedule, "suspend": suspend, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure",
            "containers": [{"name": name, "image": "busybox:1.36", "command": ["sh", "-c", "date"]}],
        }}}}},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Kubernetes API emulator: CronJobs and Leases (127.0.0.1 only)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=Path, help="JSON: cronjobs, leases, tokens")
    args = parser.parse_args(argv)
    emulator = KubernetesEmulator()
    if args.seed:
        emulator.load(json.loads(args.seed.read_text(encoding="utf-8")))
    port = emulator.start(args.port)
    serve_until_signalled(emulator, f"kubernetes emulator listening on http://127.0.0.1:{port}")


if __name__ == "__main__":
    main()
