"""Loopback pass-through proxies that break chosen requests to a real server.

- `LoopbackServer`: a threaded HTTP server on 127.0.0.1 (a port the kernel picks) that
  can go down and come back on the same port. While down, the port is held by a bound
  socket that does not listen, so every connection attempt is refused (ECONNREFUSED)
  and no other process can take the port meanwhile; open keep-alive connections are cut,
  as when the real server dies.
- `SpoilingProxy`: passes requests through to a real server (the ZenML server in the
  tests), except the ones its `spoil` function answers itself: a status and body (with
  headers, e.g. Retry-After), a dropped connection, or an answer held back for a while.

tests/support/airflow.py's `FaultProxy` (in front of a real Airflow) is built on the same
`LoopbackServer`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union
from urllib.parse import parse_qs, urlsplit

import requests


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1 that `down()` stops (connections refused) and `up()` restarts."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._handler = handler
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._placeholder: socket.socket | None = None
        self._server = self._serve(0)
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def _serve(self, port: int) -> ThreadingHTTPServer:
        tracker = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            # Tracked so that `down()` can cut keep-alive connections a client would otherwise reuse.
            def process_request(self, request: Any, client_address: Any) -> None:
                with tracker._lock:
                    tracker._connections.add(request)
                super().process_request(request, client_address)

            def shutdown_request(self, request: Any) -> None:
                with tracker._lock:
                    tracker._connections.discard(request)
                super().shutdown_request(request)

        server = Server(("127.0.0.1", port), self._handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return server

    @property
    def is_down(self) -> bool:
        return self._placeholder is not None

    def down(self) -> None:
        """Stop listening and cut every open connection; until `up()`, connecting is refused."""
        if self._placeholder is not None:
            return
        self._stop_serving()
        placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        placeholder.bind(("127.0.0.1", self.port))  # bound, never listening: a SYN gets a RST
        self._placeholder = placeholder

    def up(self) -> None:
        if self._placeholder is None:
            return
        self._placeholder.close()
        self._placeholder = None
        self._server = self._serve(self.port)

    def close(self) -> None:
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        else:
            self._stop_serving()

    def _stop_serving(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            open_connections = list(self._connections)
            self._connections.clear()
        for connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler


@dataclass(frozen=True)
class Late:
    """Hold the request `seconds`, then do `then` (None: pass it through; "drop"; or an answer)."""

    seconds: float
    then: Union[None, str, tuple[int, bytes], tuple[int, bytes, dict[str, str]]] = None


# What `spoil` decides for one request: None (pass through), "drop" (close without an answer),
# (status, body) or (status, body, headers) answered by the proxy, or Late(...).
Verdict = Union[None, str, tuple[int, bytes], tuple[int, bytes, dict[str, str]], Late]


class SpoilingProxy:
    """Passes requests through to the real server at `upstream`, except the ones `spoil` answers itself.

    `spoil(method, path, query)` returns a `Verdict`. Every request is logged in `seen`
    as (method, path), spoiled or not; `spoiled` counts the spoiled ones.
    """

    def __init__(self, upstream: str) -> None:
        self.spoil: Callable[[str, str, dict[str, list[str]]], Verdict] = lambda method, path, query: None
        self.spoiled = 0
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                self.forward()

            def do_POST(self) -> None:
                self.forward()

            def forward(self) -> None:
                parts = urlsplit(self.path)
                with proxy._lock:
                    proxy.seen.append((self.command, parts.path))
                verdict = proxy.spoil(self.command, parts.path, parse_qs(parts.query))
                if verdict is not None:
                    with proxy._lock:
                        proxy.spoiled += 1
                if isinstance(verdict, Late):
                    time.sleep(verdict.seconds)
                    verdict = verdict.then
                if verdict == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(verdict, tuple):
                    self.answer(*verdict)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                headers = {k: v for k, v in self.headers.items() if k.lower() in {"authorization", "content-type"}}
                upstream_answer = requests.request(
                    self.command, upstream + self.path, data=self.rfile.read(length) if length else None,
                    headers=headers, timeout=30,
                )
                self.answer(upstream_answer.status_code, upstream_answer.content)

            def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (an answer held past its timeout)

        self._listener = LoopbackServer(Handler)
        self.url = self._listener.url

    def down(self) -> None:
        self._listener.down()

    def up(self) -> None:
        self._listener.up()

    def close(self) -> None:
        self._listener.close()
