"""A small JSON-over-HTTP client for the providers that speak plain REST.

Every call has a timeout, counts itself in `api_requests_total`, retries 429,
5xx, refused connections and timeouts with backoff (honouring `Retry-After`),
and re-authenticates once on 401. Error messages carry the method, path and
status, never headers, tokens or bodies that could hold secrets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from providers.base import RequestRecorder
from providers.retry import Backoff, RateLimiter, Retryable, call_with_retries, parse_retry_after

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class HttpError(Exception):
    """A call that failed for good. `status` is None when no answer came."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HttpClient:
    def __init__(
        self,
        base_url: str,
        recorder: RequestRecorder,
        *,
        timeout: float,
        backoff: Backoff,
        verify: bool | str = True,
        rate_limit: float | None = None,
        auth_headers: Callable[[], Mapping[str, str]] | None = None,
        reauthenticate: Callable[[], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._recorder = recorder
        self._timeout = timeout
        self._backoff = backoff
        self._limiter = RateLimiter(rate_limit)
        self._auth_headers = auth_headers
        self._reauthenticate = reauthenticate
        self.session = requests.Session()
        pin_verify(self.session, verify)

    def request(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        authenticated: bool = True,
    ) -> requests.Response:
        """One logical call; returns a 2xx response or raises HttpError."""
        reauthenticated = False

        def attempt() -> requests.Response:
            nonlocal reauthenticated
            self._limiter.acquire()
            merged = dict(headers or {})
            if authenticated and self._auth_headers is not None:
                merged.update(self._auth_headers())
            timeout = self._timeout
            if deadline is not None:
                timeout = max(0.001, min(timeout, deadline - time.monotonic()))
            try:
                response = self.session.request(
                    method, self.base_url + path, params=params, json=json, data=data,
                    headers=merged, timeout=timeout,
                )
            except requests.Timeout:
                self._recorder(operation, "timeout")
                raise Retryable(f"{method} {path}: timed out after {timeout:.1f}s") from None
            except requests.ConnectionError as exc:
                self._recorder(operation, "error")
                raise Retryable(f"{method} {path}: cannot connect ({_reason(exc)})") from None
            self._recorder(operation, str(response.status_code))
            if response.status_code == 401 and authenticated and self._reauthenticate and not reauthenticated:
                reauthenticated = True
                self._reauthenticate()
                raise Retryable(f"{method} {path}: 401, token refreshed", retry_after=0)
            if response.status_code in RETRY_STATUSES:
                raise Retryable(
                    f"{method} {path}: HTTP {response.status_code}",
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                )
            return response

        try:
            response = call_with_retries(attempt, self._backoff, deadline)
        except Retryable as exc:
            raise HttpError(f"{exc} (gave up after retries)") from None
        if response.status_code >= 400:
            raise HttpError(f"{method} {path}: HTTP {response.status_code}{_detail(response)}", response.status_code)
        return response

    def get_json(self, path: str, operation: str, **kwargs: Any) -> Any:
        response = self.request("GET", path, operation, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise HttpError(f"GET {path}: the answer is not JSON", response.status_code) from None

    def close(self) -> None:
        self.session.close()


def tls_verify(verify_tls: bool, ca_bundle: str | None) -> bool | str:
    """requests' `verify` for a config's `verify_tls` / `ca_bundle`: off wins, else the bundle, else the system's."""
    if not verify_tls:
        return False
    return ca_bundle or True


def pin_verify(session: requests.Session, verify: bool | str) -> None:
    """Make `verify` hold for every request of `session`.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set in many images) replace a
    session's `verify` on every request (psf/requests#3829): a configured `ca_bundle`
    or `verify_tls: false` would be silently ignored. Only the default (True: the
    system's trust, which those variables name) is left to the environment.
    """
    session.verify = verify
    if verify is True:
        return
    merge = session.merge_environment_settings

    def merged(url: Any, proxies: Any, stream: Any, verify_: Any, cert: Any) -> dict[str, Any]:
        settings: dict[str, Any] = merge(url, proxies, stream, verify_, cert)
        settings["verify"] = verify
        return settings

    session.merge_environment_settings = merged  # type: ignore[method-assign]


def _detail(response: requests.Response) -> str:
    """A short, secret-free hint from an error body (`detail` / `message` fields only)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        for key in ("detail", "message", "title", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return f": {value[:200]}"
    return ""


def _reason(exc: requests.ConnectionError) -> str:
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        # Never retried into silence: say it is the certificate, so the fix (ca_bundle) is obvious.
        return "TLS certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in text else "TLS handshake failed"
    for marker in ("Connection refused", "Name or service not known", "No route to host", "Connection reset"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__
