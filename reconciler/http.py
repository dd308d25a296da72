"""The daemon's HTTP endpoints: /metrics, /healthz, /readyz, /plan.

Nothing here exposes more than `plan` already shows: no config, no secrets.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST


class StatusSource(Protocol):
    """What the endpoints read; the loop provides it."""

    def metrics_text(self) -> bytes: ...
    def healthy(self) -> tuple[bool, str]: ...
    def ready(self) -> tuple[bool, str]: ...
    def plan(self) -> dict[str, Any] | None: ...


def serve(source: StatusSource, host: str, port: int) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; returns the server (its port may be 0 → chosen)."""
    routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
        "/metrics": lambda: (200, CONTENT_TYPE_LATEST, source.metrics_text()),
        "/healthz": lambda: _check(source.healthy()),
        "/readyz": lambda: _check(source.ready()),
        "/plan": lambda: _plan(source.plan()),
    }

    class Handler(BaseHTTPRequestHandler):
        # The default Server header names the Python version: nothing a scraper needs.
        server_version = "schedule-reconciler"
        sys_version = ""

        def log_message(self, *args: Any) -> None:  # scrapes every few seconds: not worth a log line
            return None

        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            status, content_type, body = route() if route else (404, "text/plain", b"not found\n")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def _check(result: tuple[bool, str]) -> tuple[int, str, bytes]:
    ok, why = result
    return (200 if ok else 503), "text/plain; charset=utf-8", (why + "\n").encode()


def _plan(plan: dict[str, Any] | None) -> tuple[int, str, bytes]:
    if plan is None:
        return 503, "application/json", b'{"error": "no cycle has finished yet"}\n'
    return 200, "application/json", json.dumps(plan, indent=2).encode()
