"""ZenML's schedule registry read through a ZenML server's REST API (read-only).

Auth is a service-account API key: `POST /api/v1/login` with the form field
`password=<key>` answers a bearer token. The key is re-read from its env var or
file at every login, so a rotated key (a new file from a secret mount) is
picked up at the next 401. Tokens with a lifetime are renewed before they run
out; a 401 (token expired or revoked, key rotated) logs in once more.

Everything is read page by page and per project (`/api/v1/projects`): the
server requires a project scope for schedules and pipelines. Archived
schedules are read too (0.98 lists them unless `is_archived` is given): they
are the tombstones orphan detection works from. Any error, timeout or
malformed answer part way raises RegistryError; a partial snapshot is never
returned.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from reconciler.config import ConfigError, RegistryConfig, secret
from reconciler.model import Component, RegistryError, RegistrySchedule, RegistrySnapshot

from providers.base import RequestRecorder, null_recorder
from providers.http import HttpClient, HttpError, tls_verify
from providers.retry import Backoff

API = "/api/v1"
# ZenML's PAGE_SIZE_MAXIMUM (`size` is validated `le=` it); a server started with
# ZENML_PAGINATION_DEFAULT_LIMIT has a lower one, see `_list`.
SERVER_MAX_PAGE_SIZE = 10000
# Renew a token this long before the server says it expires (at most half its lifetime).
TOKEN_RENEW_MARGIN = 30.0
# A listing whose pages disagree (a row added or removed between two pages) is read again
# this many times before the read fails.
LISTING_ATTEMPTS = 3

_ARCHIVE_SUFFIX = re.compile(r"^(?P<name>.+)_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ISO_DURATION = re.compile(
    r"^(?P<sign>[-+])?P"
    r"(?:(?P<years>\d+(?:[.,]\d+)?)Y)?"
    r"(?:(?P<months>\d+(?:[.,]\d+)?)M)?"
    r"(?:(?P<weeks>\d+(?:[.,]\d+)?)W)?"
    r"(?:(?P<days>\d+(?:[.,]\d+)?)D)?"
    r"(?:T"
    r"(?:(?P<hours>\d+(?:[.,]\d+)?)H)?"
    r"(?:(?P<minutes>\d+(?:[.,]\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?"
    r")?$"
)
# pydantic (which serializes ZenML's `interval_second: timedelta`) counts a year as 365
# days and a month as 30; it emits years for 365+ days (`P1Y35DT1H1M1.25S`).
_UNIT_SECONDS = {
    "years": Decimal(365 * 86400),
    "months": Decimal(30 * 86400),
    "weeks": Decimal(7 * 86400),
    "days": Decimal(86400),
    "hours": Decimal(3600),
    "minutes": Decimal(60),
    "seconds": Decimal(1),
}


def parse_iso_duration(text: str) -> float:
    """`PT6H`, `P1DT0.5S`, `-PT1S`, `P1Y35DT1H1M1.25S` -> seconds as a float.

    The sum is exact (Decimal) and rounded to whole microseconds, as Python's
    timedelta holds it, so the value equals the float seconds in ZenML's table.
    """
    match = _ISO_DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    date_part = match and any(match.group(u) for u in ("years", "months", "weeks", "days"))
    time_part = match and any(match.group(u) for u in ("hours", "minutes", "seconds"))
    # `P` alone, or a `T` with no time unit after it, is not a duration.
    if not match or not (date_part or time_part) or ("T" in text and not time_part):
        raise ValueError(f"{text!r} is not an ISO-8601 duration")
    total = Decimal(0)
    for unit, seconds in _UNIT_SECONDS.items():
        value = match.group(unit)
        if value is not None:
            total += Decimal(value.replace(",", ".")) * seconds
    micros = int(total.scaleb(6).to_integral_value())
    if match.group("sign") == "-":
        micros = -micros
    return timedelta(microseconds=micros).total_seconds()


def original_name(name: str, archived: bool) -> str:
    """Archiving renames a schedule to `<name>_<uuid4>`; this is `<name>`."""
    if not archived:
        return name
    match = _ARCHIVE_SUFFIX.match(name)
    return match.group("name") if match else name


class ZenmlRestRegistry:
    def __init__(self, config: RegistryConfig, recorder: RequestRecorder = null_recorder) -> None:
        if not config.url:
            raise RegistryError("registry.url: zenml-rest needs the ZenML server's URL")
        self._config = config
        self._endpoint = _without_userinfo(config.url)
        self._token: str | None = None
        self._renew_at: float | None = None  # time.monotonic() instant; None: no expiry
        self._page_size = min(config.page_size, SERVER_MAX_PAGE_SIZE)
        self._deadline: float | None = None  # time.monotonic() instant the current read must end by
        verify = tls_verify(config.verify_tls, config.ca_bundle)
        self._http = HttpClient(
            config.url,
            recorder,
            timeout=config.timeout,
            backoff=Backoff(max_retries=config.max_retries),
            verify=verify,
            auth_headers=self._auth_headers,
            reauthenticate=self._login,
        )

    # -- the protocol --------------------------------------------------------

    def read(self) -> RegistrySnapshot:
        read_at = datetime.now(timezone.utc)
        self._deadline = time.monotonic() + self._config.read_deadline
        with self._failures_as_registry_errors():
            projects = self._projects()
            components = tuple(
                _component(item)
                for item in self._list("/components", "components", {"type": "orchestrator", "hydrate": "true"})
            )
            schedules: list[RegistrySchedule] = []
            pipelines: dict[str, str] = {}
            for project_id, project_name in projects:
                project_pipelines = {
                    _hex(item, "id"): _str(item, "name")
                    for item in self._list("/pipelines", "pipelines", {"project": project_id})
                }
                pipelines.update(project_pipelines)
                for item in self._list("/schedules", "schedules", {"project": project_id, "hydrate": "true"}):
                    schedules.append(_schedule(item, project_name, project_pipelines))
        # The SQL provider's order, so that both snapshots of one store compare equal.
        schedules.sort(key=lambda s: (s.project, s.name))
        return RegistrySnapshot(
            schedules=tuple(schedules),
            components=tuple(sorted(components, key=lambda c: c.name)),
            pipelines=frozenset(pipelines.values()),
            read_at=read_at,
        )

    def check(self) -> None:
        self._deadline = time.monotonic() + self._config.read_deadline
        with self._failures_as_registry_errors():
            self._login()
            self._get("/projects", "projects", {"page": 1, "size": 1})

    @contextmanager
    def _failures_as_registry_errors(self) -> Iterator[None]:
        try:
            yield
        except HttpError as exc:
            if self._deadline is not None and time.monotonic() >= self._deadline:
                # The last request's timeout was cut to what was left: name the deadline, not the timeout.
                raise RegistryError(f"ZenML server {self._endpoint}: reading took longer than the read deadline "
                                    f"({self._config.read_deadline:g}s): {exc}") from None
            raise RegistryError(f"ZenML server {self._endpoint}: {exc}") from None
        except _Malformed as exc:
            raise RegistryError(f"ZenML server {self._endpoint}: malformed answer: {exc}") from None
        except requests.RequestException as exc:
            # Failures HttpClient does not map (a body cut off mid-read, a bad URL): never partial.
            raise RegistryError(f"ZenML server {self._endpoint}: {type(exc).__name__}") from None

    def close(self) -> None:
        self._http.close()

    # -- auth ----------------------------------------------------------------

    def _api_key(self) -> str:
        try:
            key = secret(self._config.api_key_env, self._config.api_key_file)
        except ConfigError as exc:
            raise RegistryError(f"ZenML API key: {exc}") from None
        if not key:
            raise RegistryError(f"ZenML API key: {self._key_source()} is empty")
        return key.strip()

    def _key_source(self) -> str:
        if self._config.api_key_file:
            return f"the file {self._config.api_key_file}"
        return f"the environment variable {self._config.api_key_env}"

    def _login(self) -> None:
        self._token = None
        key = self._api_key()
        sent = time.monotonic()
        try:
            response = self._http.request(
                "POST", f"{API}/login", "login", data={"password": key}, authenticated=False
            )
        except HttpError as exc:
            if exc.status in (401, 403):
                raise RegistryError(
                    f"ZenML server {self._endpoint}: login refused (HTTP {exc.status}): the API key from "
                    f"{self._key_source()} is invalid, expired, rotated or deactivated"
                ) from None
            raise RegistryError(f"ZenML server {self._endpoint}: login failed: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"ZenML server {self._endpoint}: the login answer carries no access token")
        expires_in = body.get("expires_in")
        if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) and expires_in > 0:
            margin = min(TOKEN_RENEW_MARGIN, expires_in / 2)
            self._renew_at = sent + expires_in - margin
        else:
            self._renew_at = None  # ZenML's default: tokens without expiry
        self._token = token

    def _auth_headers(self) -> Mapping[str, str]:
        if self._token is None or (self._renew_at is not None and time.monotonic() >= self._renew_at):
            self._login()
        return {"Authorization": f"Bearer {self._token}"}

    # -- listing -------------------------------------------------------------

    def _projects(self) -> list[tuple[str, str]]:
        """(id, name) of the projects to read: all, or those named (by name or id) in config."""
        found = [(_str(item, "id"), _str(item, "name")) for item in self._list("/projects", "projects", {})]
        if not self._config.projects:
            return found
        chosen = []
        for wanted in self._config.projects:
            match = [p for p in found if wanted in (p[1], p[0]) or _same_uuid(wanted, p[0])]
            if not match:
                # Reading nothing for a misspelt project would look like every schedule deleted.
                raise RegistryError(f"ZenML server {self._endpoint}: project {wanted!r} does not exist")
            chosen.extend(m for m in match if m not in chosen)
        return chosen

    def _get(self, path: str, operation: str, params: Mapping[str, Any]) -> Any:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            # Never a partial snapshot: the read as a whole failed.
            raise RegistryError(f"ZenML server {self._endpoint}: reading took longer than the read deadline "
                                f"({self._config.read_deadline:g}s), stopped before {API}{path}")
        return self._http.get_json(API + path, operation, params=params, deadline=self._deadline)

    def _list(self, path: str, operation: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every item of a paginated listing, or an error: never part of one."""
        for _ in range(LISTING_ATTEMPTS):
            items = self._pages(path, operation, params)
            if items is not None:
                return items
        raise RegistryError(
            f"ZenML server {self._endpoint}: {API}{path} changed while it was read, {LISTING_ATTEMPTS} times in a row"
        )

    def _pages(self, path: str, operation: str, params: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """All pages once; None when the pages disagree (rows added or removed meanwhile)."""
        items: list[dict[str, Any]] = []
        page_number = 1
        first_total: int | None = None
        while True:
            try:
                page = self._page(path, operation, params, page_number)
            except HttpError as exc:
                if exc.status == 400 and page_number > 1:
                    return None  # ZenML's answer to a page past the end: rows were deleted meanwhile
                raise
            page_items = _items(page)
            total, total_pages = _int(page, "total"), _int(page, "total_pages")
            first_total = total if first_total is None else first_total
            if total != first_total:
                return None
            items.extend(page_items)
            if page_number >= total_pages:
                break
            page_number += 1
        ids = [_str(item, "id") for item in items]
        if len(ids) != first_total or len(set(ids)) != len(ids):
            return None
        return items

    def _page(self, path: str, operation: str, params: Mapping[str, Any], number: int) -> Mapping[str, Any]:
        query = {**params, "page": number, "size": self._page_size}
        try:
            page = self._get(path, operation, query)
        except HttpError as exc:
            if exc.status != 422 or number != 1:
                raise
            # The server's own maximum is lower than ours (ZENML_PAGINATION_DEFAULT_LIMIT sets
            # both its default and its maximum): ask without `size` and adopt its page size.
            page = self._get(path, operation, {**params, "page": number})
            if not isinstance(page, dict) or _int(page, "max_size") < 1:
                raise _Malformed(f"{API}{path}: a page without a usable `max_size`")
            self._page_size = _int(page, "max_size")
        if not isinstance(page, dict):
            raise _Malformed(f"{API}{path}: a page is not an object")
        return page


class _Malformed(Exception):
    """An answer without the fields or types ZenML's models promise."""


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _same_uuid(a: str, b: str) -> bool:
    try:
        return uuid.UUID(a) == uuid.UUID(b)
    except ValueError:
        return False


def _items(page: Mapping[str, Any]) -> list[dict[str, Any]]:
    items = page.get("items")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise _Malformed("a page without an `items` list of objects")
    return items


def _section(item: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = item.get(key)
    if not isinstance(value, dict):
        raise _Malformed(f"item {item.get('id')!r} has no `{key}` object (hydrate=true was ignored?)")
    return value


def _str(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise _Malformed(f"`{key}` is not a string in item {item.get('id')!r}")
    return value


def _opt_str(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is not None and not isinstance(value, str):
        raise _Malformed(f"`{key}` is not a string")
    return value


def _int(item: Mapping[str, Any], key: str) -> int:
    value = item.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Malformed(f"`{key}` is not an integer")
    return value


def _bool(item: Mapping[str, Any], key: str, default: bool | None = None) -> bool:
    value = item.get(key, default)
    if not isinstance(value, bool):
        raise _Malformed(f"`{key}` is not a boolean")
    return value


def _hex(item: Mapping[str, Any], key: str) -> str:
    value = _opt_hex(item, key)
    if value is None:
        raise _Malformed(f"`{key}` is missing")
    return value


def _opt_hex(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is None:
        return None
    try:
        return uuid.UUID(str(value)).hex
    except ValueError:
        raise _Malformed(f"`{key}` is not a UUID: {str(value)[:60]!r}") from None


def _time(item: Mapping[str, Any], key: str) -> datetime | None:
    """ZenML answers naive ISO datetimes that mean UTC; an aware one is converted."""
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Malformed(f"`{key}` is not a datetime string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Malformed(f"`{key}` is not an ISO datetime: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 has no UTC date
        raise _Malformed(f"`{key}` is out of range in UTC: {value[:40]!r}") from None


def _required_time(item: Mapping[str, Any], key: str) -> datetime:
    value = _time(item, key)
    if value is None:
        raise _Malformed(f"`{key}` is missing")
    return value


def _interval(body: Mapping[str, Any]) -> float | None:
    value = body.get("interval_second")
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)  # servers that answer plain seconds
    if isinstance(value, str):
        try:
            return parse_iso_duration(value)
        except (ValueError, InvalidOperation, OverflowError):  # OverflowError: past timedelta's range
            pass
    raise _Malformed(f"`interval_second` is not an ISO-8601 duration: {str(value)[:40]!r}")


def _component(item: Mapping[str, Any]) -> Component:
    body = _section(item, "body")
    metadata = _section(item, "metadata")
    configuration = metadata.get("configuration") or {}
    if not isinstance(configuration, dict):
        raise _Malformed(f"component {item.get('id')!r}: `configuration` is not an object")
    return Component(
        id=_hex(item, "id"),
        name=_str(item, "name"),
        flavor=_str(body, "flavor_name"),
        configuration=configuration,
    )


def _schedule(item: Mapping[str, Any], project: str, pipelines: Mapping[str, str]) -> RegistrySchedule:
    body = _section(item, "body")
    metadata = _section(item, "metadata")
    name = _str(item, "name")
    archived = _bool(body, "is_archived", False)  # absent before ZenML 0.93.1
    pipeline_id = _opt_hex(metadata, "pipeline_id")
    run_metadata = metadata.get("run_metadata") or {}
    if not isinstance(run_metadata, dict):
        raise _Malformed(f"schedule {item.get('id')!r}: `run_metadata` is not an object")
    return RegistrySchedule(
        id=_hex(item, "id"),
        name=name,
        original_name=original_name(name, archived),
        project=project,
        pipeline=pipelines.get(pipeline_id) if pipeline_id else None,
        orchestrator_id=_opt_hex(metadata, "orchestrator_id"),
        active=_bool(body, "active"),
        archived=archived,
        cron_expression=_opt_str(body, "cron_expression") or None,
        interval_seconds=_interval(body),
        start_time=_time(body, "start_time"),
        end_time=_time(body, "end_time"),
        run_once_start_time=_time(body, "run_once_start_time"),
        catchup=_bool(body, "catchup", False),
        created=_required_time(body, "created"),
        updated=_required_time(body, "updated"),
        metadata=run_metadata,
    )
