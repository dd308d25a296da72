"""The REST registry provider against a real ZenML 0.98.0 server.

The server serves a copy of the committed 0.98.0 store file; the SQL provider
reading the same file is the reference: both must see the same registry.
Failures part way are made by a small pass-through proxy in front of the real
server that spoils one chosen answer.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from providers.zenml_rest import ZenmlRestRegistry
from providers.zenml_sql import ZenmlSqlRegistry
from reconciler.config import RegistryConfig
from reconciler.model import RegistryError, RegistrySnapshot
from tests.support.procs import free_port
from tests.support.spoiling import SpoilingProxy
from tests.support.zenml_server import SERVER_MAX_PAGE_SIZE, ZenmlServer, zenml_server  # noqa: F401
from providers.emulators import scenario
from tests.support.recorder import Recorder

pytestmark = pytest.mark.integration

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def key_file(tmp_path: Path, key: str, name: str = "api-key") -> Path:
    path = tmp_path / name
    path.write_text(key + "\n", encoding="utf-8")
    return path


def rest_config(url: str, key_path: Path, **overrides: object) -> RegistryConfig:
    fields: dict[str, object] = {
        "type": "zenml-rest", "url": url, "api_key_file": str(key_path), "max_retries": 1, "timeout": 30,
    }
    fields.update(overrides)
    return RegistryConfig.model_validate(fields)


def normalized(snapshot: RegistrySnapshot) -> RegistrySnapshot:
    """The read time is the only part of a snapshot that is not what was read."""
    return replace(snapshot, read_at=EPOCH)


def sql_snapshot(server: ZenmlServer, **overrides: object) -> RegistrySnapshot:
    config = RegistryConfig.model_validate({"type": "zenml-sql", "url": f"sqlite:///{server.store}", **overrides})
    registry = ZenmlSqlRegistry(config)
    try:
        return registry.read()
    finally:
        registry.close()


def rest_read(config: RegistryConfig, calls: Recorder | None = None) -> RegistrySnapshot:
    registry = ZenmlRestRegistry(config, calls or Recorder())
    try:
        return registry.read()
    finally:
        registry.close()


# -- the same registry as the SQL provider sees ---------------------------------


def test_rest_snapshot_equals_the_sql_snapshot(zenml_server: ZenmlServer, tmp_path: Path) -> None:
    calls = Recorder()
    rest = rest_read(rest_config(zenml_server.url, key_file(tmp_path, zenml_server.api_key)), calls)
    sql = sql_snapshot(zenml_server)

    assert normalized(rest) == normalized(sql)
    # ... and that registry is the scenario, archived tombstones and run metadata included.
    assert {s.original_name for s in rest.schedules} == {s.name for s in scenario.SCHEDULES}
    archived = {s.original_name for s in rest.schedules if s.archived}
    assert archived == {s.name for s in scenario.SCHEDULES if s.archived}
    by_name = {s.original_name: s for s in rest.schedules}
    assert by_name["k8s_nightly"].metadata["cron_job_name"] == "zenml-0a1b2c3d-k8s-batch"
    assert by_name["ingest_every_6h"].interval_seconds == 6 * 3600.0
    assert by_name["kfp_nightly"].project == "analytics"
    assert by_name["doomed_daily"].orchestrator_id is None
    assert by_name["etl_daily"].pipeline == "etl"
    assert rest.pipelines >= set(scenario.PIPELINES)
    flavors = {c.name: c.flavor for c in rest.components}
    for spec in scenario.COMPONENTS:
        assert (spec.name in flavors) is (not spec.deleted)
    assert {c.name: dict(c.configuration) for c in rest.components}["vertex-orchestrator"] == {
        "project": "demo-project", "location": "us-central1",
    }
    # The server caps pages at SERVER_MAX_PAGE_SIZE: the default page size was refused once
    # (422), the server's maximum adopted, and the schedules came in several pages.
    assert calls.count("projects", "422") == 1
    assert calls.count("schedules", "200") > len(scenario.SCHEDULES) // SERVER_MAX_PAGE_SIZE


def test_a_tiny_page_size_reads_page_by_page_and_still_equals_sql(zenml_server: ZenmlServer, tmp_path: Path) -> None:
    calls = Recorder()
    config = rest_config(zenml_server.url, key_file(tmp_path, zenml_server.api_key), page_size=2)
    rest = rest_read(config, calls)

    assert normalized(rest) == normalized(sql_snapshot(zenml_server))
    assert calls.count("schedules", "200") >= len(scenario.SCHEDULES) // 2
    assert calls.count("projects", "422") == 0


def test_one_project_reads_only_that_project(zenml_server: ZenmlServer, tmp_path: Path) -> None:
    config = rest_config(zenml_server.url, key_file(tmp_path, zenml_server.api_key), projects=["analytics"])
    rest = rest_read(config)

    assert {s.project for s in rest.schedules} == {"analytics"}
    assert {s.original_name for s in rest.schedules} == {
        s.name for s in scenario.SCHEDULES if s.project == "analytics"
    }
    assert normalized(rest) == normalized(sql_snapshot(zenml_server, projects=["analytics"]))


def test_an_unknown_project_is_an_error_not_an_empty_registry(zenml_server: ZenmlServer, tmp_path: Path) -> None:
    config = rest_config(zenml_server.url, key_file(tmp_path, zenml_server.api_key), projects=["no-such-project"])
    with pytest.raises(RegistryError, match="no-such-project"):
        rest_read(config)


def test_the_key_can_come_from_an_environment_variable(
    zenml_server: ZenmlServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_ZENML_KEY", zenml_server.api_key)
    config = RegistryConfig(type="zenml-rest", url=zenml_server.url, api_key_env="TEST_ZENML_KEY")
    registry = ZenmlRestRegistry(config, Recorder())
    try:
        registry.check()
        assert len(registry.read().schedules) == len(scenario.SCHEDULES)
    finally:
        registry.close()


# -- authentication ----------------------------------------------------------------


def wrong_key(real: str) -> str:
    """A well-formed key of the real key's id with another secret: ZenML must reject it."""
    payload = json.loads(base64.b64decode(real.removeprefix("ZENKEY_")))
    payload["key"] = "0" * len(payload["key"])
    return "ZENKEY_" + base64.b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize("make_key", [wrong_key, lambda real: "ZENKEY_not-a-key-at-all"], ids=["wrong", "garbage"])
