"""What every emulator shares: a request log, per-operation faults, an HTTP server.

Faults are set per operation name (e.g. `list_schedules`), in-process through
`FaultPlan.set` or over HTTP through the control endpoints below, so the sandbox
and out-of-process tests can break a running emulator too:

    GET    /_emulator/requests        the request log as JSON
    DELETE /_emulator/requests        clear it
    POST   /_emulator/faults          {"list_schedules": {"status": 503, "times": 2}}
    DELETE /_emulator/faults          clear every fault
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Fault:
    """What goes wrong with an operation's requests.

    `after` requests pass untouched first, so `after=1, status=500` on a listing
    breaks its second page: a listing that fails half way through. `times` limits
    how many requests the fault hits (None: all of them).
    """

    latency: float = 0.0  # seconds added before answering
    status: int | None = None  # answer with this status (5xx, 401, 403, 410, 429)
    retry_after: float | None = None  # sent as Retry-After with the status
    hang: float | None = None  # hold the request this long, then drop the connection
    malformed: bool = False  # answer 200 with a body that is not valid JSON
    after: int = 0
    times: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Fault":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)


class FaultPlan:
    def __init__(self) -> None:
        self._faults: dict[str, Fault] = {}
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def set(self, operation: str, fault: Fault) -> None:
        with self._lock:
            self._faults[operation] = fault
            self._seen[operation] = 0

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._seen.clear()

    def seen(self, operation: str) -> int:
        """Requests of `operation` that reached the fault check since the fault was set.

        They are counted on arrival, before any latency: a test can act while one waits.
        """
        with self._lock:
            return self._seen.get(operation, 0)

    def take(self, operation: str) -> Fault | None:
        """The fault for this request of `operation`, counting it; None if it passes."""
        with self._lock:
            fault = self._faults.get(operation)
            if fault is None:
                return None
            seen = self._seen[operation]
            self._seen[operation] = seen + 1
            if seen < fault.after:
                return None
            if fault.times is not None:
                if seen - fault.after >= fault.times:
                    return None
            return fault


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    operation: str
    query: dict[str, list[str]]
    body: Any
    status: int
    at: float = field(default_factory=time.time)

    @property
    def mutating(self) -> bool:
        return self.method not in SAFE_METHODS


class RequestLog:
    def __init__(self, safe_operations: frozenset[str] = frozenset()) -> None:
        # POSTs that change nothing (logins, token exchanges) are not mutations.
        self._safe_operations = safe_operations
        self._items: list[LoggedRequest] = []
        self._lock = threading.Lock()

    def add(self, item: LoggedRequest) -> None:
        with self._lock:
            self._items.append(item)

    def all(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._items)

    def mutations(self) -> list[LoggedRequest]:
        return [r for r in self.all() if r.mutating and r.operation not in self._safe_operations]

    def count(self, operation: str) -> int:
        return sum(1 for r in self.all() if r.operation == operation)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[["Request"], Response]


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]  # first value of each query parameter
    query: dict[str, list[str]]
    body: Any
    headers: Mapping[str, str]
    match: re.Match[str]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    operation: str
    handler: Handler


class HttpEmulator:
    """A threaded HTTP server on 127.0.0.1 that dispatches to routes and applies faults.

    Subclasses add routes in `__init__` and override `error_body` with the
    API's own error shape, so clients parse emulated errors as real ones.
    """

    name = "emulator"
    safe_operations: frozenset[str] = frozenset()  # non-GET operations that change nothing

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.faults = FaultPlan()
        self.log = RequestLog(self.safe_operations)
        self.lock = threading.RLock()  # guards the emulated state
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._tls = False

    def route(self, method: str, pattern: str, operation: str, handler: Handler) -> None:
        self.routes.append(Route(method, re.compile(f"^{pattern}$"), operation, handler))

    def error_body(self, status: int, message: str) -> Any:
        return {"error": message, "status": status}

    # -- serving -------------------------------------------------------------------

    def start(self, port: int = 0, tls: tuple[str, str] | None = None) -> int:
        """Serve on 127.0.0.1:`port` (0: the kernel picks); `tls` = (certfile, keyfile) serves HTTPS."""
        emulator = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the body waits for the
            # client's delayed ACK of the headers: about 40 ms added to every request.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # the request log replaces stderr noise
                return None

            def do_GET(self) -> None:
                emulator._dispatch(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True
        if tls is not None:
            # Wrapped after bind: the handshake runs on accept, and a client that refuses the
            # certificate only fails its own connection (serve_forever skips the OSError).
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self._tls = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.name, daemon=True)
        self._thread.start()
        return self.port

    @property
    def port(self) -> int:
        assert self._server is not None, "emulator not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _dispatch(self, http: BaseHTTPRequestHandler) -> None:
        split = urlsplit(http.path)
        length = int(http.headers.get("Content-Length") or 0)
        raw = http.rfile.read(length) if length else b""
        body = _decode_body(raw, http.headers.get("Content-Type", ""))
        query = parse_qs(split.query, keep_blank_values=True)
        if split.path.startswith("/_emulator/"):
            self._control(http, http.command, split.path, body)
            return
        for route in self.routes:
            match = route.pattern.match(split.path)
            if match and route.method == http.command:
                break
        else:
            self._send(http, Response(404, self.error_body(404, f"no route for {http.command} {split.path}")))
            self.log.add(LoggedRequest(http.command, split.path, "unknown", query, body, 404))
            return
        fault = self.faults.take(route.operation)
        response = self._faulted(fault, route.operation) if fault else None
        if response is None:
            request = Request(http.command, split.path, {k: v[0] for k, v in query.items()}, query, body,
                              http.headers, match)
            try:
                with self.lock:
                    response = route.handler(request)
            except Exception as exc:  # noqa: BLE001 - an emulator bug must still answer
                response = Response(500, self.error_body(500, f"emulator error: {exc}"))
        self.log.add(LoggedRequest(http.command, split.path, route.operation, query, body, response.status))
        if fault is not None and fault.hang is not None:
            self._stopping.wait(fault.hang)
            http.close_connection = True
            return
        if fault is not None and fault.malformed and response.status < 400:
            response = Response(200, b'{"truncated": [', {"Content-Type": "application/json"})
        self._send(http, response)

    def _faulted(self, fault: Fault, operation: str) -> Response | None:
        if fault.latency:
            time.sleep(fault.latency)
        if fault.status is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            return Response(fault.status, self.error_body(fault.status, f"injected fault on {operation}"), headers)
        return None

    def _send(self, http: BaseHTTPRequestHandler, response: Response) -> None:
        if isinstance(response.body, bytes):
            payload = response.body
        elif response.body is None:
            payload = b""
        else:
            payload = json.dumps(response.body).encode()
        http.send_response(response.status)
        headers = {"Content-Type": "application/json"} if payload else {}
        headers.update(response.headers)
        for key, value in headers.items():
            http.send_header(key, value)
        http.send_header("Content-Length", str(len(payload)))
        http.end_headers()
        if http.command != "HEAD":
            http.wfile.write(payload)

    def _control(self, http: BaseHTTPRequestHandler, method: str, path: str, body: Any) -> None:
        if path == "/_emulator/requests" and method == "GET":
            self._send(http, Response(200, [asdict(r) for r in self.log.all()]))
        elif path == "/_emulator/requests" and method == "DELETE":
            self.log.clear()
            self._send(http, Response(204))
        elif path == "/_emulator/faults" and method == "POST":
            try:
                for operation, spec in (body or {}).items():
                    self.faults.set(operation, Fault.from_json(spec))
            except (TypeError, ValueError) as exc:
                self._send(http, Response(400, {"error": str(exc)}))
                return
            self._send(http, Response(204))
        elif path == "/_emulator/faults" and method == "DELETE":
            self.faults.clear()
            self._send(http, Response(204))
        else:
            self._send(http, Response(404, {"error": f"no control endpoint {method} {path}"}))


def _decode_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if "application/x-www-form-urlencoded" in content_type:
        return {k: v[0] for k, v in parse_qs(raw.decode()).items()}
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def page_slice(items: list[Any], token: str | None, size: int) -> tuple[list[Any], str | None]:
    """Offset paging behind an opaque token, the way most of these APIs page."""
    start = 0
    if token:
        match = re.fullmatch(r"p(\d+)", token)
        if match is None:
            raise ValueError("invalid page token")
        start = int(match.group(1))
    end = start + size
    return items[start:end], (f"p{end}" if end < len(items) else None)


def serve_until_signalled(emulator: Any, banner: str) -> None:
    """For an emulator's `main()`: print where it listens, serve until SIGTERM/SIGINT, stop."""
    import signal

    print(banner, flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    emulator.stop()
