"""An emulator of Airflow 3's public REST API (`/api/v2`) for DAGs, with `/auth/token`.

For the sandbox and the benchmark; the tests of the Airflow target run against
a real Airflow server. Field names, paging (`limit` capped at 100, `offset`,
`total_entries`), the JWT from `/auth/token` and the FastAPI error body
(`{"detail": ...}`) follow Airflow 3.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from providers.emulators.base import HttpEmulator, Request, Response, serve_until_signalled

MAX_LIMIT = 100
TOKEN_SECONDS = 3600


@dataclass
class Dag:
    dag_id: str
    timetable_summary: str | None  # "0 9 * * *", "6:00:00", None
    is_paused: bool = False
    is_stale: bool = False
    tags: list[str] = field(default_factory=list)
    zenml_zip: bool = True  # ZenML ships each DAG as `<dag_id>.zip`; hand-written DAGs are plain files

    @property
    def _file(self) -> str:
        return f"{self.dag_id}.zip/dag.py" if self.zenml_zip else f"{self.dag_id}.py"

    def to_json(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id, "dag_display_name": self.dag_id, "is_paused": self.is_paused,
            "is_stale": self.is_stale, "last_parsed_time": "2026-11-21T08:00:00Z", "last_expired": None,
            "bundle_name": "dags-folder", "bundle_version": None, "relative_fileloc": self._file,
            "fileloc": f"/opt/airflow/dags/{self._file}", "description": None,
            "timetable_summary": self.timetable_summary, "timetable_description": None,
            "tags": [{"name": t, "dag_id": self.dag_id} for t in self.tags], "max_active_tasks": 16,
            "max_active_runs": 16, "max_consecutive_failed_dag_runs": 0, "has_task_concurrency_limits": False,
            "has_import_errors": False, "next_dagrun_logical_date": None, "next_dagrun_data_interval_start": None,
            "next_dagrun_data_interval_end": None, "next_dagrun_run_after": None, "owners": ["zenml"],
            "file_token": "",
        }


def timetable_summary(cron: str | None, interval_seconds: float | None) -> str | None:
    """How Airflow 3 summarises a cron (as written) or a timedelta (`str(timedelta)`)."""
    if cron is not None:
        return cron
    if interval_seconds is None:
        return None
    from datetime import timedelta

    return str(timedelta(seconds=interval_seconds))


class AirflowEmulator(HttpEmulator):
    name = "airflow-emulator"
    safe_operations = frozenset({"auth_token"})

    def __init__(self, username: str = "admin", password: str = "admin") -> None:
        super().__init__()
        self.dags: dict[str, Dag] = {}
        self._credentials = (username, password)
        self._tokens: set[str] = set()
        self.route("POST", r"/auth/token", "auth_token", self._token)
        self.route("GET", r"/api/v2/version", "version", lambda r: Response(200, {"version": "3.3.2", "git_version": None}))
        self.route("GET", r"/api/v2/dags", "list_dags", self._authed(self._list))
        self.route("GET", r"/api/v2/dags/(?P<dag_id>[^/]+)", "get_dag", self._authed(self._get))
        self.route("PATCH", r"/api/v2/dags/(?P<dag_id>[^/]+)", "patch_dag", self._authed(self._patch))
        self.route("DELETE", r"/api/v2/dags/(?P<dag_id>[^/]+)", "delete_dag", self._authed(self._delete))

    def error_body(self, status: int, message: str) -> Any:
        return {"detail": message}

    def add(self, dag: Dag) -> None:
        with self.lock:
            self.dags[dag.dag_id] = dag

    # -- handlers --------------------------------------------------------------------

    def _token(self, request: Request) -> Response:
        body = request.body if isinstance(request.body, dict) else {}
        if (body.get("username"), body.get("password")) != self._credentials:
            return Response(401, {"detail": "Invalid credentials"})
        claims = {"sub": body["username"], "exp": int(time.time()) + TOKEN_SECONDS, "jti": secrets.token_hex(8)}
        token = ".".join(_b64(part) for part in ({"alg": "HS512", "typ": "JWT"}, claims)) + "." + secrets.token_hex(16)
        self._tokens.add(token)
        return Response(201, {"access_token": token})

    def _authed(self, handler: Any) -> Any:
        def wrapped(request: Request) -> Response:
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer ") or header[7:] not in self._tokens:
                return Response(401, {"detail": "Not authenticated"})
            return handler(request)

        return wrapped

    def _list(self, request: Request) -> Response:
        try:
            limit = min(int(request.params.get("limit", 50)), MAX_LIMIT)
            offset = int(request.params.get("offset", 0))
        except ValueError:
            return Response(422, {"detail": "limit and offset must be integers"})
        exclude_stale = request.params.get("exclude_stale", "true").lower() != "false"
        dags = sorted((d for d in self.dags.values() if not (exclude_stale and d.is_stale)), key=lambda d: d.dag_id)
        return Response(200, {"dags": [d.to_json() for d in dags[offset:offset + limit]], "total_entries": len(dags)})

    def _get(self, request: Request) -> Response:
        dag = self.dags.get(request.match.group("dag_id"))
        if dag is None:
            return Response(404, {"detail": f"Dag with id {request.match.group('dag_id')} was not found"})
        return Response(200, dag.to_json())

    def _patch(self, request: Request) -> Response:
        dag = self.dags.get(request.match.group("dag_id"))
        if dag is None:
            return Response(404, {"detail": f"Dag with id {request.match.group('dag_id')} was not found"})
        body = request.body if isinstance(request.body, dict) else {}
        if "is_paused" in body:
            dag.is_paused = bool(body["is_paused"])
        return Response(200, dag.to_json())

    def _delete(self, request: Request) -> Response:
        if self.dags.pop(request.match.group("dag_id"), None) is None:
            return Response(404, {"detail": f"Dag with id {request.match.group('dag_id')} was not found"})
        return Response(204)


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Airflow 3 /api/v2 DAG emulator on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", help="JSON list of DAGs: {dag_id, timetable_summary, is_paused, is_stale, tags}")
    args = parser.parse_args(argv)
    emulator = AirflowEmulator()
    if args.seed:
        with open(args.seed, encoding="utf-8") as handle:
            for item in json.load(handle):
                emulator.add(Dag(**item))
    emulator.start(args.port)
    serve_until_signalled(emulator, f"airflow emulator on {emulator.url}")


if __name__ == "__main__":
    main()