def test_an_invalid_key_fails_clearly_without_showing_the_key(
    zenml_server: ZenmlServer, tmp_path: Path, make_key: Callable[[str], str]
) -> None:
    bad = make_key(zenml_server.api_key)
    calls = Recorder()
    registry = ZenmlRestRegistry(rest_config(zenml_server.url, key_file(tmp_path, bad)), calls)
    try:
        for action in (registry.read, registry.check):
            with pytest.raises(RegistryError) as caught:
                action()
            message = str(caught.value)
            assert "login refused (HTTP 401)" in message
            assert str(tmp_path / "api-key") in message  # says where the key came from
            assert bad not in message and bad.removeprefix("ZENKEY_") not in message
            assert "\n" not in message
    finally:
        registry.close()
    assert calls.count("login", "401") == 2
    assert calls.count("schedules") == 0


def test_a_missing_key_variable_is_named(zenml_server: ZenmlServer) -> None:
    config = RegistryConfig(type="zenml-rest", url=zenml_server.url, api_key_env="TEST_ZENML_KEY_UNSET")
    with pytest.raises(RegistryError, match="TEST_ZENML_KEY_UNSET is not set"):
        rest_read(config)


def test_a_401_after_the_key_was_rotated_logs_in_once_more_with_the_new_key(
    zenml_server: ZenmlServer, tmp_path: Path
) -> None:
    path = key_file(tmp_path, zenml_server.spare_key)
    calls = Recorder()
    registry = ZenmlRestRegistry(rest_config(zenml_server.url, path), calls)
    try:
        with zenml_server.spare_key_rotator() as rotate:
            first = registry.read()
            assert calls.count("login") == 1
            # The rotated key arrives the way a secret mount delivers it: a new file content.
            path.write_text(rotate(), encoding="utf-8")
            second = registry.read()
    finally:
        registry.close()

    assert normalized(second) == normalized(first)
    assert calls.count("login", "200") == 2  # exactly one re-login
    assert sum(1 for op, code in calls.calls if code == "401" and op != "login") == 1


def test_a_token_near_its_expiry_is_renewed_before_it_is_used(zenml_server: ZenmlServer, tmp_path: Path) -> None:
    # The server's tokens live one minute; the provider renews after half of that.
    calls = Recorder()
    registry = ZenmlRestRegistry(rest_config(zenml_server.url, key_file(tmp_path, zenml_server.api_key)), calls)
    try:
        registry.read()
        assert calls.count("login") == 1
        time.sleep(31)
        registry.read()
    finally:
        registry.close()
    assert calls.count("login", "200") == 2
    assert not any(code == "401" for _, code in calls.calls)


# -- failures are errors, never a partial snapshot -------------------------------------


def test_an_unreachable_server_is_a_registry_error(tmp_path: Path) -> None:
    config = rest_config(f"http://127.0.0.1:{free_port()}", key_file(tmp_path, "ZENKEY_irrelevant"))
    with pytest.raises(RegistryError, match="cannot connect"):
        rest_read(config)


