"""Turning a generated OpenAPI client's ApiException into our errors (KFP and Kubernetes).

Both generated clients raise `ApiException` with `status`, `headers` and `body`;
both need the same reading of it: count the attempt, retry 429/5xx honouring
`Retry-After`, say what to check on 401/403, and quote the server's message
with any credential of ours blanked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import urllib3

from providers.base import RequestRecorder
from providers.http import RETRY_STATUSES
from providers.retry import Retryable, parse_retry_after


def raw_call(method: Callable[..., Any], operation: str, recorder: RequestRecorder, timeout: float,
             api_exception: type[Exception], on_api_error: Callable[[Any], Exception],
             *args: Any, **kwargs: Any) -> tuple[bytes, int]:
    """One attempt of a generated-client call, unparsed: (body, status) or an exception to raise.

    The generated clients ignore a float `_request_timeout`, so it goes as a
    (connect, read) tuple; connection problems and timeouts become Retryable.
    """
    try:
        response = method(*args, _request_timeout=(timeout, timeout), _preload_content=False, **kwargs)
        data, status = response.data, response.status
        response.release_conn()
    except api_exception as exc:
        raise on_api_error(exc) from None
    except urllib3.exceptions.NewConnectionError:  # a ConnectTimeoutError subclass: test it first
        recorder(operation, "error")
        raise Retryable(f"{operation}: cannot connect to the server") from None
    except urllib3.exceptions.TimeoutError:
        recorder(operation, "timeout")
        raise Retryable(f"{operation}: no answer within {timeout:.1f}s") from None
    except urllib3.exceptions.HTTPError as exc:
        recorder(operation, "error")
        raise Retryable(f"{operation}: cannot reach the server ({type(exc).__name__})") from None
    recorder(operation, str(status))
    return data, status


def api_failure(exc: Any, operation: str, recorder: RequestRecorder, endpoint: str,
                error: Callable[[str, int | None], Exception], who: str, auth_hint: str,
                credentials: Iterable[str | None] = ()) -> Exception:
    """The exception to raise for `exc`: a Retryable, or `error(message, status)`."""
    status = int(exc.status or 0)
    if not status:  # the generated clients' name for a TLS failure
        recorder(operation, "error")
        why = ": certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in str(exc.reason) else ""
        return error(f"{operation}: TLS handshake with {endpoint} failed{why}", None)
    recorder(operation, str(status))
    if status in RETRY_STATUSES:
        headers = exc.headers or {}
        return Retryable(f"{operation}: HTTP {status}", retry_after=parse_retry_after(headers.get("Retry-After")))
    if status in (401, 403):
        verb = "rejected the credentials" if status == 401 else "denied access"
        return error(f"{operation}: HTTP {status}: {who} {verb} ({auth_hint})", status)
    return error(f"{operation}: HTTP {status}{server_message(exc.body, credentials)}", status)


def server_message(body: Any, credentials: Iterable[str | None] = ()) -> str:
    """The server's own `message`, one short line, with any credential of ours blanked."""
    try:
        message = json.loads(body).get("message") if body else None
    except (ValueError, AttributeError):
        return ""
    if not isinstance(message, str) or not message:
        return ""
    text = " ".join(message.split())[:200]
    for credential in credentials:
        if credential:
            text = text.replace(credential, "***")
    return f": {text}"