@pytest.fixture
def proxy(zenml_server: ZenmlServer) -> Iterator[SpoilingProxy]:
    spoiling = SpoilingProxy(zenml_server.url)
    try:
        yield spoiling
    finally:
        spoiling.close()


def second_schedules_page(answer: tuple[int, bytes] | str) -> Callable[..., tuple[int, bytes] | str | None]:
    def spoil(method: str, path: str, query: dict[str, list[str]]) -> tuple[int, bytes] | str | None:
        if path == "/api/v1/schedules" and query.get("page") == ["2"]:
            return answer
        return None

    return spoil


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((500, b'{"detail": "boom"}'), "HTTP 500"),
        ((404, b'{"detail": "gone"}'), "HTTP 404"),
        ((200, b"<html>not json</html>"), "not JSON"),
        ((200, b'{"index": 2, "total": 30, "total_pages": 6, "items": "nope"}'), "malformed"),
        ((200, b'{"index": 2, "items": []}'), "malformed"),
        ("drop", "cannot connect|gave up"),
    ],
    ids=["server-error", "not-found", "not-json", "items-not-a-list", "no-totals", "dropped"],
)
def test_a_spoiled_page_part_way_fails_the_whole_read(
    zenml_server: ZenmlServer, proxy: SpoilingProxy, tmp_path: Path, answer: tuple[int, bytes] | str, expected: str
) -> None:
    registry = ZenmlRestRegistry(rest_config(proxy.url, key_file(tmp_path, zenml_server.api_key), page_size=2), Recorder())
    try:
        assert len(registry.read().schedules) == len(scenario.SCHEDULES)  # the proxy itself passes everything
        proxy.spoil = second_schedules_page(answer)
        with pytest.raises(RegistryError, match=expected):
            registry.read()
    finally:
        registry.close()
    assert proxy.spoiled >= 1


def test_a_page_with_an_item_missing_hydrated_fields_fails_the_read(
    zenml_server: ZenmlServer, proxy: SpoilingProxy, tmp_path: Path
) -> None:
    # A real first page, with the `metadata` (orchestrator_id, pipeline_id) of one schedule removed.
    token = login_token(zenml_server)

    def spoil(method: str, path: str, query: dict[str, list[str]]) -> tuple[int, bytes] | None:
        if path != "/api/v1/schedules":
            return None
        page = requests.get(
            zenml_server.url + path, params={k: v[0] for k, v in query.items()},
            headers={"Authorization": f"Bearer {token}"}, timeout=30,
        ).json()
        page["items"][0]["metadata"] = None
        return 200, json.dumps(page).encode()

    proxy.spoil = spoil
    config = rest_config(proxy.url, key_file(tmp_path, zenml_server.api_key), page_size=2)
    registry = ZenmlRestRegistry(config, Recorder())
    try:
        with pytest.raises(RegistryError, match="metadata"):
            registry.read()
    finally:
        registry.close()


@pytest.mark.parametrize("change", ["row-deleted", "page-past-the-end"])
def test_a_listing_that_changed_between_pages_is_read_again(
    zenml_server: ZenmlServer, proxy: SpoilingProxy, tmp_path: Path, change: str
) -> None:
    # The first time page 2 of a project's schedules is asked for, answer as if a schedule on
    # page 1 had been deleted meanwhile: the rows shift left, so the first row of page 2 was
    # never seen (a naive reader would lose it), or page 2 is now past the end (ZenML's 400).
    token = login_token(zenml_server)
    spoiled_once: list[str] = []

    def spoil(method: str, path: str, query: dict[str, list[str]]) -> tuple[int, bytes] | None:
        if spoiled_once or path != "/api/v1/schedules" or query.get("page") != ["2"]:
            return None
        spoiled_once.append(path)
        if change == "page-past-the-end":
            return 400, b'{"detail": ["ValueError", "Invalid page 2."]}'
        page = requests.get(
            zenml_server.url + path, params={k: v[0] for k, v in query.items()},
            headers={"Authorization": f"Bearer {token}"}, timeout=30,
        ).json()
        page["total"] -= 1
        page["items"] = page["items"][1:]
        return 200, json.dumps(page).encode()

    proxy.spoil = spoil
    calls = Recorder()
    rest = rest_read(rest_config(proxy.url, key_file(tmp_path, zenml_server.api_key), page_size=2), calls)

    assert spoiled_once
    assert normalized(rest) == normalized(sql_snapshot(zenml_server))


def login_token(server: ZenmlServer) -> str:
    answer = requests.post(f"{server.url}/api/v1/login", data={"password": server.api_key}, timeout=30)
    answer.raise_for_status()
    return str(answer.json()["access_token"])
